using ArcherStudy;

// Usage: dotnet run -c Release --project samples/ArcherStudy -- [--quick] [--seeds 1,2,3] [--steps N] [--out DIR] ...
// (options: StudyOptions.Parse). Writes results.json, results.md, runs/*.jsonl and *.svg into the output folder.
var options = StudyOptions.Parse(args);
var command = "dotnet run -c Release --project samples/ArcherStudy" + (args.Length > 0 ? " -- " + string.Join(' ', args) : "");
Console.WriteLine($"ArcherStudy ({options.Variant}): {options.TaskDescription}, algorithms {string.Join(", ", options.AlgorithmList)}, seeds {string.Join(", ", options.SeedList)}");
// After each seed the report so far is written, so an interrupted study still leaves its finished seeds.
var result = Study.Run(options, line => Console.WriteLine($"[{DateTime.Now:HH:mm:ss}] {line}"),
    partial => StudyReport.Write(partial, command + $"  (partial: seeds {string.Join(",", partial.Options.SeedList)} of {string.Join(",", options.SeedList)})"));
var files = StudyReport.Write(result, command);
Console.WriteLine();
Console.WriteLine(File.ReadAllText(files.ResultsMarkdown));
Console.WriteLine($"wrote {files.ResultsJson}, {files.ResultsMarkdown}, {files.Plots.Count} plots, {files.RunLogs.Count} run logs");
