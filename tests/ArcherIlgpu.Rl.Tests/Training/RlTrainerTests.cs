using ArcherIlgpu.Kernels;
using ArcherIlgpu.Model.Gpt2;
using ArcherIlgpu.Rl.Algorithms;
using ArcherIlgpu.Rl.Tasks;
using ArcherIlgpu.Rl.Training;

namespace ArcherIlgpu.Rl.Tests.Training;

/// <summary>
/// A task whose verdict depends on the prompt's kind, so the filter's decisions are known in advance:
/// "a=" is always right, "b=" always wrong, "c=" right iff the completion starts with a character at an
/// even position of the alphabet (about half of a random model's samples, so a group of 8 is mixed).
/// Kinds cycle a, b, c through the stream.
/// </summary>
sealed class KindTask : ITask
{
    public string Name => "kinds";
    public long? Count => null;
    public static char KindOf(long index) => "abc"[(int)(index % 3)];
    public TaskExample Generate(long seed, long index) => new($"{KindOf(index)}=", "0");
    public double Reward(TaskExample example, string completion) => example.Prompt[0] switch
    {
        'a' => 1.0,
        'b' => 0.0,
        _ => completion.Length > 0 && TinyArithmetic.Tokenizer.Alphabet.IndexOf(completion[0]) % 2 == 0 ? 1.0 : 0.0,
    };
}

public class RlTrainerTests
{
    static Gpt2Model RandomModel(Backend backend, int seed = 5) => new(backend, TinyArithmetic.ModelConfig, seed);

    static AlgorithmConfig Small(string algorithm = "archer") => TinyArithmetic.Scaled(algorithm, groupSize: 8, prompts: 6, lr: 1e-3);

    static IEnumerable<KeyValuePair<string, double>> Comparable(IReadOnlyDictionary<string, double> m) =>
        m.Where(kv => !kv.Key.StartsWith("time/", StringComparison.Ordinal) && !kv.Key.StartsWith("perf/", StringComparison.Ordinal));

    [Fact]
    public void FilterDropsAllEqualGroups()
    {
        using var backend = new CpuBackend();
        using var model = RandomModel(backend);
        var config = Small() with { Filter = GroupFilterMode.DropUniform };
        using var collector = new RolloutCollector(model, TinyArithmetic.Tokenizer, new KindTask(), config);
        long counter = 0;
        var batch = collector.Collect(new DataCursor(new KindTask(), seed: 1), seed: 3, ref counter);

        // 6 prompts: a b c a b c.
        Assert.Equal(48, batch.Generated.Count);
        Assert.Equal(48, counter);   // one RNG stream per sequence
        Assert.Equal(2, batch.Counts.SolveAll);
        Assert.Equal(2, batch.Counts.SolveNone);
        Assert.Equal(2, batch.KeptGroups);
        Assert.All(batch.Kept, r => Assert.Equal('c', r.Example.Prompt[0]));
        foreach (var group in batch.Kept.Chunk(8))
            Assert.True(group.Select(r => r.Correct).Distinct().Count() > 1, "a kept group must have unequal rewards");

        var keepAll = collector.Collect(new DataCursor(new KindTask(), seed: 1), seed: 3, ref counter);
        using var noFilter = new RolloutCollector(model, TinyArithmetic.Tokenizer, new KindTask(), config with { Filter = GroupFilterMode.None });
        var all = noFilter.Collect(new DataCursor(new KindTask(), seed: 1), seed: 3, ref counter);
        Assert.Equal(6, all.KeptGroups);
    }

    [Fact]
    public void DynamicSamplingRefillsTheBatchFromMoreGenerationBatches()
    {
        using var backend = new CpuBackend();
        using var model = RandomModel(backend);
        var config = Small() with { Filter = GroupFilterMode.DynamicSampling, TrainBatchPrompts = 4, MiniBatchPrompts = 2, OversampleFactor = 1, MaxGenerationBatches = 10 };
        using var collector = new RolloutCollector(model, TinyArithmetic.Tokenizer, new KindTask(), config);
        long counter = 0;
        var data = new DataCursor(new KindTask(), seed: 1);
        var batch = collector.Collect(data, seed: 3, ref counter);
        // Only every third prompt ("c") is informative, so 4 prompts per batch need 3 batches to keep 4 groups.
        Assert.Equal(4, batch.KeptGroups);
        Assert.Equal(3, batch.GenerationBatches);
        Assert.Equal(12, data.Position);
        Assert.All(batch.Kept, r => Assert.Equal('c', r.Example.Prompt[0]));
        Assert.Equal((4, 4, 4), (batch.Counts.SolveAll, batch.Counts.SolveNone, batch.Counts.Kept));

        var capped = new RolloutCollector(model, TinyArithmetic.Tokenizer, new KindTask(), config with { MaxGenerationBatches = 2 })
            .Collect(new DataCursor(new KindTask(), seed: 1), seed: 3, ref counter);
        Assert.Equal(2, capped.GenerationBatches);
        Assert.Equal(2, capped.KeptGroups);   // c at stream indices 2 and 5: the limit stops the refill short
    }

    [Theory]
    [InlineData(0)]   // the whole mini-batch in one forward
    [InlineData(4)]   // gradient accumulation over micro-batches of 4 (one forward each)
    public void OldLogProbsMatchRolloutAndFirstRatioIsOne(int micro)
    {
        using var backend = new CpuBackend();
        using var model = RandomModel(backend);
        using var trainer = new RlTrainer(model, TinyArithmetic.Tokenizer, TinyArithmetic.Task, Small("archer") with { Filter = GroupFilterMode.None },
            new RlTrainerOptions(Seed: 2, MicroBatchResponses: micro));
        for (int s = 0; s < 2; s++)
        {
            var m = trainer.Step().Metrics;
            // KV-cached decoding and the full training forward sum in different orders: float32 rounding of
            // log-softmax values of order 1..4 nats, measured ≤ 2e-6; 1e-4 leaves room and still catches any
            // misalignment (an off-by-one position changes log-probs by O(1)).
            Assert.True(m["rollout/logprob_diff_max"] < 1e-4, $"|old − rollout| max {m["rollout/logprob_diff_max"]}");
            // The first mini-batch of epoch 1 runs the same forward on the same rows with the same shapes as the
            // old-log-prob pass, and the cpu backend is deterministic, so r = 1 exactly.
            Assert.Equal(0.0, m["ratio/first_max_abs_log_ratio"]);
            Assert.True(m["batch/valid_tokens"] > 0);
        }
    }

    [Fact]
    public void MicroBatchingGivesTheSameGradientAsOneForward()
    {
        double GradNorm(int micro)
        {
            using var backend = new CpuBackend();
            using var model = RandomModel(backend);
            var config = Small("archer") with { Filter = GroupFilterMode.None, PpoEpochs = 1, MiniBatchPrompts = 6 };
            using var trainer = new RlTrainer(model, TinyArithmetic.Tokenizer, TinyArithmetic.Task, config, new RlTrainerOptions(Seed: 2, MicroBatchResponses: micro));
            return trainer.Step().Metrics["optim/grad_norm"];
        }
        double whole = GradNorm(0), accumulated = GradNorm(5);
        // Same terms summed in a different grouping: float32 relative rounding, ~1e-6 measured.
        Assert.True(Math.Abs(whole - accumulated) <= 1e-4 * whole, $"grad norm {whole} vs {accumulated}");
    }

    [Fact]
    public void TwoIdenticalRunsAreIdenticalOnCpu()
    {
        (List<IReadOnlyDictionary<string, double>>, float[]) Run()
        {
            using var backend = new CpuBackend();
            using var model = RandomModel(backend);
            using var trainer = new RlTrainer(model, TinyArithmetic.Tokenizer, TinyArithmetic.Task, Small("archer"), new RlTrainerOptions(Seed: 4, MicroBatchResponses: 8));
            var metrics = new List<IReadOnlyDictionary<string, double>>();
            for (int s = 0; s < 3; s++) metrics.Add(trainer.Step().Metrics);
            return (metrics, model.DownloadParameters());
        }
        var (m1, p1) = Run();
        var (m2, p2) = Run();
        for (int s = 0; s < m1.Count; s++) Assert.Equal(Comparable(m1[s]), Comparable(m2[s]));
        Assert.Equal(p1, p2);
        Assert.True(m1[2]["optim/steps"] > 0);
    }

    [Fact]
    public void ResumingFromTheStateContinuesExactly()
    {
        using var backend = new CpuBackend();
        var config = Small("archer");   // has a KL term: the reference must be the starting weights on resume too
        using var model = RandomModel(backend);
        var start = model.DownloadParameters();
        using var a = new RlTrainer(model, TinyArithmetic.Tokenizer, TinyArithmetic.Task, config, new RlTrainerOptions(Seed: 6));
        a.Step();
        var state = a.State;
        var (weights, m, v, step, skipped) = (model.DownloadParameters(), a.Optimizer.DownloadM(), a.Optimizer.DownloadV(), a.Optimizer.Step, a.Optimizer.SkippedSteps);
        var expected = a.Step().Metrics;
        var expectedWeights = model.DownloadParameters();

        using var resumedModel = new Gpt2Model(backend, TinyArithmetic.ModelConfig, weights);
        using var b = new RlTrainer(resumedModel, TinyArithmetic.Tokenizer, TinyArithmetic.Task, config, new RlTrainerOptions(Seed: 6), referenceParameters: start);
        b.Optimizer.Restore(m, v, step, skipped);
        b.Restore(state);
        Assert.Equal(1, b.State.Step);
        var actual = b.Step().Metrics;
        Assert.Equal(Comparable(expected), Comparable(actual));
        Assert.Equal(expectedWeights, resumedModel.DownloadParameters());
    }

    [Fact]
    public void ANonFiniteGradientSkipsTheStepAndIsCounted()
    {
        using var backend = new CpuBackend();
        using var model = RandomModel(backend);
        // One mini-batch and one epoch: exactly one optimizer step per training step.
        var config = Small("grpo") with { Filter = GroupFilterMode.None, PpoEpochs = 1, MiniBatchPrompts = 6 };
        using var trainer = new RlTrainer(model, TinyArithmetic.Tokenizer, TinyArithmetic.Task, config, new RlTrainerOptions(Seed: 2));
        bool poison = true;
        trainer.BeforeOptimizerStep = m => { if (poison) backend.Upload(m.Gradients.All.Slice(3, 1), new[] { float.NaN }); };

        var before = model.DownloadParameters();
        var first = trainer.Step().Metrics;
        Assert.Equal(1, first["skipped/steps"]);
        Assert.Equal(1, first["skipped/total"]);
        Assert.Equal(1, trainer.SkippedOptimizerSteps);
        Assert.Equal(before, model.DownloadParameters());   // nothing written into the weights
        Assert.All(model.DownloadParameters(), x => Assert.True(float.IsFinite(x)));

        poison = false;
        var second = trainer.Step().Metrics;
        Assert.Equal(0, second["skipped/steps"]);
        Assert.Equal(1, second["skipped/total"]);
        Assert.NotEqual(before, model.DownloadParameters());
    }

    [Fact]
    public void MetricsHaveTheDocumentedKeysAndSamplesComeEveryNSteps()
    {
        using var backend = new CpuBackend();
        using var model = RandomModel(backend);
        using var trainer = new RlTrainer(model, TinyArithmetic.Tokenizer, TinyArithmetic.Task, Small("archer") with { Filter = GroupFilterMode.None },
            new RlTrainerOptions(Seed: 2, SampleEvery: 2, SamplesPerStep: 3));
        var r0 = trainer.Step();
        var r1 = trainer.Step();
        foreach (var key in new[] { "reward/mean", "reward/all_correct", "reward/all_wrong", "response_length/mean", "response_length/max",
                     "entropy/all", "entropy/high", "entropy/low", "entropy/high_share", "clip/low/lower", "clip/low/upper", "clip/high/lower",
                     "clip/high/upper", "clip/dual", "kl/low", "kl/high", "loss/policy", "optim/grad_norm", "optim/lr", "text/repetition_ratio",
                     "rollout/logprob_diff_mean", "time/rollout_s", "time/update_s", "perf/rollout_tokens_per_s", "perf/update_tokens_per_s", "skipped/total" })
            Assert.True(r0.Metrics.ContainsKey(key), $"missing metric {key}");
        // About 20% of each response is high-entropy under Archer's per-response quantile (fewer with ties and short responses).
        Assert.InRange(r0.Metrics["entropy/high_share"], 0.05, 0.3);
        Assert.Equal(3, r0.Samples.Count);
        Assert.Empty(r1.Samples);
        Assert.All(r0.Samples, s => Assert.EndsWith("=", s.Prompt));
    }

    [Fact]
    public void ClassifyingOncePerRolloutUsesTheOldPolicyClasses()
    {
        using var backend = new CpuBackend();
        using var model = RandomModel(backend);
        var config = Small("archer") with { Filter = GroupFilterMode.None, ReclassifyEveryPass = false };
        using var trainer = new RlTrainer(model, TinyArithmetic.Tokenizer, TinyArithmetic.Task, config, new RlTrainerOptions(Seed: 2));
        var m = trainer.Step().Metrics;
        // entropy/high_share classifies the old-policy entropies per response at the same ρ; with classes fixed per
        // rollout every update pass sees exactly those classes, so the loss's share is the same number.
        Assert.Equal(m["entropy/high_share"], m["loss/high_entropy_share"], 12);
        Assert.True(m["entropy/high_share"] > 0);
    }
}
