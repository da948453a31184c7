using System.Diagnostics;
using ArcherIlgpu.Kernels;
using ArcherIlgpu.Model.Gpt2;
using ArcherIlgpu.Model.Tokenizers;
using ArcherIlgpu.Model.Training;
using ArcherIlgpu.Rl.Tasks;
using ArcherIlgpu.Rl.Training;

namespace ArcherStudy;

/// <summary>A held-out evaluation: avg@n (= pass@1), unbiased pass@k, greedy accuracy, and per-problem correct counts for the tests.</summary>
public sealed record EvalSummary(double AvgAtN, IReadOnlyDictionary<int, double> PassAtK, double Greedy, double Entropy, double Length,
    int Samples, int[] CorrectCounts)
{
    public static EvalSummary From(EvalResult r) =>
        new(r.AvgAtN, r.PassAtK, r.GreedyAccuracy, r.MeanEntropy, r.MeanResponseLength, r.Samples, r.CorrectCounts.ToArray());
}

/// <summary>One RL run: an algorithm from the SFT checkpoint with one seed.</summary>
/// <param name="Curve">Per training step, the metrics the plots and the table use (see <see cref="Study.CurveKeys"/>).</param>
/// <param name="GeneratedSamples">Completions sampled over the whole run (DAPO's dynamic sampling generates more per step).</param>
public sealed record RunResult(string Algorithm, int Seed, EvalSummary Eval, double Seconds, long GeneratedSamples, long OptimizerSteps,
    int SkippedSteps, List<Dictionary<string, double>> Curve);

public sealed record StudyResult(StudyOptions Options, EvalSummary Start, double SftSeconds, List<RunResult> Runs, double TotalSeconds,
    string Machine, DateTime StartedUtc);

/// <summary>
/// The study: SFT once from a fixed initialisation, evaluate the checkpoint, then for every seed and every
/// algorithm start a fresh policy from exactly that checkpoint, train the same number of steps on the same
/// training stream (the seed fixes the problems and the rollout randomness, so the first rollout of a seed is
/// identical for every algorithm), and evaluate on the same held-out problems with the same sampling seed.
/// </summary>
public static class Study
{
    /// <summary>Metrics kept per step (the trainer logs more).</summary>
    public static readonly string[] CurveKeys =
    [
        "reward/mean", "entropy/all", "entropy/high", "entropy/low", "entropy/high_share",
        "clip/fraction", "clip/dual", "clip/low/lower", "clip/low/upper", "clip/high/lower", "clip/high/upper", "loss/high_entropy_share",
        "kl/low", "kl/high", "kl/ppo", "response_length/mean", "batch/generated_groups", "batch/kept_groups", "batch/generation_batches",
        "optim/steps", "optim/grad_norm", "skipped/steps", "time/step_s",
    ];

    /// <param name="afterSeed">called with the result so far after every seed's runs (the program writes partial reports with it).</param>
    public static StudyResult Run(StudyOptions o, Action<string>? log = null, Action<StudyResult>? afterSeed = null)
    {
        log ??= _ => { };
        var started = DateTime.UtcNow;
        var total = Stopwatch.StartNew();
        var tokenizer = CharTokenizer.ForArithmetic();
        var modelConfig = Gpt2Config.Preset(o.ModelPreset) with { VocabSize = tokenizer.VocabSize };
        var task = o.Task;

        var sftClock = Stopwatch.StartNew();
        var start = Sft(o, modelConfig, tokenizer, task);
        double sftSeconds = sftClock.Elapsed.TotalSeconds;
        EvalSummary startEval;
        using (var backend = new CpuBackend())
        using (var model = new Gpt2Model(backend, modelConfig, start))
            startEval = Evaluate(model, tokenizer, task, o, o.EvalProblems, o.EvalSamples, greedy: true);
        log($"SFT {o.SftSteps} steps in {sftSeconds:F1}s: held-out pass@1 {startEval.AvgAtN:F3}, pass@{o.EvalSamples} {startEval.PassAtK[o.EvalSamples]:F3}, greedy {startEval.Greedy:F3}");

        var runs = new List<RunResult>();
        foreach (int seed in o.SeedList)
        {
            foreach (var algorithm in o.AlgorithmList)
            {
                var r = RunOne(o, algorithm, seed, start, modelConfig, tokenizer, task, startEval);
                runs.Add(r);
                log($"{algorithm,-13} seed {seed}: pass@1 {startEval.AvgAtN:F3} -> {r.Eval.AvgAtN:F3}, pass@{o.EvalSamples} {r.Eval.PassAtK[o.EvalSamples]:F3}, " +
                    $"greedy {r.Eval.Greedy:F3}; {r.Seconds:F1}s, {r.GeneratedSamples} samples, {r.OptimizerSteps} optimizer steps (elapsed {total.Elapsed.TotalMinutes:F1} min)");
            }
            var done = o.SeedList.TakeWhile(s => s != seed).Append(seed).ToArray();
            afterSeed?.Invoke(new StudyResult(o with { Seeds = done }, startEval, sftSeconds, [.. runs], total.Elapsed.TotalSeconds, Machine(), started));
        }
        return new StudyResult(o, startEval, sftSeconds, runs, total.Elapsed.TotalSeconds, Machine(), started);
    }

    /// <summary>Supervised fine-tuning from a fixed initialisation (seed 7) on a fixed data stream (seed 11); returns flat weights.</summary>
    public static float[] Sft(StudyOptions o, Gpt2Config modelConfig, CharTokenizer tokenizer, ArithmeticTask task)
    {
        using var backend = new CpuBackend();
        using var model = new Gpt2Model(backend, modelConfig, seed: 7);
        var rng = new Random(11);
        var training = HeldOut.TrainingView(task);   // no evaluation problem is ever a demonstration
        var train = new List<SftExample>(o.SftExamples);
        for (int i = 0; i < o.SftExamples; i++)
        {
            // The SFT stream (seed 11) is neither a training seed's stream nor the held-out stream.
            var e = training.Generate(11, i);
            string completion = rng.NextDouble() < o.SftCorrectShare ? e.Answer
                : (System.Numerics.BigInteger.Parse(e.Answer, System.Globalization.CultureInfo.InvariantCulture) + 1).ToString(System.Globalization.CultureInfo.InvariantCulture);
            train.Add(SftData.Tokenize(e.Prompt, completion, tokenizer, modelConfig.MaxT, $"sft:{i}"));
        }
        using var sft = new SftTrainer(model, train, [], tokenizer.EndOfText,
            new SftOptions(Steps: o.SftSteps, BatchSize: o.SftBatch, Lr: o.SftLr, WarmupSteps: 10, Schedule: "cosine", EvalEvery: o.SftSteps, Seed: 3));
        sft.Run();
        return model.DownloadParameters();
    }

    static RunResult RunOne(StudyOptions o, string algorithm, int seed, float[] start, Gpt2Config modelConfig, CharTokenizer tokenizer,
        ArithmeticTask task, EvalSummary startEval)
    {
        using var backend = new CpuBackend();
        using var model = new Gpt2Model(backend, modelConfig, start);
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
                generated += (long)m["batch/generated_groups"] * config.GroupSize;
                optimizerSteps += (long)m["optim/steps"];
                if (o.CurveEvery > 0 && ((s + 1) % o.CurveEvery == 0 || s == 0))
                    row["eval/pass@1"] = Evaluate(model, tokenizer, task, o, o.CurveProblems, o.CurveSamples, greedy: false).AvgAtN;
                curve.Add(row);
            }
            skipped = trainer.SkippedOptimizerSteps;
        }
        double seconds = clock.Elapsed.TotalSeconds;
        var eval = Evaluate(model, tokenizer, task, o, o.EvalProblems, o.EvalSamples, greedy: true);
        return new RunResult(algorithm, seed, eval, seconds, generated, optimizerSteps, skipped, curve);
    }

    /// <summary>The held-out evaluation: the same problems (the evaluator's held-out stream) and the same sampling seed for every model.</summary>
    public static EvalSummary Evaluate(Gpt2Model model, CharTokenizer tokenizer, ArithmeticTask task, StudyOptions o, int problems, int samples, bool greedy) =>
        EvalSummary.From(Evaluator.Evaluate(model, tokenizer, task,
            new EvalOptions(Problems: problems, Samples: samples, Temperature: 0.8, Seed: 5, Greedy: greedy), maxResponseTokens: o.MaxResponseTokens));

    public static string Machine() =>
        $"{Environment.ProcessorCount} logical cores, {System.Runtime.InteropServices.RuntimeInformation.OSDescription.Trim()}, " +
        $".NET {Environment.Version}, cpu backend";
}
