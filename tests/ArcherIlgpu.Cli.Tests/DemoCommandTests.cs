using System.Text.Json;
using System.Xml.Linq;
using ArcherIlgpu.Cli.Demo;
using ArcherIlgpu.Runs;

namespace ArcherIlgpu.Cli.Tests;

/// <summary>
/// <c>archer demo --preset quick</c> end to end: every file of the run folder, well-formed plots, the
/// report, and resume after an interruption giving exactly the metrics of an uninterrupted run.
/// </summary>
public class DemoCommandTests
{
    /// <summary>Keys that measure time; everything else in a metrics line is a function of the seeds on the cpu backend.</summary>
    static bool IsTiming(string key) => key.StartsWith("time/", StringComparison.Ordinal) || key.StartsWith("perf/", StringComparison.Ordinal);

    static string Quick(TempDir dir, params string[] extra)
    {
        var r = Archer.Run(["demo", "--preset", "quick", "--runs-dir", dir.Path, "--device", "cpu", .. extra]);
        Assert.True(r.ExitCode == 0, r.ToString());
        return Assert.Single(Directory.GetDirectories(dir.Path), d => !Path.GetFileName(d).StartsWith('.'));
    }

    [Fact]
    public void QuickDemoWritesEveryRunFileAndTheTable()
    {
        using var dir = new TempDir();
        var r = Archer.Run("demo", "--preset", "quick", "--runs-dir", dir.Path, "--device", "cpu");
        Assert.True(r.ExitCode == 0, r.ToString());
        string run = Assert.Single(Directory.GetDirectories(dir.Path));
        Assert.Contains("| pass@1 ", r.Out);
        Assert.Contains("| pass@4 ", r.Out);
        Assert.Contains("mean response length", r.Out);
        Assert.Contains("entropy", r.Out);
        Assert.Contains(Path.GetFileName(run), r.Out);   // says where the run folder is
        Assert.Contains("sft step", r.Out);              // progress lines (plain: output is not a terminal)
        Assert.Contains("archer step", r.Out);

        foreach (var file in new[] { "run.json", "config.json", "metrics.jsonl", "samples.jsonl", "eval.json", "summary.md" })
            Assert.True(File.Exists(Path.Combine(run, file)), $"{file} missing in {run}");

        // config.json binds back to the config the run used.
        var config = ConfigBinder.Bind(RunPresets.Demo, Path.Combine(run, "config.json"), ["device=cpu"]);
        Assert.Equal(RunPresets.Quick.Rl.Steps, config.Rl.Steps);
        int S = config.Sft.Steps, R = config.Rl.Steps;

        // One metrics line per step (SFT 1..S, RL S+1..S+R) plus an eval line at the end of each phase.
        var log = MetricsLog.Read(Path.Combine(run, "metrics.jsonl"));
        Assert.Empty(log.MalformedLines);
        var stepLines = log.Rows.Where(row => !row.Values.ContainsKey("eval/pass@1")).Select(row => row.Step).ToList();
        Assert.Equal(Enumerable.Range(1, S + R).Select(i => (long)i), stepLines);
        Assert.Equal(new long[] { S, S + R }, log.Rows.Where(row => row.Values.ContainsKey("eval/pass@1")).Select(row => row.Step));

        var samples = File.ReadAllLines(Path.Combine(run, "samples.jsonl"));
        Assert.NotEmpty(samples);
        foreach (var line in samples)
        {
            using var doc = JsonDocument.Parse(line);
            Assert.True(doc.RootElement.TryGetProperty("completion", out _));
            Assert.True(doc.RootElement.TryGetProperty("reward", out _));
        }

        using (var eval = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "eval.json"))))
        {
            Assert.True(eval.RootElement.GetProperty("sft").TryGetProperty("pass@1", out _));
            Assert.True(eval.RootElement.GetProperty("archer").TryGetProperty("pass@4", out _));
        }

        var checkpoint = new CheckpointStore(run).Latest();
        Assert.NotNull(checkpoint);
        Assert.Equal(S + R, checkpoint!.Step);
        foreach (var file in new[] { "model.safetensors", "config.json", "tokenizer_char.json", "optimizer.safetensors", "state.json", "reference.safetensors" })
            Assert.True(File.Exists(checkpoint.File(file)), $"checkpoint file {file} missing");
        Assert.Empty(Directory.GetDirectories(Path.Combine(run, "checkpoints"), "*.tmp"));

        foreach (var plot in new[] { "loss", "reward", "entropy", "clip", "kl", "response_length", "accuracy" })
        {
            string path = Path.Combine(run, "plots", plot + ".svg");
            Assert.True(File.Exists(path), $"plots/{plot}.svg missing");
            var svg = XDocument.Load(path);   // throws if not well-formed XML
            Assert.Equal("svg", svg.Root!.Name.LocalName);
            Assert.Contains(svg.Descendants(), e => e.Name.LocalName is "polyline" or "path" or "circle");
        }

        string summary = File.ReadAllText(Path.Combine(run, "summary.md"));
        Assert.Contains("| pass@1 ", summary);
        Assert.Contains("checkpoints/", summary);

        var report = Archer.Run("report", run);
        Assert.True(report.ExitCode == 0, report.ToString());
    }

    /// <summary>
    /// N steps straight through against: interrupted after step k (in SFT, or in RL between checkpoints),
    /// then <c>archer demo --resume</c>. The metrics and samples must be identical line for line (timing keys
    /// aside), and the lines after the last checkpoint must have been replaced, not duplicated.
    /// </summary>
    [Theory]
    [InlineData(31)]    // SFT step 31: the checkpoint at 30 is resumed, line 31 is dropped and redone
    [InlineData(63)]    // RL step 3 (SFT is 60 steps): the checkpoint at 62 is resumed
    public void ResumeAfterAnInterruptionGivesTheSameMetricsAsAnUninterruptedRun(long interruptAfter)
    {
        using var straightDir = new TempDir();
        string straight = Quick(straightDir);

        using var resumedDir = new TempDir();
        var config = RunPresets.Registry.Bind("quick", sets: ["device=cpu"]);
        var folder = RunFolder.Create(resumedDir.Path, config.Name);
        folder.WriteConfig(config);
        var job = new DemoJob(config, folder, TextWriter.Null, interactive: false) { InterruptAfterStep = interruptAfter };
        var stopped = Assert.Throws<DemoInterruptedException>(() => job.Run());
        Assert.Equal(interruptAfter, stopped.Step);
        Assert.Equal(interruptAfter, MetricsLog.Read(folder.MetricsPath).LastStep);   // the line of the lost step was written
        Assert.True(new CheckpointStore(folder.Path).Latest()!.Step < interruptAfter);

        var resumed = Archer.Run("demo", "--resume", folder.Path, "--device", "cpu");
        Assert.True(resumed.ExitCode == 0, resumed.ToString());
        Assert.Contains("resuming", resumed.Out);

        Assert.Equal(Lines(Path.Combine(straight, "metrics.jsonl")), Lines(folder.MetricsPath));
        Assert.Equal(File.ReadAllLines(Path.Combine(straight, "samples.jsonl")), File.ReadAllLines(folder.SamplesPath));
        Assert.Equal(File.ReadAllText(Path.Combine(straight, "eval.json")), File.ReadAllText(folder.EvalPath));
    }

    /// <summary>Each metrics line without its timing keys, as canonical text.</summary>
    static List<string> Lines(string path) => File.ReadAllLines(path).Select(line =>
    {
        using var doc = JsonDocument.Parse(line);
        return string.Join(",", doc.RootElement.EnumerateObject().Where(p => !IsTiming(p.Name)).Select(p => $"{p.Name}={p.Value.GetRawText()}"));
    }).ToList();

    [Fact]
    public void AFinishedRunResumedWithMoreStepsContinuesTraining()
    {
        using var dir = new TempDir();
        string run = Quick(dir);
        var r = Archer.Run("demo", "--resume", run, "--device", "cpu", "--set", "rl.steps=8");
        Assert.True(r.ExitCode == 0, r.ToString());
        var log = MetricsLog.Read(Path.Combine(run, "metrics.jsonl"));
        Assert.Equal(RunPresets.Quick.Sft.Steps + 8, log.LastStep);
    }
}
