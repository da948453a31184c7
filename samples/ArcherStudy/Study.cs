using System.Diagnostics;
using ArcherIlgpu.Kernels;
using ArcherIlgpu.Model;
using ArcherIlgpu.Model.Tokenizers;
using ArcherIlgpu.Model.Training;
using ArcherIlgpu.Rl.Metrics;
using ArcherIlgpu.Rl.Tasks;
using ArcherIlgpu.Rl.Training;

namespace ArcherStudy;

/// <summary>
/// A held-out evaluation: avg@n (= pass@1), the unbiased pass@k for every k = 1..n, greedy accuracy, and per
/// problem the correct counts. For a task with verdicts (Countdown) also each verdict's share of the samples and
/// the number of distinct correct responses per solved problem (how many paths the policy still finds).
/// </summary>
public sealed record EvalSummary(double AvgAtN, IReadOnlyDictionary<int, double> PassAtK, double Greedy, double Entropy, double Length,
    int Samples, int[] CorrectCounts, IReadOnlyDictionary<string, double> VerdictShares, double DistinctCorrectPerSolved)
{
    /// <summary>Countdown: per token role, the share of its tokens in Archer's high-entropy class (<see cref="TokenRoles"/>).</summary>
    public IReadOnlyDictionary<string, double>? RoleHighShare { get; init; }

    /// <summary>Countdown: the <c>arithmetic</c> verdict split by its deciding step (<see cref="ArithmeticErrors"/>); null in results saved before the split existed.</summary>
    public IReadOnlyDictionary<string, double>? ArithmeticSplit { get; init; }
}

/// <summary>One RL run: an algorithm from the SFT checkpoint with one seed.</summary>
/// <param name="Curve">Per training step, the metrics the plots and the table use (see <see cref="Study.CurveKeys"/>).</param>
/// <param name="GeneratedSamples">Completions sampled over the whole run (DAPO's dynamic sampling generates more per step).</param>
/// <param name="Seconds">Wall time of the run's training (its final evaluation not included).</param>
public sealed record RunResult(string Algorithm, int Seed, EvalSummary Eval, double Seconds, long GeneratedSamples, long OptimizerSteps,
    int SkippedSteps, List<Dictionary<string, double>> Curve);

/// <summary>The SFT stage: its evaluation, wall time and validation losses (on training problems, never held-out ones).</summary>
public sealed record SftResult(EvalSummary Eval, double Seconds, double ValidationLossStart, double ValidationLoss);

public sealed record StudyResult(StudyOptions Options, EvalSummary Start, double SftSeconds, List<RunResult> Runs, double TotalSeconds,
    string Machine, DateTime StartedUtc);

/// <summary>The study stopped after the number of runs a test asked for (as if killed between runs).</summary>
public sealed class StudyInterruptedException(int runs) : Exception($"stopped after {runs} new run(s)");

/// <summary>
/// The study: SFT once from a fixed initialisation, evaluate the checkpoint, then for every seed and every
/// algorithm start a fresh policy from exactly that checkpoint, train the same number of steps on the same
/// training stream (the seed fixes the problems and the rollout randomness, so the first rollout of a seed is
/// identical for every algorithm), and evaluate on the same held-out problems with the same sampling seed.
/// Every stage is a run folder of the study folder (<see cref="StudyRuns"/>): a finished one is read back, not redone.
/// </summary>
public static class Study
{
    /// <summary>Metrics kept per step (the trainer logs more), plus every verdict/NAME share the task reports.</summary>
    public static readonly string[] CurveKeys =
    [
        "reward/mean", "entropy/all", "entropy/high", "entropy/low", "entropy/high_share",
        "clip/fraction", "clip/dual", "clip/low/lower", "clip/low/upper", "clip/high/lower", "clip/high/upper", "loss/high_entropy_share",
        "kl/low", "kl/high", "kl/ppo", "response_length/mean", "batch/generated_groups", "batch/kept_groups", "batch/generation_batches",
        "optim/steps", "optim/grad_norm", "skipped/steps", "time/step_s",
    ];

    /// <param name="afterSeed">called with the result so far after every seed's runs (the program writes partial reports with it).</param>
    /// <param name="stopAfterRuns">tests: stop (throw <see cref="StudyInterruptedException"/>) after this many newly computed runs.</param>
    public static StudyResult Run(StudyOptions o, Action<string>? log = null, Action<StudyResult>? afterSeed = null, int? stopAfterRuns = null)
    {
        log ??= _ => { };
        var started = DateTime.UtcNow;
        var total = Stopwatch.StartNew();
        var tokenizer = CharTokenizer.ForArithmetic();
        var modelConfig = Models.Preset(o.ModelPreset).WithVocabSize(tokenizer.VocabSize);
        var task = o.Task;
        var layout = new StudyRuns(o);
        var (sft, start) = Start(o, layout, modelConfig, tokenizer, log);

        var runs = new List<RunResult>();
        int computed = 0;
        foreach (int seed in o.SeedList)
        {
            foreach (var algorithm in o.AlgorithmList)
            {
                if (stopAfterRuns is int stop && computed >= stop) throw new StudyInterruptedException(computed);
                var r = layout.Rl(algorithm, seed, log, () => { computed++; return RunOne(o, algorithm, seed, start, modelConfig, tokenizer, task); });
                runs.Add(r);
                log($"{algorithm,-13} seed {seed}: pass@1 {sft.Eval.AvgAtN:F3} -> {r.Eval.AvgAtN:F3}, pass@{o.EvalSamples} {r.Eval.PassAtK[o.EvalSamples]:F3}, " +
                    $"greedy {r.Eval.Greedy:F3}; {r.Seconds:F1}s, {r.GeneratedSamples} samples, {r.OptimizerSteps} optimizer steps (elapsed {total.Elapsed.TotalMinutes:F1} min)");
            }
            var done = o.SeedList.TakeWhile(s => s != seed).Append(seed).ToArray();
            afterSeed?.Invoke(new StudyResult(o with { Seeds = done }, sft.Eval, sft.Seconds, [.. runs], total.Elapsed.TotalSeconds, Machine(), started));
        }
        return new StudyResult(o, sft.Eval, sft.Seconds, runs, total.Elapsed.TotalSeconds, Machine(), started);
    }

    /// <summary>
    /// This rank's share of a study run as <paramref name="ranks"/>.Size processes (under mpirun): rank 0 trains (or reads
    /// back) the SFT start while the others wait for it; then the runs not finished yet, in the study's order (seed by
    /// seed, method by method), are dealt out, the i-th to rank i mod Size, each computed single-process exactly as
    /// <see cref="Run"/> does (runs are independent and seeded, so the results are those of one process); then every
    /// rank waits until every run is finished. Afterwards <see cref="Run"/> on rank 0 reads them all back for the report.
    /// </summary>
    public static void RunShare(StudyOptions o, StudyRanks ranks, Action<string>? log = null)
    {
        log ??= _ => { };
        var tokenizer = CharTokenizer.ForArithmetic();
        var modelConfig = Models.Preset(o.ModelPreset).WithVocabSize(tokenizer.VocabSize);
        var layout = new StudyRuns(o);
        var order = o.SeedList.SelectMany(seed => o.AlgorithmList.Select(algorithm => (Algorithm: algorithm, Seed: seed))).ToArray();
        // Listed before the SFT barrier: no rank computes an RL run until every rank has passed it, so all see the same list.
        var pending = order.Where(r => !layout.Finished(r.Algorithm, r.Seed)).ToArray();
        float[]? start = null;
        if (ranks.Rank == 0) start = Start(o, layout, modelConfig, tokenizer, log).Weights;
        ranks.WaitFor(layout.SftSaved);
        start ??= Start(o, layout, modelConfig, tokenizer, log).Weights;   // the other ranks read it back
        log($"{pending.Length} of {order.Length} runs to do over {ranks.Size} ranks; this rank's: " +
            string.Join(", ", pending.Where((_, i) => ranks.Owns(i)).Select(r => $"{r.Algorithm} seed {r.Seed}").DefaultIfEmpty("none")));
        var clock = Stopwatch.StartNew();
        for (int i = 0; i < pending.Length; i++)
        {
            if (!ranks.Owns(i)) continue;
            var (algorithm, seed) = pending[i];
            var r = layout.Rl(algorithm, seed, log, () => RunOne(o, algorithm, seed, start, modelConfig, tokenizer, o.Task));
            log($"{algorithm,-13} seed {seed}: pass@1 {r.Eval.AvgAtN:F3}, pass@{o.EvalSamples} {r.Eval.PassAtK[o.EvalSamples]:F3}, greedy {r.Eval.Greedy:F3}; " +
                $"{r.Seconds:F1}s (elapsed {clock.Elapsed.TotalMinutes:F1} min)");
        }
        log("this rank's runs are done; waiting for the other ranks");
        ranks.WaitFor(() => order.All(r => layout.Saved(r.Algorithm, r.Seed)));
    }

    /// <summary>The SFT start (trained, or read back when finished), completed for Countdown's checks, and its summary logged.</summary>
    static (SftResult Result, float[] Weights) Start(StudyOptions o, StudyRuns layout, IModelConfig modelConfig, CharTokenizer tokenizer, Action<string> log)
    {
        var (sft, start) = layout.Sft(log, () => Sft(o, modelConfig, tokenizer, log));
        if (o.IsCountdown && (sft.Eval.RoleHighShare is null || sft.Eval.ArithmeticSplit is null))
            sft = layout.SaveSftResult(sft with { Eval = CompleteSftEval(o, sft.Eval, start, modelConfig, tokenizer, log) });
        log($"SFT {o.SftSteps} steps ({sft.Seconds:F1}s, validation loss {sft.ValidationLossStart:F4} -> {sft.ValidationLoss:F4}): held-out pass@1 {sft.Eval.AvgAtN:F3}, " +
            $"pass@{o.EvalSamples} {sft.Eval.PassAtK[o.EvalSamples]:F3}, greedy {sft.Eval.Greedy:F3}");
        return (sft, start);
    }

    /// <summary>
    /// An SFT stage saved before the role check or the arithmetic split existed gets them once (the caller saves the result).
    /// The split needs the samples again: the same held-out problems and sampling seed give the same samples, which the
    /// log shows by the verdict shares of the new pass next to the saved ones.
    /// </summary>
    static EvalSummary CompleteSftEval(StudyOptions o, EvalSummary eval, float[] start, IModelConfig modelConfig, CharTokenizer tokenizer, Action<string> log)
    {
        using var backend = new CpuBackend();
        using var model = Models.Create(backend, modelConfig, start);
        if (eval.RoleHighShare is null) eval = eval with { RoleHighShare = RoleShares(model, tokenizer, o.Task, o) };
        if (eval.ArithmeticSplit is not null) return eval;
        log("SFT: sampling the held-out set again for the split of the arithmetic verdict");
        var again = Evaluate(model, tokenizer, o.Task, o, o.EvalProblems, o.EvalSamples, greedy: false, examples: line => log($"SFT sample {line}"));
        string Shares(EvalSummary e) => string.Join(", ", e.VerdictShares.Select(kv => $"{kv.Key} {kv.Value:F4}"));
        log($"SFT verdicts saved: {Shares(eval)}; sampled again: {Shares(again)}");
        log("SFT arithmetic split: " + string.Join(", ", again.ArithmeticSplit!.Select(kv => $"{kv.Key} {kv.Value:F4}")));
        return eval with { ArithmeticSplit = again.ArithmeticSplit };
    }

    /// <summary>
    /// Supervised fine-tuning from a fixed initialisation (seed 7) on a fixed data stream (seed 11) of the training
    /// view (no evaluation problem is ever a demonstration); returns the model, its evaluation and the losses on a
    /// validation split of training problems (stream seed 13, none of them an SFT example).
    /// </summary>
    public static (CausalLm Model, SftResult Result) Sft(StudyOptions o, IModelConfig modelConfig, CharTokenizer tokenizer, Action<string> log)
    {
        var clock = Stopwatch.StartNew();
        var backend = new CpuBackend();
        var model = Models.Create(backend, modelConfig, seed: 7);
        var rng = new Random(11);
        var training = HeldOut.TrainingView(o.SftTask);
        var train = new List<SftExample>(o.SftExamples);
        var trainKeys = new HashSet<string>(StringComparer.Ordinal);
        for (int i = 0; i < o.SftExamples; i++)
        {
            // The SFT stream (seed 11) is neither a training seed's stream nor the held-out stream.
            var e = training.Generate(11, i);
            trainKeys.Add(training.ProblemKey(e));
            train.Add(SftData.Tokenize(e.Prompt, Demonstration(o, e, rng), tokenizer, modelConfig.MaxT, $"sft:{i}"));
        }
        var validation = new List<SftExample>(o.SftValidation);
        for (long i = 0; validation.Count < o.SftValidation; i++)
        {
            var e = training.Generate(13, i);
            if (!trainKeys.Add(training.ProblemKey(e))) continue;   // a validation problem is never an SFT problem
            validation.Add(SftData.Tokenize(e.Prompt, Demonstration(o, e, rng), tokenizer, modelConfig.MaxT, $"validation:{i}"));
        }
        int every = Math.Max(1, o.SftSteps / 8);
        using var sft = new SftTrainer(model, train, validation, tokenizer.EndOfText,
            new SftOptions(Steps: o.SftSteps, BatchSize: o.SftBatch, Lr: o.SftLr, WarmupSteps: 10, Schedule: "cosine", EvalEvery: every, Seed: 3));
        double first = validation.Count > 0 ? sft.HeldOutLoss() : double.NaN, last = first;
        sft.Run(m =>
        {
            if (double.IsNaN(m.HeldOutLoss)) return;
            last = m.HeldOutLoss;
            log($"SFT step {m.Step}: loss {m.Loss:F4}, validation loss {m.HeldOutLoss:F4}");
        });
        double seconds = clock.Elapsed.TotalSeconds;
        var eval = Evaluate(model, tokenizer, o.Task, o, o.EvalProblems, o.EvalSamples, greedy: true);
        return (model, new SftResult(eval, seconds, first, last));
    }

    /// <summary>The SFT completion: Countdown's demonstration (one solution drawn among all); addition's right sum, or with
    /// probability 1 − SftCorrectShare the sum plus one (so the start leaves room).</summary>
    static string Demonstration(StudyOptions o, TaskExample e, Random rng)
    {
        if (o.IsCountdown) return e.Solution ?? throw new InvalidOperationException($"countdown problem '{e.Prompt}' has no demonstration");
        return rng.NextDouble() < o.SftCorrectShare ? e.Answer
            : (System.Numerics.BigInteger.Parse(e.Answer, System.Globalization.CultureInfo.InvariantCulture) + 1).ToString(System.Globalization.CultureInfo.InvariantCulture);
    }

    static RunResult RunOne(StudyOptions o, string algorithm, int seed, float[] start, IModelConfig modelConfig, CharTokenizer tokenizer,
        ITask task)
    {
        using var backend = new CpuBackend();
        using var model = Models.Create(backend, modelConfig, start);
        var config = o.Scaled(algorithm);
        var clock = Stopwatch.StartNew();
        var curve = new List<Dictionary<string, double>>();
        long generated = 0, optimizerSteps = 0;
        int skipped;
        using (var trainer = new RlTrainer(model, tokenizer, HeldOut.TrainingView(task), config, new RlTrainerOptions(Seed: (ulong)seed, SampleEvery: 0)))
        {
            for (int s = 0; s < o.Steps; s++)
            {
                var m = trainer.Step().Metrics;
                var row = new Dictionary<string, double> { ["step"] = s };
                foreach (var k in CurveKeys) row[k] = m.TryGetValue(k, out var v) ? v : double.NaN;
                foreach (var (k, v) in m.Where(kv => kv.Key.StartsWith("verdict/", StringComparison.Ordinal))) row[k] = v;
                generated += (long)m["batch/generated_groups"] * config.GroupSize;
                optimizerSteps += (long)m["optim/steps"];
                if (o.CurveEvery > 0 && ((s + 1) % o.CurveEvery == 0 || s == 0))
                    row["eval/pass@1"] = Evaluate(model, tokenizer, task, o, o.CurveProblems, o.CurveSamples, greedy: false).AvgAtN;
                curve.Add(row);
                // The CPU backend's buffers are pinned arrays that steps of another response length reallocate; dead ones piled
                // up to 16 GB in minutes. This collection alone did not stop that; the heap limit in ArcherStudy.csproj does.
                GC.Collect();
            }
            skipped = trainer.SkippedOptimizerSteps;
        }
        double seconds = clock.Elapsed.TotalSeconds;
        var eval = Evaluate(model, tokenizer, task, o, o.EvalProblems, o.EvalSamples, greedy: true);
        return new RunResult(algorithm, seed, eval, seconds, generated, optimizerSteps, skipped, curve);
    }

    /// <summary>
    /// The held-out evaluation: the same problems (<see cref="Evaluator.HeldOut"/>: never trained on) and the same
    /// sampling seed for every model, n samples at T = 0.8; pass@k for every k = 1..n from the per-problem counts.
    /// </summary>
    /// <param name="examples">when given, receives a few completions of each arithmetic kind (to read them, not only count them).</param>
    public static EvalSummary Evaluate(CausalLm model, CharTokenizer tokenizer, ITask task, StudyOptions o, int problems, int samples, bool greedy,
        Action<string>? examples = null)
    {
        var set = Evaluator.HeldOut(task, problems);
        // 128 rows per generator call (the default 512 holds ~2 GB of activations for the entropy pass of a countdown-3m batch).
        using var sampler = new ModelSampler(model, tokenizer, o.MaxResponseTokens, maxRows: SamplerRows);
        var completions = sampler.Sample(set, samples, 0.8, 5);
        var correct = new int[set.Count];
        var verdicts = task.Verdicts.ToDictionary(v => v, _ => 0, StringComparer.Ordinal);
        var arithmetic = new ArithmeticErrors.Counter(task);
        var shown = new Dictionary<string, int>(StringComparer.Ordinal);
        double length = 0, entropy = 0; long entropyTokens = 0, distinct = 0;
        for (int i = 0; i < set.Count; i++)
        {
            var solutions = new HashSet<string>(StringComparer.Ordinal);
            for (int j = 0; j < samples; j++)
            {
                var c = completions[i * samples + j];
                if (task.Reward(set[i], c.Text) > 0) { correct[i]++; solutions.Add(c.Text); }
                var verdict = task.Verdict(set[i], c.Text);
                if (verdict is not null) verdicts[verdict]++;
                if (arithmetic.Add(set[i], c.Text, verdict) is string kind && examples is not null && shown.GetValueOrDefault(kind) < 6)
                {
                    shown[kind] = shown.GetValueOrDefault(kind) + 1;
                    examples($"{kind}: {set[i].Prompt} {c.Text}");
                }
                length += c.Length; entropy += c.EntropySum; entropyTokens += c.EntropyTokens;
            }
            distinct += solutions.Count;
        }
        int solved = correct.Count(c => c > 0), total = set.Count * samples;
        var passAtK = Enumerable.Range(1, samples).ToDictionary(k => k, k => PassAtK.Mean(correct.Select(c => (samples, c)), k));
        double greedyAccuracy = double.NaN;
        if (greedy)
        {
            var g = sampler.Sample(set, 1, 0, 5);
            greedyAccuracy = set.Select((p, i) => task.Reward(p, g[i].Text) > 0 ? 1.0 : 0.0).Average();
        }
        GC.Collect();   // the sampler's batch-sized buffers (see RunOne)
        var roles = greedy && task.Verdicts.Count > 0 ? RoleShares(model, tokenizer, task, o) : null;
        return new EvalSummary(correct.Average() / samples, passAtK, greedyAccuracy, entropyTokens > 0 ? entropy / entropyTokens : double.NaN,
            length / total, samples, correct, verdicts.ToDictionary(kv => kv.Key, kv => kv.Value / (double)total),
            solved > 0 ? distinct / (double)solved : double.NaN) { RoleHighShare = roles, ArithmeticSplit = arithmetic.Shares() };
    }

    /// <summary>The role check on 100 held-out problems × 4 samples (fewer in small studies).</summary>
    static Dictionary<string, double> RoleShares(CausalLm model, CharTokenizer tokenizer, ITask task, StudyOptions o) =>
        TokenRoles.HighShare(model, tokenizer, task, Math.Min(100, o.EvalProblems), 4, o.MaxResponseTokens);

    /// <summary>Rows per generator call and per entropy forward in the study's evaluations.</summary>
    public const int SamplerRows = 128;

    public static string Machine() =>
        $"{Environment.ProcessorCount} logical cores, {System.Runtime.InteropServices.RuntimeInformation.OSDescription.Trim()}, " +
        $".NET {Environment.Version}, cpu backend";
}
