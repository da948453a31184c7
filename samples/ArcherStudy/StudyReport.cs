using System.Globalization;
using System.Text;
using ArcherIlgpu.Rl.Metrics;
using ArcherIlgpu.Runs;

namespace ArcherStudy;

/// <summary>One method's held-out numbers over seeds: mean and sample standard deviation (and min/max) of each metric.</summary>
public sealed record MethodSummary(string Algorithm, int Seeds, double Pass1Mean, double Pass1Sd, double Pass1Min, double Pass1Max,
    IReadOnlyDictionary<int, double> PassAtKMean, IReadOnlyDictionary<int, double> PassAtKSd, double GreedyMean, double GreedySd,
    double SecondsMean, double GeneratedSamplesMean, double OptimizerStepsMean, double FinalEntropyHigh, double FinalEntropyLow);

/// <summary>Archer against one baseline on held-out pass@1 (and pass@n), with the three tests of <see cref="Statistics"/>.</summary>
public sealed record Comparison(string Baseline, string Metric, double ArcherMean, double BaselineMean, TestResult Paired, TestResult Welch, TestResult Bootstrap);

public sealed record StudyFiles(string ResultsJson, string ResultsMarkdown, IReadOnlyList<string> Plots, IReadOnlyList<string> RunLogs);

/// <summary>Turns a <see cref="StudyResult"/> into results.json, results.md, per-run metrics logs and SVG charts.</summary>
public static class StudyReport
{
    static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public static IReadOnlyList<MethodSummary> Summaries(StudyResult r) =>
        r.Options.AlgorithmList.Select(alg =>
        {
            var runs = r.Runs.Where(x => x.Algorithm == alg).ToList();
            var p1 = runs.Select(x => x.Eval.AvgAtN).ToList();
            var ks = runs.Count > 0 ? runs[0].Eval.PassAtK.Keys.ToList() : [];
            double Last(string key) => Statistics.Mean(runs.Select(x => MeanOfLast(x.Curve, key, 5)).ToList());
            return new MethodSummary(alg, runs.Count, Statistics.Mean(p1), Statistics.StdDev(p1), p1.DefaultIfEmpty(double.NaN).Min(), p1.DefaultIfEmpty(double.NaN).Max(),
                ks.ToDictionary(k => k, k => Statistics.Mean(runs.Select(x => x.Eval.PassAtK[k]).ToList())),
                ks.ToDictionary(k => k, k => Statistics.StdDev(runs.Select(x => x.Eval.PassAtK[k]).ToList())),
                Statistics.Mean(runs.Select(x => x.Eval.Greedy).ToList()), Statistics.StdDev(runs.Select(x => x.Eval.Greedy).ToList()),
                Statistics.Mean(runs.Select(x => x.Seconds).ToList()), Statistics.Mean(runs.Select(x => (double)x.GeneratedSamples).ToList()),
                Statistics.Mean(runs.Select(x => (double)x.OptimizerSteps).ToList()), Last("entropy/high"), Last("entropy/low"));
        }).ToList();

    static double MeanOfLast(List<Dictionary<string, double>> curve, string key, int count)
    {
        var v = curve.Skip(Math.Max(0, curve.Count - count)).Select(row => row.TryGetValue(key, out var x) ? x : double.NaN).Where(double.IsFinite).ToList();
        return v.Count > 0 ? v.Average() : double.NaN;
    }

    /// <summary>Archer against each other method, on pass@1 and on pass@n (n = samples per problem).</summary>
    public static IReadOnlyList<Comparison> Comparisons(StudyResult r)
    {
        var list = new List<Comparison>();
        if (!r.Options.AlgorithmList.Contains("archer")) return list;
        int n = r.Options.EvalSamples;
        foreach (var baseline in r.Options.AlgorithmList.Where(a => a != "archer"))
        {
            list.Add(Compare(r, baseline, "pass@1", e => e.AvgAtN, c => c / (double)n));
            if (n > 32) list.Add(Compare(r, baseline, "pass@32", e => e.PassAtK[32], c => PassAtK.Estimate(n, c, 32)));
            list.Add(Compare(r, baseline, $"pass@{n}", e => e.PassAtK[n], c => c > 0 ? 1.0 : 0.0));
        }
        return list;
    }

    /// <summary>
    /// Claims (c) and (d), paired over seeds (the bootstrap entry is empty: these are per-run numbers, not per problem):
    /// archer against grpo on the held-out class entropies of the role check, and archer-no-kl against archer on
    /// arithmetic (knowledge) errors and low-class entropy, in the last 20% of training steps and on held-out samples.
    /// </summary>
    public static IReadOnlyList<Comparison> EntropyAndKnowledge(StudyResult r)
    {
        var list = new List<Comparison>();
        void Add(string a, string b, string metric, Func<RunResult, double> value)
        {
            var seeds = r.Options.SeedList;
            var ra = seeds.Select(s => r.Runs.FirstOrDefault(x => x.Algorithm == a && x.Seed == s)).ToList();
            var rb = seeds.Select(s => r.Runs.FirstOrDefault(x => x.Algorithm == b && x.Seed == s)).ToList();
            if (ra.Any(x => x is null) || rb.Any(x => x is null)) return;
            var va = ra.Select(x => value(x!)).ToList(); var vb = rb.Select(x => value(x!)).ToList();
            if (!va.Concat(vb).All(double.IsFinite)) return;   // not measured (addition has no roles; no update logs no class entropy)
            var none = new TestResult("–", double.NaN, double.NaN, double.NaN, double.NaN);
            list.Add(new Comparison($"{a} − {b}", metric, va.Average(), vb.Average(), Statistics.PairedT(va, vb), Statistics.WelchT(va, vb), none));
        }
        double Role(RunResult x, string key) => x.Eval.RoleHighShare?.GetValueOrDefault(key, double.NaN) ?? double.NaN;
        double Late(RunResult x, string key) => MeanOfLast(x.Curve, key, Math.Max(1, x.Curve.Count / 5));
        Add("archer", "grpo", "held-out entropy of high-class tokens", x => Role(x, TokenRoles.EntropyHigh));
        Add("archer", "grpo", "held-out entropy of low-class tokens", x => Role(x, TokenRoles.EntropyLow));
        Add("archer-no-kl", "archer", "arithmetic share of rollouts, last 20% of steps", x => Late(x, "verdict/arithmetic"));
        Add("archer-no-kl", "archer", "held-out arithmetic share", x => x.Eval.VerdictShares.GetValueOrDefault("arithmetic", double.NaN));
        // The part of the arithmetic share that is not a forced target (ArithmeticErrors): the knowledge errors proper.
        Add("archer-no-kl", "archer", "held-out arithmetic share, forced targets excluded",
            x => x.Eval.ArithmeticSplit is { } a ? a[ArithmeticErrors.FinalOther] + a[ArithmeticErrors.EarlierStep] : double.NaN);
        Add("archer-no-kl", "archer", "entropy/low, last 20% of steps", x => Late(x, "entropy/low"));
        return list;
    }

    /// <summary>
    /// Claim (a), the crossover: a method's runs against the one SFT checkpoint they start from, on pass@1 and pass@k
    /// (k = 32 when n ≥ 32). Paired t over seeds of (run − SFT) (the SFT value is the same for every seed) and the
    /// paired bootstrap over problems.
    /// </summary>
    public static IReadOnlyList<Comparison> AgainstSft(StudyResult r, string algorithm)
    {
        int n = r.Options.EvalSamples, k = Math.Min(32, n);
        var runs = r.Options.SeedList.Select(s => r.Runs.FirstOrDefault(x => x.Algorithm == algorithm && x.Seed == s)).ToList();
        if (runs.Any(x => x is null)) return [];
        Comparison One(string metric, Func<EvalSummary, double> value, Func<int, double> problemValue)
        {
            var a = runs.Select(x => value(x!.Eval)).ToList();
            var b = runs.Select(_ => value(r.Start)).ToList();
            double[] perRun = Enumerable.Range(0, r.Start.CorrectCounts.Length).Select(j => runs.Average(x => problemValue(x!.Eval.CorrectCounts[j]))).ToArray();
            double[] sft = r.Start.CorrectCounts.Select(problemValue).ToArray();
            return new Comparison("SFT", metric, a.Average(), b[0], Statistics.PairedT(a, b), Statistics.WelchT(a, b),
                Statistics.PairedBootstrap(perRun, sft, r.Options.BootstrapResamples));
        }
        return [One("pass@1", e => e.AvgAtN, c => c / (double)n), One($"pass@{k}", e => e.PassAtK[k], c => PassAtK.Estimate(n, c, k))];
    }

    static Comparison Compare(StudyResult r, string baseline, string metric, Func<EvalSummary, double> seedValue, Func<int, double> problemValue)
    {
        var seeds = r.Options.SeedList;
        RunResult RunOf(string alg, int seed) => r.Runs.Single(x => x.Algorithm == alg && x.Seed == seed);
        var a = seeds.Select(s => seedValue(RunOf("archer", s).Eval)).ToList();
        var b = seeds.Select(s => seedValue(RunOf(baseline, s).Eval)).ToList();
        int problems = RunOf("archer", seeds[0]).Eval.CorrectCounts.Length;
        // Per problem, the pass rate averaged over the seeds' runs (pass@n: the share of seeds that solved it at least once).
        double[] PerProblem(string alg) => Enumerable.Range(0, problems)
            .Select(j => seeds.Average(s => problemValue(RunOf(alg, s).Eval.CorrectCounts[j]))).ToArray();
        return new Comparison(baseline, metric, a.Average(), b.Average(), Statistics.PairedT(a, b), Statistics.WelchT(a, b),
            Statistics.PairedBootstrap(PerProblem("archer"), PerProblem(baseline), r.Options.BootstrapResamples));
    }

    public static StudyFiles Write(StudyResult r, string? command = null)
    {
        var dir = r.Options.OutDir;
        Directory.CreateDirectory(dir);
        var runsDir = Path.Combine(dir, "runs");
        Directory.CreateDirectory(runsDir);
        var summaries = Summaries(r);
        var comparisons = Comparisons(r);

        // Each run's per-step metrics are its run folder's metrics.jsonl (StudyRuns); in-memory results (tests) have none.
        var layout = new StudyRuns(r.Options);
        var logs = r.Runs.Select(run => RunFolder.At(layout.RunDir(run.Algorithm, run.Seed)).MetricsPath).Where(File.Exists).ToList();

        var plots = Plots(r, dir);
        var md = Markdown(r, summaries, comparisons, command);
        var mdPath = Path.Combine(dir, "results.md");
        AtomicFile.WriteAllText(mdPath, md);
        var jsonPath = Path.Combine(dir, "results.json");
        Json.WriteAtomic(jsonPath, new
        {
            variant = r.Options.Variant,
            command,
            started_utc = r.StartedUtc,
            total_seconds = r.TotalSeconds,
            sft_seconds = r.SftSeconds,
            machine = r.Machine,
            task = r.Options.TaskDescription,
            options = r.Options,
            start = Slim(r.Start),
            methods = summaries,
            comparisons,
            runs = r.Runs.Select(x => new { x.Algorithm, x.Seed, eval = Slim(x.Eval), x.Seconds, x.GeneratedSamples, x.OptimizerSteps, x.SkippedSteps }),
        });
        return new StudyFiles(jsonPath, mdPath, plots, logs);
    }

    static object Slim(EvalSummary e) => new
    {
        pass_at_1 = e.AvgAtN,
        pass_at_k = e.PassAtK.ToDictionary(kv => kv.Key.ToString(Inv), kv => kv.Value),
        verdicts = e.VerdictShares,
        distinct_correct_per_solved = e.DistinctCorrectPerSolved,
        role_high_share = e.RoleHighShare,
        arithmetic_split = e.ArithmeticSplit,
        greedy = e.Greedy,
        entropy = e.Entropy,
        response_length = e.Length,
        samples = e.Samples,
        correct_counts = e.CorrectCounts,
    };

    // ------------------------------------------------------------------ charts

    /// <summary>Per method, the seed-mean of a per-step metric (NaN steps skipped per seed).</summary>
    static (double[] X, double[] Y) MeanCurve(StudyResult r, string alg, Func<Dictionary<string, double>, double> value)
    {
        var runs = r.Runs.Where(x => x.Algorithm == alg).ToList();
        int steps = runs.Max(x => x.Curve.Count);
        var xs = new List<double>(); var ys = new List<double>();
        for (int s = 0; s < steps; s++)
        {
            var v = runs.Where(x => s < x.Curve.Count).Select(x => value(x.Curve[s])).Where(double.IsFinite).ToList();
            if (v.Count == 0) continue;
            xs.Add(s); ys.Add(v.Average());
        }
        return (xs.ToArray(), ys.ToArray());
    }

    static double Key(Dictionary<string, double> row, string key) => row.TryGetValue(key, out var v) ? v : double.NaN;

    static List<string> Plots(StudyResult r, string dir)
    {
        var files = new List<string>();
        var algs = r.Options.AlgorithmList;
        string Color(string alg) => SvgPlot.Palette[Array.IndexOf(StudyOptions.AllAlgorithms, alg) is var i and >= 0 ? i
            : Array.IndexOf(StudyOptions.Ablations, alg) is var j and >= 0 ? 5 + j : 9];
        string seeds = $"mean of {r.Options.SeedList.Length} seed(s)";

        void Curve(string name, string title, string y, Func<Dictionary<string, double>, double> value, bool zero = false, double smoothing = 0.6)
        {
            var plot = new SvgPlot { Title = $"{title} ({seeds})", XLabel = "training step", YLabel = y, IncludeZero = zero, Smoothing = smoothing, AlwaysShowLegend = true };
            foreach (var alg in algs)
            {
                var (x, yv) = MeanCurve(r, alg, value);
                if (x.Length > 0) plot.AddSeries(alg, x, yv, Color(alg));
            }
            if (plot.Series.Count == 0) return;
            var path = Path.Combine(dir, name + ".svg");
            plot.Save(path);
            files.Add(path);
        }

        Curve("reward", "Rollout accuracy (reward/mean)", "share correct", row => Key(row, "reward/mean"));
        Curve("entropy_high", "entropy/high: high-entropy tokens", "nats", row => Key(row, "entropy/high"), zero: true, smoothing: 0);
        Curve("entropy_low", "entropy/low: low-entropy tokens", "nats", row => Key(row, "entropy/low"), zero: true, smoothing: 0);
        Curve("clip_low", "Clip fraction, low-entropy class", "fraction of class tokens",
            row => Key(row, "clip/low/lower") + Key(row, "clip/low/upper"), zero: true);
        Curve("clip_high", "Clip fraction, high-entropy class", "fraction of class tokens",
            row => Key(row, "loss/high_entropy_share") > 0 ? Key(row, "clip/high/lower") + Key(row, "clip/high/upper") : double.NaN, zero: true);
        Curve("clip_fraction", "Clip fraction, all tokens (clip/fraction)", "fraction of tokens", row => Key(row, "clip/fraction"), zero: true);
        // Countdown's verdict mix over training: knowledge errors (a stated result is wrong) and reasoning errors.
        if (r.Runs.Any(x => x.Curve.Any(row => row.ContainsKey("verdict/arithmetic"))))
        {
            Curve("verdict_arithmetic", "Arithmetic (knowledge) errors in rollouts", "share of samples", row => Key(row, "verdict/arithmetic"), zero: true);
            Curve("verdict_reasoning", "Reasoning errors (wrong_target + unavailable) in rollouts", "share of samples",
                row => Key(row, "verdict/wrong_target") + Key(row, "verdict/unavailable"), zero: true);
            Curve("verdict_format", "Format errors in rollouts", "share of samples", row => Key(row, "verdict/format"), zero: true);
        }
        if (r.Runs.Any(x => x.Curve.Any(row => row.ContainsKey("eval/pass@1"))))
            Curve("eval_pass1", "Held-out pass@1 during training", "pass@1", row => Key(row, "eval/pass@1"), smoothing: 0);

        var pk = new SvgPlot { Title = $"Held-out pass@k ({seeds}, n={r.Options.EvalSamples}, T=0.8)", XLabel = "k", YLabel = "pass@k", AlwaysShowLegend = true };
        var ks = r.Start.PassAtK.Keys.Select(k => (double)k).ToArray();
        pk.AddSeries("sft start", ks, r.Start.PassAtK.Values.ToArray(), "#999999");
        foreach (var s in Summaries(r).Where(s => s.Seeds > 0))
            pk.AddSeries(s.Algorithm, s.PassAtKMean.Keys.Select(k => (double)k).ToArray(), s.PassAtKMean.Values.ToArray(), Color(s.Algorithm));
        var pkPath = Path.Combine(dir, "pass_at_k.svg");
        pk.Save(pkPath);
        files.Add(pkPath);
        return files;
    }

    // ------------------------------------------------------------------ markdown

    static string F(double v, string fmt = "0.000") => double.IsNaN(v) ? "–" : v.ToString(fmt, Inv);
    /// <summary>Signed, with a third section so a value that rounds to zero prints as 0.000, not "-+0.000".</summary>
    const string SignedFormat = "+0.000;-0.000;0.000";
    static string P(double p) => double.IsNaN(p) ? "–" : p < 0.001 ? p.ToString("0.0e0", Inv) : p.ToString("0.000", Inv);

    public static string Markdown(StudyResult r, IReadOnlyList<MethodSummary> summaries, IReadOnlyList<Comparison> comparisons, string? command)
    {
        var o = r.Options;
        int n = o.EvalSamples;
        var sb = new StringBuilder();
        sb.AppendLine($"# ArcherStudy results ({o.Variant})");
        sb.AppendLine();
        sb.AppendLine($"- task: {o.TaskDescription}, model preset `{o.ModelPreset}`, SFT {o.SftSteps} steps × {o.SftBatch} (lr {F(o.SftLr, "0.####")}, correct share {F(o.SftCorrectShare, "0.##")})");
        sb.AppendLine($"- RL: {o.Steps} steps × {o.Prompts} prompts × {o.GroupSize} samples, lr {F(o.LearningRate, "0.######")}, seeds {string.Join(", ", o.SeedList)}");
        sb.AppendLine($"- held-out: {o.EvalProblems} problems × {n} samples at T = 0.8 (pass@1 = avg@{n}, unbiased pass@k), greedy = 1 sample at T = 0");
        if (command != null) sb.AppendLine($"- command: `{command}`");
        sb.AppendLine($"- machine: {r.Machine}; started {r.StartedUtc:yyyy-MM-dd HH:mm} UTC; total {r.TotalSeconds / 60:F1} min (SFT {r.SftSeconds:F0} s)");
        sb.AppendLine();
        sb.AppendLine($"| method | pass@1 mean ± sd (min–max) | pass@{Math.Min(4, n)} | pass@{n} | greedy | samples / run | opt. steps / run | s / run | H high / low (last 5 steps) |");
        sb.AppendLine("|---|---|---|---|---|---|---|---|---|");
        int k4 = Math.Min(4, n);
        sb.AppendLine($"| SFT start | {F(r.Start.AvgAtN)} | {F(r.Start.PassAtK[k4])} | {F(r.Start.PassAtK[n])} | {F(r.Start.Greedy)} | | | | |");
        foreach (var s in summaries)
            sb.AppendLine($"| {s.Algorithm} | {F(s.Pass1Mean)} ± {F(s.Pass1Sd)} ({F(s.Pass1Min)}–{F(s.Pass1Max)}) | {F(s.PassAtKMean[k4])} ± {F(s.PassAtKSd[k4])} | " +
                $"{F(s.PassAtKMean[n])} ± {F(s.PassAtKSd[n])} | {F(s.GreedyMean)} ± {F(s.GreedySd)} | {F(s.GeneratedSamplesMean, "0")} | {F(s.OptimizerStepsMean, "0")} | " +
                $"{F(s.SecondsMean, "0.0")} | {F(s.FinalEntropyHigh, "0.00")} / {F(s.FinalEntropyLow, "0.00")} |");
        sb.AppendLine();
        if (comparisons.Count > 0)
        {
            sb.AppendLine("Archer minus baseline (two-sided p; 95% intervals in brackets):");
            sb.AppendLine();
            sb.AppendLine("| baseline | metric | archer − baseline | paired t over seeds (df) | Welch t over seeds | paired bootstrap over problems |");
            sb.AppendLine("|---|---|---|---|---|---|");
            foreach (var c in comparisons)
                sb.AppendLine($"| {c.Baseline} | {c.Metric} | {F(c.Paired.Difference, SignedFormat)} | " +
                    $"p = {P(c.Paired.PValue)} ({F(c.Paired.DegreesOfFreedom, "0")}) [{F(c.Paired.CiLow, SignedFormat)}, {F(c.Paired.CiHigh, SignedFormat)}] | " +
                    $"p = {P(c.Welch.PValue)} | p = {P(c.Bootstrap.PValue)} [{F(c.Bootstrap.CiLow, SignedFormat)}, {F(c.Bootstrap.CiHigh, SignedFormat)}] |");
            sb.AppendLine();
        }
        if (r.Start.VerdictShares.Count > 0)
        {
            var names = r.Start.VerdictShares.Keys.ToList();
            int k32 = Math.Min(32, n);
            sb.AppendLine($"Held-out detail (mean over seeds): pass@{k32}, verdict shares of the samples, distinct correct responses per solved problem, response length:");
            sb.AppendLine();
            sb.AppendLine($"| method | pass@{k32} | " + string.Join(" | ", names) + " | distinct correct / solved | length |");
            sb.AppendLine("|---|---|" + string.Concat(names.Select(_ => "---|")) + "---|---|");
            void Row(string name, IReadOnlyList<EvalSummary> e) =>
                sb.AppendLine($"| {name} | {F(e.Average(x => x.PassAtK[k32]))} | " + string.Join(" | ", names.Select(v => F(e.Average(x => x.VerdictShares[v])))) +
                    $" | {F(e.Average(x => x.DistinctCorrectPerSolved), "0.00")} | {F(e.Average(x => x.Length), "0.0")} |");
            Row("SFT start", [r.Start]);
            foreach (var alg in o.AlgorithmList)
            {
                var evals = r.Runs.Where(x => x.Algorithm == alg).Select(x => x.Eval).ToList();
                if (evals.Count > 0) Row(alg, evals);
            }
            sb.AppendLine();
        }
        if (r.Start.ArithmeticSplit is not null || r.Runs.Any(x => x.Eval.ArithmeticSplit is not null))
        {
            sb.AppendLine("The `arithmetic` verdict split by its deciding step (the first wrong result; shares of all samples, mean over the runs " +
                          "that have it, their number in brackets: runs finished before the split existed have none). \"final states target\": " +
                          "the last step is the first wrong one and states the target (a path that does not reach the target, written as if it did); " +
                          "\"earlier step\": a result before the last is wrong. \"states target\": last step states the target, any verdict:");
            sb.AppendLine();
            sb.AppendLine("| method | arithmetic | final states target | final other | earlier step | states target |");
            sb.AppendLine("|---|---|---|---|---|---|");
            void SplitRow(string name, IReadOnlyList<EvalSummary> e)
            {
                var with = e.Where(x => x.ArithmeticSplit is not null).ToList();
                if (with.Count == 0) return;
                sb.AppendLine($"| {name} ({with.Count}) | {F(with.Average(x => x.VerdictShares.GetValueOrDefault("arithmetic", double.NaN)))} | " +
                    string.Join(" | ", ArithmeticErrors.Names.Select(k => F(with.Average(x => x.ArithmeticSplit![k])))) + " |");
            }
            SplitRow("SFT start", [r.Start]);
            foreach (var alg in o.AlgorithmList) SplitRow(alg, r.Runs.Where(x => x.Algorithm == alg).Select(x => x.Eval).ToList());
            sb.AppendLine();
        }
        if (r.Start.RoleHighShare is not null)
        {
            sb.AppendLine("Token roles (the premise): share of each role's tokens in Archer's high-entropy class (per response, H > 0.8-quantile), " +
                          "policy at T = 1 on 100 held-out problems × 4 samples. Operand and operator choices should be high, result digits low. " +
                          "entropy_high / entropy_low: mean entropy (nats) of the high- and low-class tokens, the same classification for every method (claim c):");
            sb.AppendLine();
            string[] columns = [.. TokenRoles.Names, TokenRoles.EntropyHigh, TokenRoles.EntropyLow];
            sb.AppendLine("| policy | " + string.Join(" | ", columns) + " |");
            sb.AppendLine("|---|" + string.Concat(columns.Select(_ => "---|")));
            sb.AppendLine("| SFT start | " + string.Join(" | ", columns.Select(n => F(r.Start.RoleHighShare[n]))) + " |");
            foreach (var alg in o.AlgorithmList)
            {
                var shares = r.Runs.Where(x => x.Algorithm == alg && x.Eval.RoleHighShare is not null).Select(x => x.Eval.RoleHighShare!).ToList();
                if (shares.Count > 0) sb.AppendLine($"| {alg} | " + string.Join(" | ", columns.Select(n => F(shares.Average(x => x[n])))) + " |");
            }
            sb.AppendLine();
        }
        var ck = EntropyAndKnowledge(r);
        if (ck.Count > 0)
        {
            sb.AppendLine($"Claims (c) and (d), paired over seeds (SFT start: high-class entropy {F(r.Start.RoleHighShare?.GetValueOrDefault(TokenRoles.EntropyHigh, double.NaN) ?? double.NaN)}, " +
                          $"low-class {F(r.Start.RoleHighShare?.GetValueOrDefault(TokenRoles.EntropyLow, double.NaN) ?? double.NaN)}, held-out arithmetic share {F(r.Start.VerdictShares.GetValueOrDefault("arithmetic", double.NaN))}):");
            sb.AppendLine();
            sb.AppendLine("| comparison | metric | first | second | difference | paired t [95%] |");
            sb.AppendLine("|---|---|---|---|---|---|");
            foreach (var c in ck)
                sb.AppendLine($"| {c.Baseline} | {c.Metric} | {F(c.ArcherMean)} | {F(c.BaselineMean)} | {F(c.Paired.Difference, SignedFormat)} | p = {P(c.Paired.PValue)} " +
                              $"[{F(c.Paired.CiLow, SignedFormat)}, {F(c.Paired.CiHigh, SignedFormat)}] |");
            sb.AppendLine();
        }
        var crossover = o.AlgorithmList.Where(a => a.StartsWith("grpo", StringComparison.Ordinal)).SelectMany(a => AgainstSft(r, a).Select(c => (a, c))).ToList();
        if (crossover.Count > 0)
        {
            sb.AppendLine("The crossover (claim a): GRPO minus the SFT start (paired t over seeds of run − SFT; bootstrap over problems):");
            sb.AppendLine();
            sb.AppendLine("| method | metric | SFT | after RL | difference | paired t | bootstrap |");
            sb.AppendLine("|---|---|---|---|---|---|---|");
            foreach (var (a, c) in crossover)
                sb.AppendLine($"| {a} | {c.Metric} | {F(c.BaselineMean)} | {F(c.ArcherMean)} | {F(c.Paired.Difference, SignedFormat)} | p = {P(c.Paired.PValue)} " +
                    $"[{F(c.Paired.CiLow, SignedFormat)}, {F(c.Paired.CiHigh, SignedFormat)}] | p = {P(c.Bootstrap.PValue)} [{F(c.Bootstrap.CiLow, SignedFormat)}, {F(c.Bootstrap.CiHigh, SignedFormat)}] |");
            sb.AppendLine();
        }
        sb.AppendLine("Per run (pass@1 / greedy / training wall time):");
        sb.AppendLine();
        sb.AppendLine("| method | " + string.Join(" | ", o.SeedList.Select(s => $"seed {s}")) + " |");
        sb.AppendLine("|---|" + string.Concat(o.SeedList.Select(_ => "---|")));
        foreach (var alg in o.AlgorithmList)
            sb.AppendLine($"| {alg} | " + string.Join(" | ", o.SeedList.Select(s =>
            {
                var run = r.Runs.FirstOrDefault(x => x.Algorithm == alg && x.Seed == s);
                return run is null ? "–" : $"{F(run.Eval.AvgAtN)} / {F(run.Eval.Greedy, "0.00")} / {F(run.Seconds, "0")} s";
            })) + " |");
        return sb.ToString();
    }
}
