using System.Diagnostics;
using ArcherIlgpu.Distributed;
using ArcherIlgpu.Runs;
using ArcherStudy;

// Usage: dotnet run -c Release --project samples/ArcherStudy -- [--task addition|countdown] [--quick] [--seeds 1,2,3] [--steps N] [--out DIR] ...
// (options: StudyOptions.Parse). Writes results.json, results.md, *.svg and one run folder per stage into the output
// folder; running the same command again continues an interrupted study (finished runs are read back, not redone).
// Under mpirun (mpirun -np N dotnet samples/ArcherStudy/bin/Release/net10.0/ArcherStudy.dll ...) the runs still to do
// are dealt to the ranks (Study.RunShare) and rank 0 writes the report.
StudyOptions options;
try { options = StudyOptions.Parse(args); }
catch (ArgumentException e) { Console.Error.WriteLine($"ArcherStudy: {e.Message}"); return 2; }
World world;
try { world = World.Join(); }
catch (InvalidOperationException e) { Console.Error.WriteLine($"ArcherStudy: {e.Message}"); return 2; }
var clock = Stopwatch.StartNew();
string joined = args.Length > 0 ? string.Join(' ', args) : "";
var command = world.IsDistributed
    ? $"mpirun -np {world.Size} dotnet samples/ArcherStudy/bin/Release/net10.0/ArcherStudy.dll {joined}".TrimEnd()
    : "dotnet run -c Release --project samples/ArcherStudy" + (args.Length > 0 ? " -- " + joined : "");
string prefix = world.IsDistributed ? $"rank {world.Rank}/{world.Size} " : "";
void Log(string line) => Console.WriteLine($"[{prefix}{DateTime.Now:HH:mm:ss}] {line}");
if (world.IsWriter)
    Console.WriteLine($"ArcherStudy ({options.Variant}): {options.TaskDescription}, algorithms {string.Join(", ", options.AlgorithmList)}, seeds {string.Join(", ", options.SeedList)}" +
        (world.IsDistributed ? $", {world.Size} MPI ranks" : ""));
int rc;
try
{
    if (world.IsDistributed) Study.RunShare(options, new StudyRanks(world.Rank, world.Size, world.Barrier), Log);
    rc = world.IsWriter ? Report() : 0;
}
catch (RunFolderException e)
{
    Console.Error.WriteLine($"ArcherStudy: {prefix}{e.Message}");
    rc = 2;
}
catch (Exception e) when (world.IsDistributed)
{
    Console.Error.WriteLine($"ArcherStudy: {prefix}{e}");
    rc = 1;
}
if (world.IsDistributed)
{
    // A failed rank ends the job: the others must not wait for it forever.
    if (rc != 0)
    {
        Console.Error.WriteLine($"ArcherStudy: rank {world.Rank} of {world.Size} failed (exit code {rc}): ending every rank");
        Console.Error.Flush();
        world.Abort(rc);
    }
    world.Finish();
}
return rc;

// The study (under mpirun every run is finished by now and read back), its report after each seed and at the end.
int Report()
{
    // After each seed the report so far is written, so an interrupted study still leaves its finished seeds.
    var result = Study.Run(options, Log,
        partial => StudyReport.Write(partial, command + $"  (partial: seeds {string.Join(",", partial.Options.SeedList)} of {string.Join(",", options.SeedList)})"));
    if (world.IsDistributed)
        result = result with { TotalSeconds = clock.Elapsed.TotalSeconds, Machine = $"{result.Machine}, {world.Size} MPI ranks" };
    var files = StudyReport.Write(result, command);
    Console.WriteLine();
    Console.WriteLine(File.ReadAllText(files.ResultsMarkdown));
    Console.WriteLine($"wrote {files.ResultsJson}, {files.ResultsMarkdown}, {files.Plots.Count} plots, {files.RunLogs.Count} run logs");
    return 0;
}
