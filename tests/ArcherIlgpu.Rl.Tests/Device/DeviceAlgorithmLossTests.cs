using ArcherIlgpu.Kernels;
using ArcherIlgpu.Rl.Algorithms;

namespace ArcherIlgpu.Rl.Tests.Device;

[Collection(DeviceCollection.Name)]
public class DeviceAlgorithmLossTests
{
    public static IEnumerable<object[]> Presets()
    {
        foreach (var be in new[] { "cpu", "ilgpu-cpu" })
        {
            foreach (var name in new[] { "grpo", "dapo", "entropy-mask", "archer" }) yield return [be, name, LoptiPass.All];
            foreach (var pass in Enum.GetValues<LoptiPass>()) yield return [be, "ar-lopti", pass];
        }
    }

    [SkippableTheory, MemberData(nameof(Presets))]
    public void GivesTheSameGradientAndStatisticsAsTheHostAlgorithmLoss(string backend, string preset, LoptiPass pass)
    {
        var be = TestBackends.Get(backend);
        var config = AlgorithmRegistry.Get(preset);
        const int R = 6, T = 9;
        var c = LossCase.Make(101, R, T);
        var rng = new Random(5);
        var entropy = new float[R * T];
        for (int n = 0; n < entropy.Length; n++) entropy[n] = (float)(3 * rng.NextDouble());
        // Old log-probs on both sides of ln 0.5 so both AR-Lopti passes have tokens; NaN padding replaced
        // by 0 on the host path (AlgorithmLoss reweights padding to 0 but still reads it).
        var host = new AlgorithmLoss(config);
        var dHost = new float[R * T];
        var expected = host.Compute(new AlgorithmLossInputs
        {
            Rows = R, T = T, LogProbs = c.LogP, OldLogProbs = c.Old, RefLogProbs = c.Ref, Entropies = entropy,
            Advantages = c.Adv, Mask = c.Mask,
        }, dHost, sequenceDivisor: 8, pass: pass);

        using var device = new DeviceAlgorithmLoss(be, config);
        var d = be.Upload<float>(Enumerable.Repeat(5f, R * T).ToArray());
        device.Compute(new DeviceAlgorithmLossInputs
        {
            Rows = R, T = T, LogProbs = be.Upload<float>(c.LogP), OldLogProbs = be.Upload<float>(c.Old),
            RefLogProbs = be.Upload<float>(c.Ref), Entropies = be.Upload<float>(entropy),
            Advantages = be.Upload<float>(c.Adv), Mask = be.Upload<float>(c.Mask),
        }, d, sequenceDivisor: 8, pass: pass);
        var got = device.ReadResult();   // float32 statistics: the tolerances below are float32's

        // The same float32 per-token math (PolicyMath) on both sides; the row sums differ: host float64 token by
        // token, cpu backend float64 row sums times scales, kernels float32 row sums (~1e-7 relative over ≤ 9
        // tokens). Then one float32 rounding of each gradient: 2e-6 relative, 1e-8 absolute near 0.
        Close.All(Array.ConvertAll(dHost, x => (double)x), be.ToArray(d), 1e-8, 2e-6, $"{backend} {preset} {pass} dLogProbs");
        SameStatistics(expected, got, 2e-6);
        if (config.Classification != EntropyClassification.None)
            Assert.Equal(host.LastClasses.ToArray().Select(x => (int)x), be.ToArray(device.LastClasses));
    }

    /// <summary>
    /// A data-parallel rank divides DAPO's token-mean loss by the mini-batch's valid tokens over all ranks: given N', the
    /// gradient is Σ m·x / N' instead of Σ m·x / N, i.e. this batch's own token mean scaled by N / N' (here 1/3), the
    /// same up to float32 rounding of the normaliser and of each gradient.
    /// </summary>
    [SkippableTheory, InlineData("cpu"), InlineData("ilgpu-cpu")]
    public void A_given_token_count_divides_the_token_mean_loss(string backend)
    {
        var be = TestBackends.Get(backend);
        var config = AlgorithmRegistry.Get("dapo");
        Assert.Equal(LossAggregation.TokenMean, config.Aggregation);
        const int R = 6, T = 9;
        var c = LossCase.Make(101, R, T);
        double tokens = c.Mask.Sum(m => (double)m);
        using var device = new DeviceAlgorithmLoss(be, config);
        var x = new DeviceAlgorithmLossInputs
        {
            Rows = R, T = T, LogProbs = be.Upload<float>(c.LogP), OldLogProbs = be.Upload<float>(c.Old),
            RefLogProbs = be.Upload<float>(c.Ref), Advantages = be.Upload<float>(c.Adv), Mask = be.Upload<float>(c.Mask),
        };
        var own = be.Upload<float>(new float[R * T]);
        device.Compute(x, own, sequenceDivisor: 8);
        double ownLoss = device.ReadResult().Loss;
        var given = be.Upload<float>(new float[R * T]);
        device.Compute(x, given, sequenceDivisor: 8, tokenMeanDivisor: 3 * tokens);
        double givenLoss = device.ReadResult().Loss;

        Close.All(be.ToArray(own).Select(v => v / 3.0).ToArray(), be.ToArray(given), 1e-9, 1e-6, $"{backend} dLogProbs");
        Close.One(ownLoss / 3, givenLoss, 1e-8, 1e-6, "loss");
        Assert.Contains(be.ToArray(own), v => Math.Abs(v) > 1e-4);   // a gradient to compare, not zeros
    }

    public static IEnumerable<object[]> MicroBatchPresets()
    {
        foreach (var be in new[] { "cpu", "ilgpu-cpu" })
            foreach (var name in new[] { "dapo", "archer", "grpo" }) yield return [be, name];
    }

    /// <summary>
    /// Issue 14 (one forward per micro-batch): a mini-batch's loss computed micro-batch by micro-batch, each call given
    /// the mini-batch's mask total and adding its statistics to the previous ones, equals the host reference over the
    /// whole mini-batch. dapo: token mean over all rows (needs the total); archer: per-response classes from each row's
    /// own entropies and per-class KL means (row-local); grpo: sequence mean. Rows 0–3 and 4–5: two unequal micro-batches.
    /// </summary>
    [SkippableTheory, MemberData(nameof(MicroBatchPresets))]
    public void MicroBatchesGivenTheMiniBatchMaskTotalGiveTheMiniBatchLoss(string backend, string preset)
    {
        var be = TestBackends.Get(backend);
        var config = AlgorithmRegistry.Get(preset);
        const int R = 6, T = 9, Split = 4;
        var c = LossCase.Make(101, R, T);
        var rng = new Random(5);
        var entropy = new float[R * T];
        for (int n = 0; n < entropy.Length; n++) entropy[n] = (float)(3 * rng.NextDouble());
        var dHost = new float[R * T];
        var expected = new AlgorithmLoss(config).Compute(new AlgorithmLossInputs
        {
            Rows = R, T = T, LogProbs = c.LogP, OldLogProbs = c.Old, RefLogProbs = c.Ref, Entropies = entropy,
            Advantages = c.Adv, Mask = c.Mask,
        }, dHost, sequenceDivisor: 8);

        using var device = new DeviceAlgorithmLoss(be, config);
        var x = new DeviceAlgorithmLossInputs
        {
            Rows = R, T = T, LogProbs = be.Upload<float>(c.LogP), OldLogProbs = be.Upload<float>(c.Old),
            RefLogProbs = be.Upload<float>(c.Ref), Entropies = be.Upload<float>(entropy),
            Advantages = be.Upload<float>(c.Adv), Mask = be.Upload<float>(c.Mask),
        };
        var d = be.Upload<float>(Enumerable.Repeat(5f, R * T).ToArray());
        double maskTotal = c.Mask.Sum(m => (double)m);
        device.Compute(x.RowRange(0, Split), d.Slice(0, Split * T), sequenceDivisor: 8, miniBatchMaskTotal: maskTotal);
        device.Compute(x.RowRange(Split, R - Split), d.Slice(Split * T, (R - Split) * T), sequenceDivisor: 8, miniBatchMaskTotal: maskTotal,
            addToStats: true);
        var got = device.ReadResult();

        // Each token's gradient is the one-call gradient (same scales, the mask total being exact), so the tolerances are
        // those of the one-call test above; the statistics add one float32 rounding per micro-batch (2 here): 4e-6 relative.
        Close.All(Array.ConvertAll(dHost, v => (double)v), be.ToArray(d), 1e-8, 2e-6, $"{backend} {preset} dLogProbs");
        SameStatistics(expected, got, 4e-6);
    }

    /// <summary>The float32 statistics against the reference's: each value within 1e-7 + rtol·|expected|, the counts exactly.</summary>
    static void SameStatistics(PolicyLossResult expected, PolicyLossResult got, double rtol)
    {
        Close.One(expected.Loss, got.Loss, 1e-7, rtol, "loss");
        Close.One(expected.PolicyTerm, got.PolicyTerm, 1e-7, rtol, "policy term");
        Close.One(expected.KlTerm, got.KlTerm, 1e-7, rtol, "kl term");
        Close.One(expected.KlLow, got.KlLow, 1e-7, rtol, "kl low");
        Close.One(expected.KlHigh, got.KlHigh, 1e-7, rtol, "kl high");
        Close.One(expected.PpoKl, got.PpoKl, 1e-7, rtol, "ppo kl");
        Assert.Equal(expected.Clips.Tokens, got.Clips.Tokens);
        Assert.Equal(expected.Clips.ClippedHigh, got.Clips.ClippedHigh);
        Assert.Equal(expected.Clips.ClippedLow, got.Clips.ClippedLow);
        Assert.Equal(expected.Clips.DualClipped, got.Clips.DualClipped);
    }
}
