using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using ArcherIlgpu.Model;
using ArcherIlgpu.Runs;
using Xunit.Abstractions;

using static ArcherIlgpu.Cli.Tests.Archer;

namespace ArcherIlgpu.Cli.Tests;

/// <summary>1-digit addition data and a briefly SFT-trained tiny model that solves some of it: RL groups then have mixed rewards, so RL steps really update.</summary>
public sealed class ResumeFixture : IDisposable
{
    public TempDir Dir { get; } = new();
    public string Data => Dir.File("add.jsonl");
    public string HeldOut => Dir.File("add.heldout.jsonl");
    /// <summary>The train-sft run folder; train-rl's --model takes it for its newest checkpoint.</summary>
    public string Start => Dir.File("start");

    public ResumeFixture()
    {
        var make = Archer.Run("make-sft-data", "--task", "arithmetic", "--task-option", "operators=+", "--task-option", "min_digits=1", "--task-option", "max_digits=1",
            "--count", "80", "--held-out", "10", "--out", Data);
        Assert.True(make.ExitCode == 0, make.ToString());
        // 60 steps of 16 leave the tiny model right on some problems and wrong on others (measured: ~1/3 of groups informative).
        var sft = Archer.Run("train-sft", "--data", Data, "--held-out", HeldOut, "--out", Start, "--steps", "60", "--batch-size", "16",
            "--seed", "1", "--device", "cpu");
        Assert.True(sft.ExitCode == 0, sft.ToString());
    }

    public void Dispose() => Dir.Dispose();
}

/// <summary>
/// <c>train-rl --resume</c> and <c>train-sft --resume</c>: a run of N steps in one go against the same run
/// stopped part way (finished early, or killed between two saves) and resumed to N. Weights and optimizer
/// moments of the newest checkpoints must agree bitwise and the metrics (and samples) lines must be the same,
/// timing keys aside; on the cpu backend everything is a function of the seeds, so any state a resume forgot
/// shows up here. (Kills during a save: <see cref="KillDuringSaveTests"/>.)
/// </summary>
public class ResumeTests(ResumeFixture fixture, ITestOutputHelper output) : IClassFixture<ResumeFixture>
{
    const int RlSteps = 4;
    const int SftSteps = 8;

    static readonly string[] Task = ["--task", "arithmetic", "--task-option", "operators=+", "--task-option", "min_digits=1", "--task-option", "max_digits=1"];

    /// <summary>Archer (KL reference included) at toy scale; no warm-up and a large rate so that every step moves the weights.</summary>
    string[] RlArgs(string outDir, int steps, params string[] extra) =>
    [
        "train-rl", "--algo", "archer", "--model", fixture.Start, .. Task, "--steps", steps.ToString(CultureInfo.InvariantCulture),
        "--group-size", "4", "--prompts-per-step", "4", "--set", "rl.mini_batch_prompts=2", "--set", "rl.warmup_steps=0", "--set", "rl.learning_rate=1e-3",
        "--sample-every", "1", "--seed", "3", "--out", outDir, "--device", "cpu", .. extra,
    ];

    internal static TrainRlCommand.Settings RlSettings(string model, string outDir, int steps, int? saveEvery, int? interruptAfter) =>
        new("archer", model, "arithmetic", ["operators=+", "min_digits=1", "max_digits=1"], steps, 4, 4,
            ["rl.mini_batch_prompts=2", "rl.warmup_steps=0", "rl.learning_rate=1e-3"], 3, outDir, 0, 1, saveEvery, 0, "cpu", false, interruptAfter);

    string[] SftArgs(string outDir, params string[] extra) =>
    [
        "train-sft", "--data", fixture.Data, "--held-out", fixture.HeldOut, "--out", outDir, "--steps", SftSteps.ToString(CultureInfo.InvariantCulture),
        "--batch-size", "8", "--eval-every", "2", "--seed", "2", "--device", "cpu", .. extra,
    ];

    // ==================================================================== train-rl

    [Fact]
    public void RlRunResumedAfterHalfTheStepsEqualsOneRun()
    {
        using var dir = new TempDir();
        string straight = dir.File("straight"), halves = dir.File("halves");
        var one = Ok(RlArgs(straight, RlSteps));
        output.WriteLine(one.Out);
        Ok(RlArgs(halves, RlSteps / 2));
        var resumed = Ok(RlArgs(halves, RlSteps, "--resume"));
        Assert.Contains($"resuming {halves} after step {RlSteps / 2}", resumed.Out);

        AssertInformative(straight);
        AssertSameRlRun(straight, halves);
    }

    [Fact]
    public void RlRunKilledBetweenSavesRedoesTheLostStepsExactly()
    {
        using var dir = new TempDir();
        string straight = dir.File("straight"), killed = dir.File("killed");
        Ok(RlArgs(straight, RlSteps));
        // Saves after step 2; killed after step 3, whose metrics and samples lines are already written.
        var stop = Assert.Throws<TrainingInterruptedException>(() => TrainRlCommand.Run(RlSettings(fixture.Start, killed, RlSteps, 2, 3), TextWriter.Null));
        Assert.Equal(3, stop.Step);
        Assert.Equal(3, File.ReadAllLines(Path.Combine(killed, "metrics.jsonl")).Length);
        Assert.Equal(2, JsonNode.Parse(File.ReadAllText(Path.Combine(Newest(killed), "state.json")))!["rl"]!["step"]!.GetValue<int>());
        File.AppendAllText(Path.Combine(killed, "metrics.jsonl"), "{\"step\":3,\"reward/me");   // and a line cut off by the kill

        Ok(RlArgs(killed, RlSteps, "--resume", "--save-every", "2"));
        AssertSameRlRun(straight, killed);
    }

    [Fact]
    public void RlResumeOfAFinishedRunWithTheSameStepsDoesNothing()
    {
        using var dir = new TempDir();
        string run = dir.File("run");
        Ok(RlArgs(run, 2));
        var before = File.ReadAllBytes(Path.Combine(Newest(run), "model.safetensors"));
        var again = Ok(RlArgs(run, 2, "--resume"));
        Assert.Contains("nothing to do", again.Out);
        Assert.Equal(before, File.ReadAllBytes(Path.Combine(Newest(run), "model.safetensors")));
        Assert.Equal(2, File.ReadAllLines(Path.Combine(run, "metrics.jsonl")).Length);

        var fewer = Archer.Run(RlArgs(run, 1, "--resume"));
        Assert.Equal(1, fewer.ExitCode);
        Assert.Contains("already at step 2", fewer.Err);
    }

    [Fact]
    public void RlResumeRefusesAFolderWithoutASave()
    {
        using var dir = new TempDir();
        var r = Archer.Run(RlArgs(dir.File("never"), RlSteps, "--resume"));
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("has no checkpoint to resume", r.Err);
    }

    [Fact]
    public void RlResumeRefusesADifferentAlgorithmTaskOrSeed()
    {
        using var dir = new TempDir();
        string run = dir.File("run");
        Ok(RlArgs(run, 1));
        var state = File.ReadAllText(Path.Combine(Newest(run), "state.json"));

        var grpo = Archer.Run(With(RlArgs(run, RlSteps, "--resume"), "--algo", "grpo"));
        Assert.Equal(1, grpo.ExitCode);
        Assert.Contains("this is not the run", grpo.Err);
        Assert.Contains("name: archer in the run, grpo now", grpo.Err);

        var lr = Archer.Run(RlArgs(run, RlSteps, "--resume").Select(a => a == "rl.learning_rate=1e-3" ? "rl.learning_rate=2e-3" : a).ToArray());
        Assert.Equal(1, lr.ExitCode);
        Assert.Contains("learning_rate: 0.001 in the run, 0.002 now", lr.Err);

        var digits = Archer.Run(RlArgs(run, RlSteps, "--resume").Select(a => a == "max_digits=1" ? "max_digits=2" : a).ToArray());
        Assert.Equal(1, digits.ExitCode);
        Assert.Contains("--task-option", digits.Err);

        var seed = Archer.Run(With(RlArgs(run, RlSteps, "--resume"), "--seed", "4"));
        Assert.Equal(1, seed.ExitCode);
        Assert.Contains("--seed: 3 in the run, 4 now", seed.Err);

        // None of the refusals touched the saved run.
        Assert.Equal(state, File.ReadAllText(Path.Combine(Newest(run), "state.json")));
    }

    void AssertInformative(string run)
    {
        // A test of exactness where no step updated the weights would prove little.
        var steps = MetricLines(Path.Combine(run, "metrics.jsonl"), timing: true).Select(l => JsonNode.Parse(l)!).ToList();
        Assert.Contains(steps, m => m["optim/steps"]!.GetValue<double>() > 0);
        using var backend = new Kernels.CpuBackend();
        using var start = Checkpoint.Load(backend, Newest(fixture.Start));
        using var end = Checkpoint.Load(backend, Newest(run));
        Assert.NotEqual(start.DownloadParameters(), end.DownloadParameters());
    }

    internal static void AssertSameRlRun(string expected, string actual)
    {
        AssertSameCheckpoint(Newest(expected), Newest(actual));
        Assert.Equal(MetricLines(Path.Combine(expected, "metrics.jsonl")), MetricLines(Path.Combine(actual, "metrics.jsonl")));
        Assert.Equal(File.ReadAllLines(Path.Combine(expected, "samples.jsonl")), File.ReadAllLines(Path.Combine(actual, "samples.jsonl")));
    }

    // ==================================================================== train-sft

    [Fact]
    public void SftRunKilledBetweenSavesAndResumedEqualsOneRun()
    {
        using var dir = new TempDir();
        string straight = dir.File("straight"), killed = dir.File("killed");
        var one = Ok(SftArgs(straight));
        output.WriteLine(one.Out);

        // Saves every 2 steps; killed after step 5, so step 5's line is dropped and redone from the save at 4.
        var settings = new TrainSftCommand.Settings(fixture.Data, fixture.HeldOut, null, killed, "tiny", null, SftSteps, 8, null, null, 2, 2, "cpu",
            InterruptAfterStep: 5);
        var stop = Assert.Throws<TrainingInterruptedException>(() => TrainSftCommand.Run(settings, TextWriter.Null));
        Assert.Equal(5, stop.Step);
        Assert.Equal(5, File.ReadAllLines(Path.Combine(killed, "metrics.jsonl")).Length);

        var resumed = Ok(SftArgs(killed, "--resume"));
        Assert.Contains($"resuming {killed} after step 4", resumed.Out);

        AssertSameCheckpoint(Newest(straight), Newest(killed));
        var lines = MetricLines(Path.Combine(straight, "metrics.jsonl"));
        Assert.Equal(SftSteps, lines.Count);
        Assert.Equal(lines, MetricLines(Path.Combine(killed, "metrics.jsonl")));
        // The final report names the same held-out numbers: the starting loss came from the save.
        Assert.Equal(one.Out.Split('\n').Last(l => l.StartsWith("held-out loss", StringComparison.Ordinal)),
                     resumed.Out.Split('\n').Last(l => l.StartsWith("held-out loss", StringComparison.Ordinal)));
    }

    [Fact]
    public void SftFinishedRunResumedWithMoreStepsContinues()
    {
        using var dir = new TempDir();
        string run = dir.File("run");
        Ok(SftArgs(run));
        var more = Ok(With(SftArgs(run, "--resume"), "--steps", "12"));
        Assert.Contains($"resuming {run} after step {SftSteps}", more.Out);
        var steps = File.ReadAllLines(Path.Combine(run, "metrics.jsonl")).Select(l => JsonNode.Parse(l)!["step"]!.GetValue<long>());
        Assert.Equal(Enumerable.Range(1, 12).Select(i => (long)i), steps);
        Assert.Equal(12, JsonNode.Parse(File.ReadAllText(Path.Combine(Newest(run), "state.json")))!["sft_step"]!.GetValue<int>());
    }

    [Fact]
    public void SftResumeRefusesAFolderWithoutASaveOrADifferentRun()
    {
        using var dir = new TempDir();
        var none = Archer.Run(SftArgs(dir.File("never"), "--resume"));
        Assert.Equal(1, none.ExitCode);
        Assert.Contains("has no checkpoint to resume", none.Err);

        string run = dir.File("run");
        Ok(SftArgs(run));
        var batch = Archer.Run(With(SftArgs(run, "--resume"), "--batch-size", "4"));
        Assert.Equal(1, batch.ExitCode);
        Assert.Contains("--batch-size: 8 in the run, 4 now", batch.Err);

        var data = Archer.Run(With(SftArgs(run, "--resume"), "--held-out", fixture.Data));
        Assert.Equal(1, data.ExitCode);
        Assert.Contains("data (--data, --held-out, --held-out-fraction)", data.Err);

        var lr = Archer.Run(SftArgs(run, "--resume", "--lr", "0.01"));
        Assert.Equal(1, lr.ExitCode);
        Assert.Contains("--lr: 0.005 in the run, 0.01 now", lr.Err);
    }

    [Fact]
    public void SftResumeOfAFinishedRunReportsTheRunsFinalHeldOutLoss()
    {
        using var dir = new TempDir();
        string run = dir.File("run");
        var first = Ok(SftArgs(run));
        var again = Ok(SftArgs(run, "--resume"));
        Assert.Contains("nothing to train", again.Out);
        string Final(CliResult r) => r.Out.Split('\n').Last(l => l.StartsWith("held-out loss", StringComparison.Ordinal));
        // Not the step-0 loss: the line equals the one the run ended with (and its 'from' is the step-0 loss).
        Assert.Equal(Final(first), Final(again));
        Assert.DoesNotMatch(@"held-out loss (\S+) \(from \1\)", Final(again));
    }

    // ==================================================================== helpers

    /// <summary>The newest checkpoint folder of a run folder.</summary>
    internal static string Newest(string run) => RunFolder.Open(run).Checkpoints().Latest()!.Path;

    /// <summary>Two checkpoints with bit-identical weights and moments, and the same state.json.</summary>
    internal static void AssertSameCheckpoint(string expected, string actual)
    {
        Assert.Equal(Path.GetFileName(expected), Path.GetFileName(actual));
        AssertSameFloats(Path.Combine(expected, "model.safetensors"), Path.Combine(actual, "model.safetensors"));
        Assert.Equal(File.ReadAllBytes(Path.Combine(expected, "model.safetensors")), File.ReadAllBytes(Path.Combine(actual, "model.safetensors")));
        AssertSameFloats(Path.Combine(expected, "optimizer.safetensors"), Path.Combine(actual, "optimizer.safetensors"));
        Assert.Equal(File.ReadAllText(Path.Combine(expected, "state.json")), File.ReadAllText(Path.Combine(actual, "state.json")));
    }

    /// <summary>The arguments with the value after <paramref name="option"/> replaced.</summary>
    static string[] With(string[] args, string option, string value)
    {
        var copy = args.ToArray();
        int i = Array.IndexOf(copy, option);
        Assert.True(i >= 0 && i + 1 < copy.Length, $"{option} is not among the arguments");
        copy[i + 1] = value;
        return copy;
    }

    static bool IsTiming(string key) => key.StartsWith("time/", StringComparison.Ordinal) || key.StartsWith("perf/", StringComparison.Ordinal);

    /// <summary>Each metrics line as canonical text, without its timing keys unless asked for.</summary>
    internal static List<string> MetricLines(string path, bool timing = false) => File.ReadAllLines(path).Select(line =>
    {
        using var doc = JsonDocument.Parse(line);
        var kept = doc.RootElement.EnumerateObject().Where(p => timing || !IsTiming(p.Name)).Select(p => $"\"{p.Name}\":{p.Value.GetRawText()}");
        return "{" + string.Join(",", kept) + "}";
    }).ToList();

    /// <summary>Every tensor of two safetensors files equal bit for bit (NaN included).</summary>
    static void AssertSameFloats(string expectedPath, string actualPath)
    {
        var expected = Model.IO.SafeTensors.Read(expectedPath);
        var actual = Model.IO.SafeTensors.Read(actualPath);
        Assert.Equal(expected.Keys.Order(), actual.Keys.Order());
        foreach (var (name, tensor) in expected)
        {
            var a = tensor.Data;
            var b = actual[name].Data;
            Assert.Equal(a.Length, b.Length);
            for (int i = 0; i < a.Length; i++)
                if (BitConverter.SingleToInt32Bits(a[i]) != BitConverter.SingleToInt32Bits(b[i]))
                    Assert.Fail($"{actualPath}: {name}[{i}] is {b[i]:R}, expected {a[i]:R}");
        }
    }
}
