using System.Xml.Linq;

namespace ArcherIlgpu.Runs.Tests;

public class RunReportTests : IDisposable
{
    readonly string root = Directory.CreateTempSubdirectory("runs-report-").FullName;
    public void Dispose() => Directory.Delete(root, recursive: true);

    /// <summary>Run A: reward 0.1, 0.6, 0.4 (final 0.4, best 0.6); loss 2, 1, 1.5 (final 1.5, best 1); entropy/all 0.9 → 0.7.</summary>
    RunFolder RunA()
    {
        var run = RunFolder.Create(root, "archer", new DateTime(2026, 11, 22, 10, 0, 0));
        using var m = run.OpenMetrics();
        m.Write(1, new Dictionary<string, double> { ["reward/mean"] = 0.1, ["loss"] = 2, ["entropy/all"] = 0.9 });
        m.Write(2, new Dictionary<string, double> { ["reward/mean"] = 0.6, ["loss"] = 1, ["entropy/all"] = 0.8 });
        m.Write(3, new Dictionary<string, double> { ["reward/mean"] = 0.4, ["loss"] = 1.5, ["entropy/all"] = 0.7 });
        File.WriteAllText(run.EvalPath, """{"pass@1": 0.3125, "pass@k": {"4": 0.5, "16": 0.75}}""");
        return run;
    }

    /// <summary>Run B: reward 0.2, 0.25, 0.3, 0.35 (final = best = 0.35), loss 1.2, 0.8, 0.9, NaN (final = last finite 0.9, best 0.8), no entropy, one KL key.</summary>
    RunFolder RunB()
    {
        var run = RunFolder.Create(root, "grpo", new DateTime(2026, 11, 22, 11, 0, 0));
        using var m = run.OpenMetrics();
        double[] rewards = [0.2, 0.25, 0.3, 0.35];
        double[] losses = [1.2, 0.8, 0.9, double.NaN];
        for (int s = 0; s < 4; s++)
            m.Write(10 * (s + 1), new Dictionary<string, double> { ["reward/mean"] = rewards[s], ["loss"] = losses[s], ["kl"] = 0.01 * (s + 1) });
        File.WriteAllText(run.EvalPath, """{"pass@1": 0.25}""");
        return run;
    }

    static Dictionary<string, string[]> ParseTable(string markdown)
    {
        var rows = new Dictionary<string, string[]>();
        foreach (var line in markdown.Split('\n').Where(l => l.StartsWith("| ")))
        {
            var cells = line.Trim('|').Split(" | ").Select(c => c.Trim()).ToArray();
            rows[cells[0]] = cells[1..];
        }
        return rows;
    }

    [Fact]
    public void TwoRunsGiveHandComputedTableAndComparisonCharts()
    {
        var a = RunA();
        var b = RunB();
        string outDir = Path.Combine(root, "cmp");
        var result = RunReport.Generate([a.Path, b.Path], outDir);

        var table = ParseTable(result.Markdown);
        Assert.Equal(["2026-11-22_1000_archer", "2026-11-22_1100_grpo"], table["metric"]);
        Assert.Equal(["3", "40"], table["steps"]);
        Assert.Equal(["0.4 (best 0.6)", "0.35 (best 0.35)"], table["reward/mean ↑"]);
        Assert.Equal(["1.5 (best 1)", "0.9 (best 0.8)"], table["loss ↓"]);
        Assert.Equal(["0.7", "—"], table["entropy/all"]);
        Assert.Equal(["—", "0.04"], table["kl"]);
        Assert.Equal(["0.3125", "0.25"], table["eval: pass@1"]);
        Assert.Equal(["0.5", "—"], table["eval: pass@k.4"]);
        Assert.Equal(["0.75", "—"], table["eval: pass@k.16"]);

        Assert.Equal(result.Markdown, File.ReadAllText(Path.Combine(outDir, "report.md")));
        Assert.Equal(result.ReportPath, Path.Combine(outDir, "report.md"));
        // comparison: one chart per metric, one series per run
        var reward = XDocument.Load(Path.Combine(outDir, "compare_reward_mean.svg"));
        var names = reward.Descendants().Where(e => (string?)e.Attribute("class") == "series").Select(e => (string)e.Attribute("data-name")!);
        Assert.Equal(["2026-11-22_1000_archer", "2026-11-22_1100_grpo"], names);
        Assert.Contains("](compare_reward_mean.svg)", result.Markdown);
        // and each run's own charts were redrawn
        Assert.True(File.Exists(Path.Combine(a.PlotsDir, "entropy.svg")));
        Assert.True(File.Exists(Path.Combine(b.PlotsDir, "kl.svg")));
    }

    /// <summary>train-rl numbers its steps 0..19 for a 20-step run; the demo numbers them 1..N: both report the count done.</summary>
    [Fact]
    public void StepsCountsARunLoggedFromStepZero()
    {
        var run = RunFolder.Create(root, "rl", new DateTime(2026, 11, 22, 12, 0, 0));
        using (var m = run.OpenMetrics())
            for (int s = 0; s < 20; s++) m.Write(s, new Dictionary<string, double> { ["reward/mean"] = 0.5 });
        var table = ParseTable(RunReport.Generate([run.Path]).Markdown);
        Assert.Equal(["20"], table["steps"]);
    }

    [Fact]
    public void SingleRunReportGoesIntoTheRunFolder()
    {
        var a = RunA();
        var result = RunReport.Generate([a.Path]);
        Assert.Equal(Path.Combine(a.Path, "report.md"), result.ReportPath);
        Assert.Contains("](plots/reward.svg)", result.Markdown);
    }

    [Fact]
    public void ANonRunFolderIsRejectedByName()
    {
        string plain = Directory.CreateDirectory(Path.Combine(root, "notarun")).FullName;
        var e = Assert.Throws<ArgumentException>(() => RunReport.Generate([plain]));
        Assert.Contains(plain, e.Message);
    }

    [Theory]
    [InlineData(0.41, "0.41")]
    [InlineData(0.123456, "0.1235")]
    [InlineData(12345.6, "12346")]
    [InlineData(0.0000123, "1.23e-5")]
    [InlineData(double.NaN, "—")]
    public void ValuesHaveFourSignificantDigits(double v, string expected) => Assert.Equal(expected, RunReport.FormatValue(v));
}

public class ProgressReporterTests
{
    /// <summary>A clock the test moves by hand.</summary>
    sealed class FakeClock
    {
        public TimeSpan Now;
        public TimeSpan Read() => Now;
    }

    static ProgressReporter Plain(FakeClock clock, StringWriter output, long total, long startStep = 0) =>
        new(total, "step", output, interactive: false, clock: clock.Read, startStep: startStep);

    [Fact]
    public void RateAndEtaFollowTheClock()
    {
        var clock = new FakeClock();
        var p = Plain(clock, new StringWriter(), total: 100);
        clock.Now = TimeSpan.FromSeconds(5);
        Assert.Equal(2.0, p.Rate(10));                               // 10 steps in 5 s
        Assert.Equal(TimeSpan.FromSeconds(45), p.Eta(10));           // 90 steps left at 2/s
        Assert.Null(p.Rate(0));

        var resumed = Plain(clock, new StringWriter(), total: 100, startStep: 60);
        clock.Now = TimeSpan.FromSeconds(9);                         // started at 5 s: 4 s for 8 steps
        Assert.Equal(2.0, resumed.Rate(68));
        Assert.Equal(TimeSpan.FromSeconds(16), resumed.Eta(68));
    }

    [Fact]
    public void PlainModePrintsOnlyEveryIntervalOrPercentStep()
    {
        var clock = new FakeClock();
        var output = new StringWriter();
        var p = new ProgressReporter(1000, "step", output, interactive: false, clock: clock.Read) { PlainInterval = TimeSpan.FromSeconds(10), PlainPercent = 50 };
        for (int step = 1; step <= 1000; step++)
        {
            clock.Now = TimeSpan.FromMilliseconds(step * 37); // 37 s in all
            p.Report(step, new Dictionary<string, double> { ["reward"] = 0.41 });
        }
        var steps = output.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split(' ')[1]).ToArray();
        // step 1: first report (t = 0.037 s); 272: first step ≥ 10 s after it (10.064 s); 500: 50% (18.5 s);
        // 771: ≥ 10 s after 500 (28.527 s); 1000: 100%. 1000 reports, five lines.
        Assert.Equal(["1/1000", "272/1000", "500/1000", "771/1000", "1000/1000"], steps);
        Assert.DoesNotContain('\r', output.ToString());
    }

    [Fact]
    public void PlainLineShowsFieldsRateAndEta()
    {
        var clock = new FakeClock();
        var output = new StringWriter();
        var p = Plain(clock, output, total: 100);
        clock.Now = TimeSpan.FromSeconds(3.75);
        p.Report(12, new Dictionary<string, double> { ["reward"] = 0.41, ["entropy"] = 0.8312 });
        // 12 steps / 3.75 s = 3.2 it/s; 88 left → 27.5 s → "0:28"
        Assert.Equal("step 12/100 (12%)  reward 0.41  entropy 0.831  3.2 it/s  ETA 0:28  elapsed 0:04\n", output.ToString());
    }

    [Fact]
    public void InteractiveModeRedrawsOneLine()
    {
        var clock = new FakeClock();
        var output = new StringWriter();
        var p = new ProgressReporter(10, "step", output, interactive: true, clock: clock.Read) { BarWidth = 10 };
        clock.Now = TimeSpan.FromSeconds(1);
        p.Report(5, new Dictionary<string, double> { ["loss"] = 1.5 });
        clock.Now = TimeSpan.FromSeconds(1.01);
        p.Report(6); // within the redraw interval: skipped
        clock.Now = TimeSpan.FromSeconds(2);
        p.Report(10);
        string text = output.ToString();
        Assert.StartsWith("\r[#####.....] step 5/10  loss 1.5  5.0 it/s  ETA 0:01", text);
        Assert.DoesNotContain("6/10", text);
        Assert.Contains("\r[##########] step 10/10", text);
        Assert.EndsWith("\n", text);
        Assert.Single(text.Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }

    [Theory]
    [InlineData(27.5, "0:28")]
    [InlineData(3599, "59:59")]
    [InlineData(3600 + 62, "1:01:02")]
    [InlineData(90000, "1d 01:00:00")]
    public void DurationsReadLikeClocks(double seconds, string expected) =>
        Assert.Equal(expected, ProgressReporter.FormatDuration(TimeSpan.FromSeconds(seconds)));
}
