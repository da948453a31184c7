using ArcherIlgpu.Model.Gpt2;
using ArcherIlgpu.Rl.Algorithms;
using ArcherIlgpu.Rl.Tasks;
using ArcherIlgpu.Rl.Training;
using ArcherIlgpu.Rl.Tests.Device;

namespace ArcherIlgpu.Rl.Tests.Training;

/// <summary>
/// Issue 14, "no second forward when micro-batches are smaller than the mini-batch". One training step of 4 prompts × 4
/// samples, mini-batches of 2 prompts (8 rows), one PPO epoch, so 2 optimizer steps; micro-batches of 3 rows (3, 3, 2).
/// </summary>
[Collection(DeviceCollection.Name)]
public class MicroBatchForwardTests
{
    const int Micro = 3;

    /// <summary>Every prompt is right iff the completion starts with a character at an even place of the alphabet (about half of
    /// a random model's samples), so every group has advantages and the gradient is not just the KL term's rounding noise.</summary>
    sealed class HalfRightTask : ITask
    {
        public string Name => "half-right";
        public long? Count => null;
        public TaskExample Generate(long seed, long index) => new("c=", "0");
        public double Reward(TaskExample example, string completion) =>
            completion.Length > 0 && TinyArithmetic.Tokenizer.Alphabet.IndexOf(completion[0]) % 2 == 0 ? 1.0 : 0.0;
    }

    static AlgorithmConfig Config(string algorithm) =>
        TinyArithmetic.Scaled(algorithm, groupSize: 4, prompts: 4, lr: 1e-3) with { Filter = GroupFilterMode.None, PpoEpochs = 1, MiniBatchPrompts = 2 };

    /// <summary>
    /// Policy forwards of one step, counted by the trainer: the old log-probs take one per micro-batch (2 mini-batches ×
    /// 3 micro-batches = 6), and so does the update where the classes do not need the whole mini-batch's entropies
    /// (6 more: 12); the entropy mask reclassified per mini-batch (one quantile over all its rows) runs each micro-batch
    /// forward twice in the update (12 more: 18). Forcing the two-pass path for every algorithm makes the first cases 18.
    /// </summary>
    [Theory]
    [InlineData("archer", true, 12)]        // per-response quantile, reclassified per mini-batch: row-local
    [InlineData("archer", false, 12)]       // classes fixed once per rollout
    [InlineData("grpo", true, 12)]          // no classes
    [InlineData("dapo", true, 12)]          // no classes, token mean over the mini-batch
    [InlineData("entropy-mask", false, 12)] // per-batch quantile, but fixed once per rollout
    [InlineData("entropy-mask", true, 18)]  // per-batch quantile over the mini-batch's current entropies: two passes
    public void MicroBatchesRunOneForwardEachUnlessTheClassesNeedTheWholeMiniBatch(string algorithm, bool reclassify, int forwards)
    {
        var backend = TestBackends.Get("cpu");
        using var model = new Gpt2Model(backend, TinyArithmetic.ModelConfig, 5);
        var config = Config(algorithm) with { ReclassifyEveryPass = reclassify };
        using var trainer = new RlTrainer(model, TinyArithmetic.Tokenizer, TinyArithmetic.Task, config, new RlTrainerOptions(Seed: 3, MicroBatchResponses: Micro));
        var m = trainer.Step().Metrics;
        Assert.Equal(2, m["optim/steps"]);
        Assert.Equal(forwards, trainer.PolicyForwards);
    }

    /// <summary>
    /// Micro-batches of 3 rows give the weights of a whole mini-batch in one forward (8 rows: 2 prompts, one optimizer step,
    /// responses of at most 4 tokens;
    /// the ilgpu-cpu backend is slow, so one mini-batch). The per-token dLoss/dℓ are the same numbers (the loss gets the
    /// mini-batch's exact mask total and each row's own classes), and a row's forward does not depend on its batch; only
    /// the weight gradient sums its rows' terms in another order (per micro-batch, then added). Tolerances: gradients,
    /// float32 rounding of sums of at most 8·T ≈ 100 terms, bounded here by 1e-5 of the largest |g| (measured ≤ 4e-7 of
    /// it). Weights: AdamW's step lr·m̂/(√v̂ + ε) changes by at most lr·|Δg|/ε for a gradient change Δg (its slope in g
    /// is at most 1/ε, near g = 0) and by at most 2·lr in any case, so |Δw| ≤ lr·min(2, max|Δg|/ε) (measured ~1e-3·lr,
    /// where a gradient entry is near 0).
    /// </summary>
    [SkippableTheory]
    [InlineData("cpu", "archer"), InlineData("cpu", "dapo"), InlineData("ilgpu-cpu", "archer")]
    public void MicroBatchesGiveTheWeightsOfWholeMiniBatches(string backendName, string algorithm)
    {
        var backend = TestBackends.Get(backendName);
        var config = Config(algorithm) with { TrainBatchPrompts = 2, MaxResponseTokens = 4 };
        (float[] Weights, List<float[]> Gradients, IReadOnlyDictionary<string, double> Metrics) Run(int micro)
        {
            using var model = new Gpt2Model(backend, TinyArithmetic.ModelConfig, 5);
            using var trainer = new RlTrainer(model, TinyArithmetic.Tokenizer, new HalfRightTask(), config, new RlTrainerOptions(Seed: 3, MicroBatchResponses: micro));
            var gradients = new List<float[]>();
            trainer.BeforeOptimizerStep = p => gradients.Add(p.DownloadGradients());
            var metrics = trainer.Step().Metrics;
            return (model.DownloadParameters(), gradients, metrics);
        }
        var whole = Run(0);
        var micro = Run(Micro);

        Assert.Single(whole.Gradients);
        Assert.Single(micro.Gradients);
        double maxG = 0, maxDg = 0, maxDw = 0;
        for (int i = 0; i < whole.Gradients[0].Length; i++)
        {
            maxG = Math.Max(maxG, Math.Abs(whole.Gradients[0][i]));
            maxDg = Math.Max(maxDg, Math.Abs(whole.Gradients[0][i] - micro.Gradients[0][i]));
        }
        for (int i = 0; i < whole.Weights.Length; i++) maxDw = Math.Max(maxDw, Math.Abs(whole.Weights[i] - micro.Weights[i]));
        Console.WriteLine($"{backendName} {algorithm}: max|g| {maxG:E3} max|Δg| {maxDg:E3} max|Δw| {maxDw:E3} lr {whole.Metrics["optim/lr"]:E3}");
        Assert.True(maxG > 1e-3, $"largest gradient {maxG:E3}: nothing to compare");
        Assert.True(maxDg <= 1e-5 * maxG, $"gradients differ by {maxDg:E3}, largest {maxG:E3}");
        const double Eps = 1e-8;   // AdamW's ε, as the trainer sets it
        double lr = whole.Metrics["optim/lr"];
        Assert.True(maxDw <= lr * Math.Min(2, maxDg / Eps), $"weights differ by {maxDw:E3}, more than lr·min(2, max|Δg|/ε)");
        foreach (var key in new[] { "batch/valid_tokens", "clip/fraction", "batch/loss_calls", "loss/high_entropy_share" })
            Assert.Equal(whole.Metrics[key], micro.Metrics[key]);
        Close.One(whole.Metrics["loss/total"], micro.Metrics["loss/total"], 1e-7, 1e-5, "loss/total");
    }
}
