using ArcherIlgpu.Runs;
using ArcherStudy;

// Usage: dotnet run -c Release --project samples/ArcherStudy -- [--task addition|countdown] [--quick] [--seeds 1,2,3] [--steps N] [--out DIR] ...
// (options: StudyOptions.Parse). Writes results.json, results.md, *.svg and one run folder per stage into the output
// folder; running the same command again continues an interrupted study (finished runs are read back, not redone).
StudyOptions options;
try { options = StudyOptions.Parse(args); }
catch (ArgumentException e) { Console.Error.WriteLine($"ArcherStudy: {e.Message}"); return 2; }
var command = "dotnet run -c Release --project samples/ArcherStudy" + (args.Length > 0 ? " -- " + string.Join(' ', args) : "");
Console.WriteLine($"ArcherStudy ({options.Variant}): {options.TaskDescription}, algorithms {string.Join(", ", options.AlgorithmList)}, seeds {string.Join(", ", options.SeedList)}");
try
{
    // After each seed the report so far is written, so an interrupted study still leaves its finished seeds.
    var result = Study.Run(options, line => Console.WriteLine($"[{DateTime.Now:HH:mm:ss}] {line}"),
        partial => StudyReport.Write(partial, command + $"  (partial: seeds {string.Join(",", partial.Options.SeedList)} of {string.Join(",", options.SeedList)})"));
    var files = StudyReport.Write(result, command);
    Console.WriteLine();
    Console.WriteLine(File.ReadAllText(files.ResultsMarkdown));
    Console.WriteLine($"wrote {files.ResultsJson}, {files.ResultsMarkdown}, {files.Plots.Count} plots, {files.RunLogs.Count} run logs");
    return 0;
}
catch (RunFolderException e)
{
    Console.Error.WriteLine($"ArcherStudy: {e.Message}");
    return 2;
}
