using System.Diagnostics;
using System.Text.Json.Nodes;
using ArcherIlgpu.Kernels;
using ArcherIlgpu.Model;
using Xunit;

namespace ArcherIlgpu.Distributed.Tests;

/// <summary>Runs the archer command under mpirun (skipping where it is not installed) and reads what the runs saved.</summary>
static class MpiJobs
{
    /// <summary>The flat weights of a run folder's newest checkpoint.</summary>
    public static float[] Weights(string run)
    {
        string newest = Directory.GetDirectories(Path.Combine(run, "checkpoints")).Order(StringComparer.Ordinal).Last();
        using var backend = Devices.Create("cpu");
        using var model = Checkpoint.Load(backend, newest, new LoadOptions(false));
        return model.DownloadParameters();
    }

    /// <summary>Runs <paramref name="program"/> (archer.dll or ArcherStudy.dll) as <paramref name="ranks"/> ranks under mpirun (as root too), temp files in <paramref name="dir"/>; skips where mpirun is missing.</summary>
    public static (int ExitCode, string Output) Run(string dir, int ranks, string arguments, string program = "archer.dll", string mpirunOptions = "")
    {
        using var process = Start(dir, ranks, mpirunOptions, arguments, program);
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromSeconds(120)))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"mpirun {arguments} did not finish within 120 s");
        }
        return (process.ExitCode, stdout.Result + stderr.Result);
    }

    /// <summary>Starts <paramref name="program"/> as <paramref name="ranks"/> ranks, output redirected; skips where mpirun is missing.</summary>
    public static Process Start(string dir, int ranks, string mpirunOptions, string arguments, string program = "archer.dll")
    {
        string? mpirun = FindOnPath("mpirun");
        Skip.If(mpirun is null, "mpirun is not installed (Debian: apt-get install openmpi-bin; .ci/run does this when run as root)");
        string archer = Path.Combine(AppContext.BaseDirectory, program);
        var start = new ProcessStartInfo(mpirun!, $"--oversubscribe -np {ranks} {mpirunOptions} dotnet {archer} {arguments}")
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        // OpenMPI refuses to start as root without both of these (CI containers run as root).
        start.Environment["OMPI_ALLOW_RUN_AS_ROOT"] = "1";
        start.Environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1";
        // The ranks' temp folder (rank 1's scratch run folder, OpenMPI's session folder) inside the test's folder.
        start.Environment["TMPDIR"] = dir;
        return Process.Start(start)!;
    }

    /// <summary>
    /// Runs archer <paramref name="arguments"/> on 2 ranks with rank 1 SIGKILLing itself after step <paramref name="step"/>
    /// (the test hook <see cref="Cli.MpiJob.KillVariable"/>) and checks that mpirun ends the job within seconds, naming
    /// rank 1. Returns how long after rank 1's death the job ended.
    /// </summary>
    public static TimeSpan RunKillingRank1(string dir, string arguments, int step)
    {
        var (rc, output) = Run(dir, 2, arguments, mpirunOptions: $"-x {Cli.MpiJob.KillVariable}=1@{step}");
        var ended = DateTime.UtcNow;
        Assert.NotEqual(0, rc);
        Assert.Contains("process rank 1", output);   // mpirun: "process rank 1 with PID … exited on signal 9 (Killed)"
        // Rank 1 wrote its step line into its scratch folder just before it died; a killed rank cannot remove that folder.
        string scratch = Assert.Single(Directory.GetDirectories(dir, "archer-rank1-*"));
        var died = File.GetLastWriteTimeUtc(Path.Combine(scratch, "metrics.jsonl"));
        Directory.Delete(scratch, recursive: true);
        // OpenMPI notices a dead rank within a second or two; generous for a loaded 2-core machine.
        Assert.True(ended - died < TimeSpan.FromSeconds(15), $"the job ended {(ended - died).TotalSeconds:F0} s after rank 1 died:\n{output}");
        return ended - died;
    }

    /// <summary>
    /// Checks that <paramref name="run"/> is one whole run, as rank 0 alone writes it: metrics.jsonl holds each of
    /// <paramref name="steps"/> once, in order (a resume dropped the lines after its checkpoint), checkpoints/ holds
    /// exactly <paramref name="checkpoints"/> (no half-written save), and no rank left a scratch folder in <paramref name="temp"/>.
    /// </summary>
    public static void RequireWholeRun(string run, IEnumerable<int> steps, string[] checkpoints, string temp)
    {
        var logged = File.ReadAllLines(Path.Combine(run, "metrics.jsonl")).Where(l => l.Length > 0)
            .Select(l => JsonNode.Parse(l)!["step"]!.GetValue<int>()).ToArray();
        Assert.Equal(steps.ToArray(), logged);
        Assert.Equal(checkpoints, Directory.GetFileSystemEntries(Path.Combine(run, "checkpoints")).Select(Path.GetFileName).Order(StringComparer.Ordinal).ToArray());
        Assert.True(File.Exists(Path.Combine(run, "run.json")), $"{run} has no run.json");
        Assert.False(Directory.EnumerateDirectories(temp, "archer-rank*").Any(), "a rank left its scratch run folder behind");
    }

    /// <summary>metrics.jsonl of <paramref name="run"/>, one dictionary per line (a null, i.e. NaN, value left out).</summary>
    public static List<Dictionary<string, double>> Metrics(string run) =>
        File.ReadAllLines(Path.Combine(run, "metrics.jsonl")).Where(l => l.Length > 0)
            .Select(l => JsonNode.Parse(l)!.AsObject().Where(kv => kv.Value is JsonValue v && v.TryGetValue<double>(out _))
                .ToDictionary(kv => kv.Key, kv => kv.Value!.GetValue<double>()))
            .ToList();

    static string? FindOnPath(string name) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator)
        .Select(d => Path.Combine(d, name)).FirstOrDefault(File.Exists);
}
