using System.CommandLine;
using System.Security.Cryptography;
using ArcherIlgpu.Cli.Demo;
using ArcherIlgpu.Runs;

using static ArcherIlgpu.Cli.Tests.Archer;

namespace ArcherIlgpu.Cli.Tests;

/// <summary>
/// The run system under train-sft, train-rl and demo: validation before anything on disk changes, no fresh
/// run over a run without --overwrite, one writer per folder, a resume that refuses changed settings, and
/// Ctrl-C that saves and says how to resume.
/// </summary>
public class RunSystemTests(ResumeFixture fixture) : IClassFixture<ResumeFixture>
{
    static readonly string[] Task = ["--task", "arithmetic", "--task-option", "operators=+", "--task-option", "min_digits=1", "--task-option", "max_digits=1"];

    /// <summary>train-sft of 4 steps (or the --steps in <paramref name="extra"/>), saving every 2.</summary>
    string[] Sft(string outDir, params string[] extra) =>
    [
        "train-sft", "--data", fixture.Data, "--held-out", fixture.HeldOut, "--out", outDir, .. extra.Contains("--steps") ? [] : new[] { "--steps", "4" },
        "--batch-size", "8", "--eval-every", "2", "--seed", "2", "--device", "cpu", .. extra,
    ];

    /// <summary>train-rl of 2 steps (or the --steps in <paramref name="extra"/>).</summary>
    string[] Rl(string outDir, params string[] extra) =>
    [
        "train-rl", "--algo", "archer", "--model", fixture.Start, .. Task, .. extra.Contains("--steps") ? [] : new[] { "--steps", "2" },
        "--group-size", "4", "--prompts-per-step", "4",
        "--set", "rl.mini_batch_prompts=2", "--seed", "3", "--out", outDir, "--device", "cpu", .. extra,
    ];

    /// <summary>The quick demo cut to seconds.</summary>
    static readonly string[] SmallDemo =
    [
        "--set", "sft.steps=4", "--set", "sft.examples=40", "--set", "rl.steps=2", "--set", "eval.problems=3", "--set", "eval.samples=2", "--set", "checkpoint_every=2",
    ];

    static CliResult Fails(params string[] args)
    {
        var r = Archer.Run(args);
        Assert.True(r.ExitCode == 1, r.ToString());
        Assert.Single(r.Err.Trim().Split('\n'));   // one line, no stack trace
        return r;
    }

    /// <summary>Every file under <paramref name="dir"/> with the SHA-256 of its bytes, and every folder.</summary>
    static SortedDictionary<string, string> Snapshot(string dir)
    {
        var all = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (var d in Directory.GetDirectories(dir, "*", SearchOption.AllDirectories)) all[Path.GetRelativePath(dir, d) + "/"] = "folder";
        foreach (var f in Directory.GetFiles(dir, "*", SearchOption.AllDirectories))
            all[Path.GetRelativePath(dir, f)] = Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(f)));
        return all;
    }

    // ==================================================================== validation before the disk

    [Fact]
    public void RejectedCommandsLeaveTheRunFolderByteIdentical()
    {
        using var dir = new TempDir();
        string sft = dir.File("sft"), rl = dir.File("rl");
        Ok(Sft(sft));
        Ok(Rl(rl, "--eval-problems", "2"));
        var sftBefore = Snapshot(sft);
        var rlBefore = Snapshot(rl);

        // The issue's case first: a bad option with --overwrite deleted the run before the option was checked.
        Fails(Rl(rl, "--micro-batch", "-1", "--overwrite"));
        Fails(Rl(rl, "--micro-batch", "-1", "--resume"));
        Fails(Rl(rl, "--steps", "0", "--overwrite"));
        Fails(Rl(rl, "--save-every", "-1", "--overwrite"));
        Fails(Rl(rl, "--eval-problems", "-1", "--overwrite"));
        Fails(Rl(rl, "--sample-every", "-1", "--overwrite"));
        Fails(Rl(rl, "--set", "rl.no_such_setting=1", "--overwrite"));
        Fails(Rl(rl, "--set", "rl.learning_rate=fast", "--overwrite"));
        Fails([.. Rl(rl, "--overwrite"), "--task-option", "max_digits=x"]);
        Fails(Rl(rl));                                      // a fresh run over a run
        Fails(Rl(rl, "--resume", "--overwrite"));
        Fails(Rl(rl, "--resume", "--seed", "4"));           // a changed setting
        Fails(Rl(rl, "--resume", "--steps", "1"));          // fewer steps than done
        Fails(Sft(sft, "--batch-size", "0", "--overwrite"));
        Fails(Sft(sft, "--lr", "-1", "--overwrite"));
        Fails(Sft(sft, "--eval-every", "0", "--overwrite"));
        Fails(Sft(sft, "--held-out-fraction", "2", "--overwrite"));
        Fails(Sft(sft, "--preset", "huge", "--overwrite"));
        Fails(Sft(sft, "--init", dir.File("no-such-model"), "--overwrite"));
        Fails(Sft(sft));
        Fails(Sft(sft, "--resume", "--batch-size", "4"));
        Fails(Sft(sft, "--resume", "--steps", "3"));

        Assert.Equal(sftBefore, Snapshot(sft));
        Assert.Equal(rlBefore, Snapshot(rl));
    }

    /// <summary>train-rl saves without being asked (a Ctrl-C or kill late in a run used to leave nothing): every steps / 10 by default.</summary>
    [Fact]
    public void TrainRlSavesPeriodicallyByDefault()
    {
        using var dir = new TempDir();
        string rl = dir.File("rl");
        var r = Ok(Rl(rl, "--steps", "20"));
        Assert.Contains("checkpoints every 2 steps", r.Out);
        Assert.Equal([18L, 20], RunFolder.Open(rl).Checkpoints().List().Select(c => c.Step));   // the newest two of 2, 4, ..., 20
    }

    [Fact]
    public void AFreshRunIntoARunIsRefusedUnlessOverwrite()
    {
        using var dir = new TempDir();
        string run = dir.File("run");
        Ok(Sft(run, "--steps", "2"));
        var refused = Fails(Sft(run));
        Assert.Contains("already holds a run", refused.Err);
        Assert.Contains("--resume continues it, --overwrite replaces it", refused.Err);

        Assert.Contains("--resume", Fails(Sft(run, "--resume", "--overwrite")).Err);   // one or the other, not both
        Assert.Contains("not both", Fails(Rl(dir.File("rl"), "--resume", "--overwrite")).Err);

        Ok(Sft(run, "--overwrite"));
        var steps = MetricsLog.Read(Path.Combine(run, "metrics.jsonl")).Rows.Select(r => r.Step);
        Assert.Equal([1L, 2, 3, 4], steps);   // the old run's log is gone, not appended to
        Assert.Equal([2L, 4], RunFolder.Open(run).Checkpoints().List().Select(c => c.Step));

        // A folder with other files is never a run to overwrite: --overwrite would delete what no run wrote.
        string other = dir.File("other");
        Directory.CreateDirectory(other);
        File.WriteAllText(Path.Combine(other, "notes.txt"), "mine");
        var notRun = Fails(Sft(other, "--overwrite"));
        Assert.Contains("holds no run", notRun.Err);
        Assert.Equal("mine", File.ReadAllText(Path.Combine(other, "notes.txt")));
    }

    [Fact]
    public void OutNamingAFileIsOneLineError()
    {
        using var dir = new TempDir();
        string file = dir.File("a-file");
        File.WriteAllText(file, "x");
        foreach (var r in new[] { Fails(Sft(file)), Fails(Rl(file)), Fails(["demo", "--preset", "quick", "--device", "cpu", "--runs-dir", file]) })
        {
            Assert.Contains(file, r.Err);
            Assert.Contains("is a file", r.Err);
            Assert.Matches("expected a (run )?folder", r.Err);   // says what --out / --runs-dir should name
        }
        Assert.Equal("x", File.ReadAllText(file));
    }

    // ==================================================================== one writer

    [Fact]
    public void ASecondWriterIsRefusedNamingTheHoldersPid()
    {
        using var dir = new TempDir();
        string run = dir.File("run");
        using (RunFolder.At(run).Lock())
        {
            var r = Fails(Sft(run));
            Assert.Contains($"in use by another archer process (pid {Environment.ProcessId})", r.Err);
            Assert.False(File.Exists(Path.Combine(run, "run.json")));
        }
        Ok(Sft(run, "--steps", "2"));   // released: the folder is usable again

        using (RunFolder.Open(run).Lock())
            Assert.Contains($"pid {Environment.ProcessId}", Fails(Sft(run, "--resume", "--steps", "4")).Err);
    }

    [Fact]
    public void ADemoRunInUseIsNotResumed()
    {
        using var dir = new TempDir();
        Ok(["demo", "--preset", "quick", "--runs-dir", dir.Path, "--device", "cpu", .. SmallDemo]);
        string run = Assert.Single(Directory.GetDirectories(dir.Path));
        using var held = RunFolder.Open(run).Lock();
        Assert.Contains("in use by another archer process", Fails("demo", "--resume", run, "--device", "cpu").Err);
    }

    // ==================================================================== resume refuses changes

    [Theory]
    [InlineData("model.preset=small", "model.preset: tiny in the run, small now")]
    [InlineData("seed=5", "seed: 1 in the run, 5 now")]
    [InlineData("rl.algorithm=grpo", "rl.algorithm: archer in the run, grpo now")]
    [InlineData("sft.steps=300", "sft.steps: 4 in the run, 300 now")]
    [InlineData("eval.problems=5", "eval.problems: 3 in the run, 5 now")]
    public void DemoResumeRefusesAChangedSettingNamingIt(string set, string expected)
    {
        using var dir = new TempDir();
        Ok(["demo", "--preset", "quick", "--runs-dir", dir.Path, "--device", "cpu", .. SmallDemo]);
        string run = Assert.Single(Directory.GetDirectories(dir.Path));
        var before = Snapshot(run);
        var r = Fails("demo", "--resume", run, "--device", "cpu", "--set", set);
        Assert.Contains(expected, r.Err);
        Assert.Equal(before, Snapshot(run));   // config.json is not rewritten

        // What may change: the step budget (upwards) and the device.
        Ok("demo", "--resume", run, "--device", "cpu", "--set", "rl.steps=3");
        Assert.Equal(4 + 3, MetricsLog.Read(Path.Combine(run, "metrics.jsonl")).LastStep);
    }

    // ==================================================================== Ctrl-C

    [Fact]
    public void CtrlCInTrainSftSavesAfterTheStepAndTheResumeFinishesTheRun()
    {
        using var dir = new TempDir();
        string straight = dir.File("straight"), stopped = dir.File("stopped");
        Ok(Sft(straight));
        var settings = new TrainSftCommand.Settings(fixture.Data, fixture.HeldOut, null, stopped, "tiny", null, 4, 8, null, null, 2, 2, "cpu",
            Stop: new CancellationToken(canceled: true));
        var stop = Assert.Throws<RunInterruptedException>(() => TrainSftCommand.Run(settings, TextWriter.Null));
        Assert.Equal(1, stop.Step);   // the step under way is finished, then saved (not on the --eval-every cadence)
        Assert.Equal(Path.Combine(stopped, "checkpoints", "step-000001"), stop.Checkpoint);
        Assert.True(File.Exists(Path.Combine(stop.Checkpoint, "model.safetensors")));

        Ok(Sft(stopped, "--resume"));
        ResumeTests.AssertSameCheckpoint(ResumeTests.Newest(straight), ResumeTests.Newest(stopped));
        Assert.Equal(ResumeTests.MetricLines(Path.Combine(straight, "metrics.jsonl")), ResumeTests.MetricLines(Path.Combine(stopped, "metrics.jsonl")));
    }

    [Fact]
    public void CtrlCInTrainRlAndDemoSavesTheStep()
    {
        using var dir = new TempDir();
        var rl = ResumeTests.RlSettings(fixture.Start, dir.File("rl"), 3, null, null) with { Stop = new CancellationToken(canceled: true) };
        var stop = Assert.Throws<RunInterruptedException>(() => TrainRlCommand.Run(rl, TextWriter.Null));
        Assert.Equal(1, stop.Step);
        Assert.Equal(1, TrainingCheckpoint.ReadState(RunFolder.Open(dir.File("rl")).Checkpoints().Latest()!).Rl!.Step);

        var config = RunPresets.Registry.Bind("quick", sets: ["device=cpu", "sft.steps=4", "sft.examples=40", "checkpoint_every=100"]);
        var folder = RunFolder.Create(dir.File("demo"), config.Name);
        folder.WriteConfig(config);
        var job = new DemoJob(config, folder, TextWriter.Null, interactive: false) { Stop = new CancellationToken(canceled: true) };
        var demoStop = Assert.Throws<RunInterruptedException>(() => job.Run());
        Assert.Equal(1, demoStop.Step);
        Assert.Equal(1, folder.Checkpoints().Latest()!.Step);
    }

    [Fact]
    public void AnInterruptionPrintsTheCommandThatResumesAndExits130()
    {
        var root = new RootCommand { TrainSftCommand.Create() };
        var parse = root.Parse(["train-sft", "--data", "my data.jsonl", "--out", "runs/x", "--steps", "50", "--overwrite"]);
        Assert.Equal("archer train-sft --data 'my data.jsonl' --out runs/x --steps 50 --resume", StopRequest.ResumeCommand(parse));

        var output = new StringWriter();
        int code = StopRequest.Handle(output, () => "archer train-sft --resume", () => throw new RunInterruptedException(7, "runs/x/checkpoints/step-000007"));
        Assert.Equal(130, code);
        Assert.Equal("interrupted after step 7; saved the checkpoint runs/x/checkpoints/step-000007\nresume with: archer train-sft --resume\n",
                     output.ToString().Replace("\r", ""));
    }

    // ==================================================================== eval.json

    [Fact]
    public void TrainRlSavesItsEvaluationsInTheRunFolder()
    {
        using var dir = new TempDir();
        string run = dir.File("run");
        var r = Ok(Rl(run, "--eval-problems", "3"));
        var eval = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(run, "eval.json")))!;
        Assert.Equal(3, (int)eval["problems"]!);
        foreach (var when in new[] { "before", "after" })
        {
            double avg = (double)eval[when]!["avg@8"]!;
            // The printed line and the file agree (the printout has four decimals).
            Assert.Contains($"eval {when}: ", r.Out);
            Assert.Contains($"avg@8={Math.Round(avg, 4).ToString("0.####", System.Globalization.CultureInfo.InvariantCulture)}", r.Out);
        }
    }
}
