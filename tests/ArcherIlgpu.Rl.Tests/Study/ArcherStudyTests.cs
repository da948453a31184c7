using System.Diagnostics;
using System.Text.Json;
using System.Xml.Linq;
using ArcherStudy;
using Xunit.Abstractions;

namespace ArcherIlgpu.Rl.Tests.Study;

/// <summary>
/// The study sample (samples/ArcherStudy) in its quick variant: SFT once, every algorithm for 2 seeds and a
/// few steps, then the report. Checks that the table, the JSON and every chart are written and that the
/// numbers are what they claim to be (probabilities in [0, 1], pass@k non-decreasing in k, p-values in
/// [0, 1], one run per algorithm and seed).
/// </summary>
public class ArcherStudyQuickTests(ITestOutputHelper output)
{
    [Fact]
    public void QuickStudyWritesTheTableThePlotsAndSaneNumbers()
    {
        var dir = Path.Combine(Path.GetTempPath(), "archer-study-quick-" + Guid.NewGuid().ToString("N"));
        try
        {
            var options = StudyOptions.Quick with { OutDir = dir };
            var clock = Stopwatch.StartNew();
            var result = ArcherStudy.Study.Run(options, output.WriteLine);
            var files = StudyReport.Write(result, "test");
            output.WriteLine($"quick study {clock.Elapsed.TotalSeconds:F1}s");

            Assert.Equal(options.SeedList.Length * options.AlgorithmList.Length, result.Runs.Count);
            foreach (var alg in options.AlgorithmList)
                foreach (int seed in options.SeedList)
                    Assert.Single(result.Runs, r => r.Algorithm == alg && r.Seed == seed);

            foreach (var e in result.Runs.Select(r => r.Eval).Append(result.Start))
            {
                Assert.InRange(e.AvgAtN, 0, 1);
                Assert.Equal(options.EvalProblems, e.CorrectCounts.Length);
                Assert.All(e.CorrectCounts, c => Assert.InRange(c, 0, options.EvalSamples));
                // avg@n is the mean correct share, recomputed here from the per-problem counts.
                Assert.Equal(e.CorrectCounts.Average() / options.EvalSamples, e.AvgAtN, 12);
                Assert.Equal(e.AvgAtN, e.PassAtK[1], 12);
                var ks = e.PassAtK.OrderBy(kv => kv.Key).Select(kv => kv.Value).ToArray();
                for (int i = 1; i < ks.Length; i++) Assert.True(ks[i] >= ks[i - 1] - 1e-12, "pass@k must not decrease with k");
                Assert.InRange(ks[^1], 0, 1);
            }
            foreach (var r in result.Runs)
            {
                Assert.Equal(options.Steps, r.Curve.Count);
                Assert.All(r.Curve, row => Assert.InRange(row["reward/mean"], 0, 1));
                Assert.True(r.GeneratedSamples >= (long)options.Steps * options.Prompts * options.GroupSize);
            }

            var comparisons = StudyReport.Comparisons(result);
            Assert.Equal(2 * (options.AlgorithmList.Length - 1), comparisons.Count);
            foreach (var c in comparisons)
                foreach (var t in new[] { c.Paired, c.Welch, c.Bootstrap })
                    Assert.True(double.IsNaN(t.PValue) || t.PValue is >= 0 and <= 1, $"{c.Baseline} {t.Test}: p = {t.PValue}");

            var md = File.ReadAllText(files.ResultsMarkdown);
            foreach (var alg in options.AlgorithmList) Assert.Contains($"| {alg} |", md);
            Assert.Contains("paired t over seeds", md);
            using (var json = JsonDocument.Parse(File.ReadAllText(files.ResultsJson)))
                Assert.Equal(result.Runs.Count, json.RootElement.GetProperty("runs").GetArrayLength());

            foreach (var name in new[] { "reward", "entropy_high", "entropy_low", "clip_low", "clip_high", "clip_fraction", "eval_pass1", "pass_at_k" })
            {
                var path = Path.Combine(dir, name + ".svg");
                Assert.True(File.Exists(path), $"missing {name}.svg");
                var svg = XDocument.Load(path);     // well-formed XML
                Assert.Equal("svg", svg.Root!.Name.LocalName);
                Assert.Contains("archer", File.ReadAllText(path));
            }
            Assert.Equal(result.Runs.Count, Directory.GetFiles(Path.Combine(dir, "runs"), "metrics.jsonl", SearchOption.AllDirectories).Length);
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }
}

/// <summary>
/// The Countdown study (quick variant) on the run system: every stage is a run folder of the study folder, an
/// interrupted study continues where it stopped without redoing finished runs, a killed run starts again, and a
/// resume with changed settings is refused naming the setting.
/// </summary>
public class CountdownStudyTests(ITestOutputHelper output)
{
    static readonly string[] Methods = ["grpo", "archer-no-kl", "archer"];

    [Fact]
    public void AnInterruptedStudyContinuesWhereItStoppedAndRefusesChangedSettings()
    {
        var dir = Path.Combine(Path.GetTempPath(), "archer-study-countdown-" + Guid.NewGuid().ToString("N"));
        try
        {
            var o = StudyOptions.CountdownQuick with { OutDir = dir, Algorithms = Methods, Seeds = [1, 2] };
            var layout = new StudyRuns(o);
            Assert.Throws<StudyInterruptedException>(() => ArcherStudy.Study.Run(o, output.WriteLine, stopAfterRuns: 4));
            string ResultOf(string alg, int seed) => Path.Combine(layout.RunDir(alg, seed), "checkpoints", $"step-{o.Steps:D6}", StudyRuns.ResultFile);
            Assert.True(File.Exists(ResultOf("grpo", 1)) && File.Exists(ResultOf("archer-no-kl", 1)) && File.Exists(ResultOf("archer", 1)) && File.Exists(ResultOf("grpo", 2)));
            Assert.False(File.Exists(ResultOf("archer-no-kl", 2)));
            var kept = File.ReadAllBytes(ResultOf("grpo", 1));
            // A run killed before its result was saved: its folder holds the marker and settings but no checkpoint.
            Directory.Delete(Path.Combine(layout.RunDir("grpo", 2), "checkpoints"), recursive: true);

            var log = new List<string>();
            var result = ArcherStudy.Study.Run(o, line => { log.Add(line); output.WriteLine(line); });
            Assert.Contains(log, l => l.StartsWith("SFT: done earlier", StringComparison.Ordinal));
            Assert.Contains(log, l => l.StartsWith("grpo seed 1: done earlier", StringComparison.Ordinal));
            Assert.Contains(log, l => l.StartsWith("archer-no-kl seed 1: done earlier", StringComparison.Ordinal));
            Assert.Contains(log, l => l.Contains("grpo-seed2: unfinished", StringComparison.Ordinal));
            Assert.DoesNotContain(log, l => l.StartsWith("archer-no-kl seed 2: done earlier", StringComparison.Ordinal));
            Assert.Equal(kept, File.ReadAllBytes(ResultOf("grpo", 1)));   // a finished run is read back, not redone
            Assert.Equal(6, result.Runs.Count);
            Assert.NotNull(result.Start.RoleHighShare);
            Assert.All(result.Runs, r => Assert.True(r.Seconds > 0 && r.Curve.Count == o.Steps));
            foreach (var e in result.Runs.Select(r => r.Eval).Append(result.Start)) CheckEvaluation(e, o.EvalSamples);

            var changed = Assert.Throws<ArcherIlgpu.Runs.RunFolderException>(() => ArcherStudy.Study.Run(o with { Steps = o.Steps + 1 }));
            Assert.Contains($"steps: {o.Steps} in the run, {o.Steps + 1} now", changed.Message);
            var sft = Assert.Throws<ArcherIlgpu.Runs.RunFolderException>(() => ArcherStudy.Study.Run(o with { SftSteps = 61 }));
            Assert.Contains("sft_steps: 60 in the run, 61 now", sft.Message);

            var files = StudyReport.Write(result, "test");
            var markdown = File.ReadAllText(files.ResultsMarkdown);
            Assert.Contains("wrong_target", markdown);
            Assert.Contains("The crossover (claim a)", markdown);
            Assert.Contains("distinct correct / solved", markdown);
            Assert.Contains("| archer-no-kl − archer | held-out arithmetic share |", markdown);
            Assert.Contains("| archer − grpo | held-out entropy of high-class tokens |", markdown);
            Assert.True(File.Exists(Path.Combine(dir, "verdict_arithmetic.svg")));
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>
    /// The split of the arithmetic verdict on hand-worked responses to 84 9 14 28 → 73 (84-9=75, 28/14=2, 75-2=73 is right):
    /// the deciding step is the first wrong result, and only a wrong last step that states 73 is a forced target.
    /// </summary>
    [Fact]
    public void ArithmeticVerdictsSplitByTheirDecidingStep()
    {
        long[] numbers = [84, 9, 14, 28];
        string? KindOf(string completion) =>
            ArithmeticErrors.Kind(ArcherIlgpu.Rl.Tasks.CountdownStepVerifier.Check(numbers, 73, completion), completion, 73);
        Assert.Equal(ArithmeticErrors.FinalStatesTarget, KindOf("84-9=75;28/14=2;75+2=73"));   // 75+2 is 77: forced to 73
        Assert.Equal(ArithmeticErrors.FinalOther, KindOf("84-9=75;28/14=2;75-2=74"));
        Assert.Equal(ArithmeticErrors.EarlierStep, KindOf("84-9=76;28/14=2;76-2=73"));         // 84-9 is 75; the rest follows from 76
        Assert.Equal(ArithmeticErrors.EarlierStep, KindOf("84-9=75;28/14=3;75-3=73"));         // second step wrong, last one stated 73 but wrong too
        Assert.Null(KindOf("84-9=75;28/14=2;75-2=73"));                                         // correct
        Assert.Null(KindOf("84-9=75;28/14=2;75*2=150"));                                        // wrong_target
        Assert.Null(KindOf("84-9=75;75-2=73"));                                                 // format (two steps)
        Assert.True(ArithmeticErrors.LastStatesTarget("84-9=75;28/14=3;75-3=73", 73));
        Assert.False(ArithmeticErrors.LastStatesTarget("84-9=75;28/14=2;75*2=150", 73));
        Assert.False(ArithmeticErrors.LastStatesTarget("84-9=75;28/14=2;75-2=", 73));          // not equations
    }

    /// <summary>Roles of a hand-read step-form response: digits before '=' are operands, after it results, until ';'.</summary>
    [Fact]
    public void TokenRolesOfAStepFormResponse()
    {
        var roles = TokenRoles.Of("84-9=75;75/5=15", ended: true);
        string o = TokenRoles.Operand, op = TokenRoles.Operator, eq = TokenRoles.EqualsSign, r = TokenRoles.Result, s = TokenRoles.Separator;
        Assert.Equal(new string?[] { o, o, op, o, eq, r, r, s, o, o, op, o, eq, r, r, TokenRoles.End }, roles);
        Assert.Equal(new string?[] { o, null, o }, TokenRoles.Of("1 2", ended: false));
    }

    /// <summary>
    /// On a random model the role shares are probabilities and, since about a fifth of each response's tokens is high
    /// (strictly above the 0.8-quantile), the token-weighted mean of the shares is at most ~0.2 plus rounding of short rows.
    /// </summary>
    [Fact]
    public void RoleSharesAreProbabilities()
    {
        var tokenizer = ArcherIlgpu.Model.Tokenizers.CharTokenizer.ForArithmetic();
        using var backend = new ArcherIlgpu.Kernels.CpuBackend();
        using var model = ArcherIlgpu.Model.Models.Create(backend, ArcherIlgpu.Model.Models.Preset("qwen2-tiny").WithVocabSize(tokenizer.VocabSize), seed: 3);
        var shares = TokenRoles.HighShare(model, tokenizer, StudyOptions.CountdownQuick.Task, problems: 8, samples: 4, maxResponseTokens: 20);
        Assert.Equal([.. TokenRoles.Names, TokenRoles.EntropyHigh, TokenRoles.EntropyLow], shares.Keys);
        var roleShares = TokenRoles.Names.Select(n => shares[n]).Where(double.IsFinite).ToList();
        Assert.NotEmpty(roleShares);
        Assert.All(roleShares, v => Assert.InRange(v, 0, 1));
        Assert.True(roleShares.Min() <= 0.3, "some role must be mostly low: only ~20% of tokens are high");
        // High-class tokens are those above their response's 0.8-quantile, so their mean entropy exceeds the low class's.
        Assert.True(shares[TokenRoles.EntropyHigh] > shares[TokenRoles.EntropyLow], $"{shares[TokenRoles.EntropyHigh]} vs {shares[TokenRoles.EntropyLow]}");
        Assert.InRange(shares[TokenRoles.EntropyLow], 0, Math.Log(tokenizer.VocabSize) + 1e-6);
    }

    /// <summary>pass@k for every k against the product form 1 − Π_{i=0}^{k−1} (n − c − i)/(n − i), verdict shares summing to 1
    /// with "correct" equal to avg@n, and distinct correct responses between 1 and n per solved problem.</summary>
    static void CheckEvaluation(EvalSummary e, int n)
    {
        Assert.Equal(Enumerable.Range(1, n), e.PassAtK.Keys.Order());
        foreach (var (k, value) in e.PassAtK)
        {
            double expected = e.CorrectCounts.Average(c =>
            {
                double miss = 1;
                for (int i = 0; i < k; i++) miss *= Math.Max(0, n - c - i) / (double)(n - i);
                return 1 - miss;
            });
            Assert.Equal(expected, value, 10);
        }
        Assert.Equal(1.0, e.VerdictShares.Values.Sum(), 10);
        Assert.Equal(e.AvgAtN, e.VerdictShares["correct"], 10);
        if (e.CorrectCounts.Any(c => c > 0)) Assert.InRange(e.DistinctCorrectPerSolved, 1, n);
        else Assert.True(double.IsNaN(e.DistinctCorrectPerSolved));
        // The three kinds of the split partition the arithmetic verdicts.
        var split = Assert.IsAssignableFrom<IReadOnlyDictionary<string, double>>(e.ArithmeticSplit);
        Assert.Equal(e.VerdictShares["arithmetic"],
            split[ArithmeticErrors.FinalStatesTarget] + split[ArithmeticErrors.FinalOther] + split[ArithmeticErrors.EarlierStep], 10);
        Assert.InRange(split[ArithmeticErrors.StatesTarget], split[ArithmeticErrors.FinalStatesTarget], 1);
    }
}

/// <summary>The study's tests against closed forms and numeric integration, not against MathNet's own output.</summary>
public class StudyStatisticsTests
{
    /// <summary>
    /// Differences 1, 2, 3: mean 2, sd 1, t = 2·√3 with 2 df. Student's t with 2 df has the closed-form CDF
    /// 1/2 + t / (2·√(2 + t²)), so the two-sided p is 1 − t/√(2 + t²) = 0.0741799...
    /// </summary>
    [Fact]
    public void PairedTMatchesTheClosedFormForTwoDegreesOfFreedom()
    {
        var r = Statistics.PairedT([3.0, 5.0, 7.0], [2.0, 3.0, 4.0]);
        double t = 2 * Math.Sqrt(3);
        Assert.Equal(2.0, r.Difference, 12);
        Assert.Equal(t, r.Statistic, 10);
        Assert.Equal(2.0, r.DegreesOfFreedom);
        Assert.Equal(1 - t / Math.Sqrt(2 + t * t), r.PValue, 8);   // MathNet's CDF is accurate to ~1e-10 here
    }

    /// <summary>
    /// {0,1,2} vs {3,4,5}: equal variances 1, n 3, so Welch's df = 4 exactly and t = −3/√(2/3). The p-value is
    /// checked against a Simpson integration of the t(4) density 0.375·(1 + t²/4)^(−5/2) (accurate to ~1e-9
    /// with 20000 panels on [|t|, 2000]; the tail beyond 2000 is ~1e-13).
    /// </summary>
    [Fact]
    public void WelchTMatchesNumericIntegrationOfTheTDensity()
    {
        var r = Statistics.WelchT([0.0, 1.0, 2.0], [3.0, 4.0, 5.0]);
        double t = -3 / Math.Sqrt(2.0 / 3.0);
        Assert.Equal(-3.0, r.Difference, 12);
        Assert.Equal(4.0, r.DegreesOfFreedom, 10);
        Assert.Equal(t, r.Statistic, 10);
        static double Density(double x) => 0.375 * Math.Pow(1 + x * x / 4, -2.5);
        double a = Math.Abs(t), b = 2000; int n = 20000; double h = (b - a) / n, sum = Density(a) + Density(b);
        for (int i = 1; i < n; i++) sum += (i % 2 == 1 ? 4 : 2) * Density(a + i * h);
        double tail = sum * h / 3;
        Assert.Equal(2 * tail, r.PValue, 6);
    }

    [Fact]
    public void BootstrapOfIdenticalMethodsFindsNoDifferenceAndOfAClearShiftFindsOne()
    {
        var rng = new Random(4);
        var a = Enumerable.Range(0, 200).Select(_ => rng.NextDouble()).ToArray();
        var same = Statistics.PairedBootstrap(a, a, 2000);
        Assert.Equal(0.0, same.Difference);
        Assert.Equal(1.0, same.PValue);
        // Every problem 0.1 better: the whole bootstrap distribution sits at +0.1, so p is at its floor 1/resamples.
        var shifted = Statistics.PairedBootstrap(a.Select(x => x + 0.1).ToArray(), a, 2000);
        Assert.Equal(0.1, shifted.Difference, 12);
        Assert.Equal(1.0 / 2000, shifted.PValue);
        Assert.InRange(shifted.CiLow, 0.0999, 0.1001);
    }
}
