using System.Diagnostics;
using System.Globalization;
using ArcherIlgpu.Runs;

using static ArcherIlgpu.Cli.Tests.Archer;

namespace ArcherIlgpu.Cli.Tests;

/// <summary>
/// Kill during a save: the built <c>archer</c> runs as a child process with
/// <see cref="SaveCrashPoint.Variable"/> set, so it exits (code 137, no cleanup, like <c>kill -9</c>) at the
/// N-th point of checkpoint writing: after a file's bytes and before its rename, or before the checkpoint
/// folder's rename. The points are those of the run's second checkpoint, so the first one is there to
/// resume from; the dead child's lock must be taken over and <c>--resume</c> must end bit-identical to an
/// uninterrupted run (newest checkpoint's model.safetensors bytes, moments, state.json, metrics lines).
/// </summary>
public class KillDuringSaveTests(ResumeFixture fixture) : IClassFixture<ResumeFixture>
{
    static readonly string[] Task = ["--task", "arithmetic", "--task-option", "operators=+", "--task-option", "min_digits=1", "--task-option", "max_digits=1"];

    string[] SftArgs(string outDir) =>
    [
        "train-sft", "--data", fixture.Data, "--held-out", fixture.HeldOut, "--out", outDir, "--steps", "6", "--batch-size", "8",
        "--eval-every", "2", "--seed", "2", "--device", "cpu",
    ];

    string[] RlArgs(string outDir) =>
    [
        "train-rl", "--algo", "archer", "--model", fixture.Start, .. Task, "--steps", "4", "--group-size", "4", "--prompts-per-step", "4",
        "--set", "rl.mini_batch_prompts=2", "--set", "rl.warmup_steps=0", "--set", "rl.learning_rate=1e-3", "--sample-every", "1", "--seed", "3",
        "--save-every", "2", "--out", outDir, "--device", "cpu",
    ];

    /// <summary>The quick demo cut down to seconds: SFT 4 steps, RL 4 steps, checkpoints every 2 (all kept).</summary>
    static string[] DemoArgs(string runsDir) =>
    [
        "demo", "--preset", "quick", "--runs-dir", runsDir, "--device", "cpu", "--set", "sft.steps=4", "--set", "sft.examples=40",
        "--set", "rl.steps=4", "--set", "eval.problems=3", "--set", "eval.samples=2", "--set", "checkpoint_every=2", "--set", "keep_checkpoints=0",
    ];

    /// <summary>Every point of the second save: each file of the checkpoint, then the folder's rename.</summary>
    [Fact]
    public void TrainSftKilledAtEveryPointOfASaveResumesBitIdentically()
    {
        using var dir = new TempDir();
        string straight = dir.File("straight");
        Ok(SftArgs(straight));
        int points = PointsPerSave(ResumeTests.Newest(straight));
        var killPoints = Enumerable.Range(points + 1, points).ToArray();
        KillAll(killPoints, k => SftArgs(dir.File($"killed-{k}")));
        foreach (int k in killPoints)
        {
            string killed = dir.File($"killed-{k}");
            Assert.Equal(2, RunFolder.Open(killed).Checkpoints().Latest()!.Step);
            var resumed = Ok([.. SftArgs(killed), "--resume"]);
            Assert.Contains("took over the lock", resumed.Out);
            AssertSameRun(straight, killed);
        }
    }

    /// <summary>The weights file of the second save (its first point), and the checkpoint folder's rename (its last).</summary>
    [Fact]
    public void TrainRlKilledDuringASaveResumesBitIdentically()
    {
        using var dir = new TempDir();
        string straight = dir.File("straight");
        Ok(RlArgs(straight));
        int points = PointsPerSave(ResumeTests.Newest(straight));
        int[] killPoints = [points + 1, 2 * points];
        KillAll(killPoints, k => RlArgs(dir.File($"killed-{k}")));
        foreach (int k in killPoints)
        {
            string killed = dir.File($"killed-{k}");
            Assert.Equal(2, RunFolder.Open(killed).Checkpoints().Latest()!.Step);
            Ok([.. RlArgs(killed), "--resume"]);
            AssertSameRun(straight, killed);
            Assert.Equal(File.ReadAllLines(Path.Combine(straight, "samples.jsonl")), File.ReadAllLines(Path.Combine(killed, "samples.jsonl")));
        }
    }

    [Fact]
    public void DemoKilledDuringASaveResumesBitIdentically()
    {
        using var dir = new TempDir();
        Ok(DemoArgs(dir.File("straight")));
        string straight = RunOf(dir.File("straight"));
        int points = PointsPerSave(Path.Combine(straight, "checkpoints", "step-000002"));
        int[] killPoints = [points + 1, 2 * points];   // the checkpoint at the end of SFT (step 4): its weights, its rename
        KillAll(killPoints, k => DemoArgs(dir.File($"killed-{k}")));
        foreach (int k in killPoints)
        {
            string killed = RunOf(dir.File($"killed-{k}"));
            Assert.Equal(2, RunFolder.Open(killed).Checkpoints().Latest()!.Step);
            Ok("demo", "--resume", killed, "--device", "cpu");
            AssertSameRun(straight, killed);
            Assert.Equal(File.ReadAllText(Path.Combine(straight, "eval.json")), File.ReadAllText(Path.Combine(killed, "eval.json")));
        }
    }

    // ==================================================================== helpers

    /// <summary>Files of a checkpoint, each one point (before its rename), plus the folder's rename.</summary>
    static int PointsPerSave(string checkpoint) => Directory.GetFiles(checkpoint).Length + 1;

    static void AssertSameRun(string expected, string actual)
    {
        ResumeTests.AssertSameCheckpoint(ResumeTests.Newest(expected), ResumeTests.Newest(actual));
        Assert.Equal(ResumeTests.MetricLines(Path.Combine(expected, "metrics.jsonl")), ResumeTests.MetricLines(Path.Combine(actual, "metrics.jsonl")));
    }

    /// <summary>The one run folder a demo made under <paramref name="runsDir"/>.</summary>
    static string RunOf(string runsDir) => Assert.Single(Directory.GetDirectories(runsDir));

    /// <summary>Runs the commands as child processes at once (they are independent), each killed at its point.</summary>
    static void KillAll(int[] points, Func<int, string[]> args)
    {
        var runs = points.Select(k => System.Threading.Tasks.Task.Run(() => RunKilled(k, args(k)))).ToArray();
        System.Threading.Tasks.Task.WaitAll(runs);
        foreach (var (k, r) in points.Zip(runs.Select(t => t.Result)))
            Assert.True(r.ExitCode == SaveCrashPoint.ExitCode, $"kill point {k}: expected the child to exit at it with {SaveCrashPoint.ExitCode}\n{r}");
    }

    static CliResult RunKilled(int point, string[] args)
    {
        var start = new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "archer.dll"));
        foreach (var a in args) start.ArgumentList.Add(a);
        start.Environment[SaveCrashPoint.Variable] = point.ToString(CultureInfo.InvariantCulture);
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(120_000))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"archer {string.Join(" ", args)} did not end in 120 s");
        }
        return new CliResult(process.ExitCode, stdout.Result, stderr.Result);
    }
}
