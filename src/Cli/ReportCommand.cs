using System.CommandLine;
using ArcherIlgpu.Runs;

namespace ArcherIlgpu.Cli;

/// <summary>
/// <c>archer report RUN [RUN...] [--out DIR]</c>: redraws each run's charts (RUN/plots/*.svg); for
/// several runs also draws comparison charts and prints a table of final/best values and eval.json,
/// written to DIR/report.md as well.
/// </summary>
public static class ReportCommand
{
    public static Command Create()
    {
        var runs = new Argument<string[]>("runs") { Description = "run folders (runs/2026-11-22_2315_demo ...)", Arity = ArgumentArity.OneOrMore };
        var output = new Option<string?>("--out") { Description = "folder for report.md and comparison charts (default: the run folder for one run, runs/compare_<time> for several)" };
        var command = new Command("report", "Redraw a run's plots; compare several runs in a table and charts") { runs, output };
        command.WithExamples("report runs/2026-11-23_0108_demo", "report RUN_A RUN_B --out runs/compare");
        command.SetAction(parse => CliErrors.Guard(parse, (stdout, _) =>
        {
            var result = Generate(parse.GetValue(runs)!, parse.GetValue(output));
            stdout.WriteLine(result.Markdown);
            stdout.WriteLine($"wrote {result.ReportPath} and {result.Plots.Count} chart(s)");
            return 0;
        }));
        return command;
    }

    /// <summary>The report, with a write that fails (a read-only run folder) explained in terms of what report writes where.</summary>
    static ReportResult Generate(string[] runs, string? output)
    {
        try
        {
            return RunReport.Generate(runs, output);
        }
        catch (Exception e) when (e is UnauthorizedAccessException or IOException and not (FileNotFoundException or DirectoryNotFoundException))
        {
            throw new CliInputException($"cannot write the report: {e.Message} (report redraws RUN/plots/*.svg in each run folder and writes report.md to --out; " +
                                        "is the folder read-only?)");
        }
    }
}
