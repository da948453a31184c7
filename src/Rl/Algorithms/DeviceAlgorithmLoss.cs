using ArcherIlgpu.Kernels;
using ArcherIlgpu.Rl.Losses;

namespace ArcherIlgpu.Rl.Algorithms;

/// <summary>Which tokens an AR-Lopti update pass trains on.</summary>
public enum LoptiPass
{
    /// <summary>Every token (every algorithm except AR-Lopti's isolation).</summary>
    All,
    /// <summary>Pass 1: tokens with π_old &lt; η.</summary>
    LowProbability,
    /// <summary>Pass 2: the other tokens.</summary>
    HighProbability,
}

/// <summary>
/// The per-token inputs of one mini-batch on a device, all [Rows, T] and owned by the caller. <see cref="RefLogProbs"/> may be empty when the algorithm has
/// no KL term, <see cref="Entropies"/> when it does not classify. <see cref="Classes"/>, if given
/// (<see cref="PolicyMath.ClassNone"/>/Low/High as ints), replaces the classification (classify once per rollout).
/// </summary>
public readonly struct DeviceAlgorithmLossInputs
{
    public int Rows { get; init; }
    public int T { get; init; }
    public Buf<float> LogProbs { get; init; }
    public Buf<float> OldLogProbs { get; init; }
    public Buf<float> RefLogProbs { get; init; }
    public Buf<float> Entropies { get; init; }
    /// <summary>Advantage per token, before AR reweighting.</summary>
    public Buf<float> Advantages { get; init; }
    public Buf<float> Mask { get; init; }
    public Buf<int> Classes { get; init; }

    /// <summary>Rows [<paramref name="start"/>, start + <paramref name="count"/>) of every given input (a micro-batch of a mini-batch).</summary>
    public DeviceAlgorithmLossInputs RowRange(int start, int count)
    {
        long from = (long)start * T, n = (long)count * T;
        Buf<TV> Part<TV>(Buf<TV> b) where TV : unmanaged => b.IsEmpty ? default : b.Slice(from, n);
        return new()
        {
            Rows = count, T = T, LogProbs = Part(LogProbs), OldLogProbs = Part(OldLogProbs), RefLogProbs = Part(RefLogProbs),
            Entropies = Part(Entropies), Advantages = Part(Advantages), Mask = Part(Mask), Classes = Part(Classes),
        };
    }
}

/// <summary>
/// One algorithm's loss for a mini-batch on a <see cref="Backend"/>: classify tokens by entropy (per response,
/// per batch or not at all), expand the per-class clip ranges, policy weights and KL coefficients, apply AR-Lopti's
/// advantage reweighting and pass restriction when configured, and evaluate the clipped-surrogate loss with its
/// gradient, all as device ops, so an update needs no host round trip. The trainer's only loss path (the host
/// version is a reference in the tests). Calls
/// only enqueue work; <see cref="ReadResult"/> is the one call that waits for the device (do it once per
/// optimizer step, or never; the trainer instead downloads <see cref="Stats"/> together with the gradient norm
/// and converts them with <see cref="ToResult"/>). The per-class parameters and AR-Lopti's reweighting and pass restriction are
/// applied inside <see cref="Backend.PolicyLossForwardBackward"/> with the same float operations as
/// AlgorithmLoss, so both give the same dLogProbs up to summation order. Owns its classes, thresholds and
/// statistics buffers (grown only when a batch is larger than any before). Not thread-safe.
/// </summary>
public sealed class DeviceAlgorithmLoss : IDisposable
{
    readonly Backend backend;
    DeviceBuffer<int>? classes;
    DeviceBuffer<float>? thresholds;
    readonly DeviceBuffer<float> stats;
    DeviceBuffer<float>? partStats;   // a later micro-batch's statistics, added to stats
    readonly float[] hostStats = new float[PolicyLossStats.Count];

    public DeviceAlgorithmLoss(Backend backend, AlgorithmConfig config)
    {
        Config = config.Validate();
        if (config.EntropyCoef != 0)
            throw new NotSupportedException("entropy_coef != 0: an entropy bonus needs the gradient of the logits, which the per-token loss does not produce");
        this.backend = backend;
        stats = backend.Allocate<float>(PolicyLossStats.Count);
    }

    public AlgorithmConfig Config { get; }

    /// <summary>Token classes of the last call, [Rows, T] ints; empty when the algorithm does not classify and none were given.</summary>
    public Buf<int> LastClasses { get; private set; }
    /// <summary>Thresholds of the last call: [Rows] per response, [1] per batch; empty otherwise.</summary>
    public Buf<float> LastThresholds { get; private set; }
    /// <summary>The statistics of the last call, [<see cref="PolicyLossStats.Count"/>] float32 on the device.</summary>
    public Buf<float> Stats => stats.All;

    /// <summary>Whether the KL term is evaluated (and reference log-probs are needed).</summary>
    public bool UsesKl => Config.HasKl;

    /// <summary>
    /// Enqueues the loss; <paramref name="dLogProbs"/> [Rows, T] is OVERWRITTEN with dLoss/dℓ and <see cref="Stats"/>
    /// with the loss and its statistics. <paramref name="sequenceDivisor"/>: responses to divide by in
    /// sequence-mean modes (null: Rows). <paramref name="tokenMeanDivisor"/>: valid tokens to divide by in the token-mean mode
    /// (null: those of this batch; a data-parallel run gives the whole mini-batch's over all ranks).
    /// <para>
    /// A micro-batch of a mini-batch (its rows only, whose classes do not depend on the other rows: given, or per
    /// response) gives <paramref name="miniBatchMaskTotal"/>, the mini-batch's Σ m on this process, so its dLogProbs
    /// are the mini-batch's own; and <paramref name="addToStats"/> for every micro-batch after the first, so that
    /// <see cref="Stats"/> become the mini-batch's (every statistic is a sum over rows once the mask total is fixed).
    /// </para>
    /// </summary>
    public void Compute(in DeviceAlgorithmLossInputs x, Buf<float> dLogProbs, double? sequenceDivisor = null, LoptiPass pass = LoptiPass.All,
        double? tokenMeanDivisor = null, double? miniBatchMaskTotal = null, bool addToStats = false)
    {
        int n = checked(x.Rows * x.T);
        bool useKl = UsesKl;
        if (useKl && x.RefLogProbs.IsEmpty) throw new ArgumentException($"algorithm \"{Config.Name}\" has a KL term but no reference log-probs were given");
        var cls = Classify(x, n);
        var p = Parameters(x.Rows, sequenceDivisor, pass);
        if (tokenMeanDivisor is double tokens && p.Aggregation == LossAggregation.TokenMean)
        {
            // Σ m·x / N as the token-sum mode writes it: (Σ m·x / (N / divisor)) / divisor; the KL's divisor stays the sequence one.
            p.Aggregation = LossAggregation.SeqMeanTokenSum;
            p.TokenSumNormalizer = (float)((tokens + PolicyMath.DenominatorEpsilon) / p.SequenceDivisor);
        }
        if (miniBatchMaskTotal is double total) p.MaskTotal = (float)total;
        var statsOut = addToStats ? (partStats ??= backend.Allocate<float>(PolicyLossStats.Count)).All : stats.All;
        backend.PolicyLossForwardBackward(x.LogProbs, x.OldLogProbs, useKl ? x.RefLogProbs : default, x.Advantages, x.Mask, cls,
            x.Rows, x.T, p, dLogProbs, statsOut);
        if (addToStats) backend.ResidualForward(stats.All, statsOut, PolicyLossStats.Count, stats.All);   // an elementwise add, in place
    }

    /// <summary>Downloads the statistics of the last call (waits for the device).</summary>
    public PolicyLossResult ReadResult()
    {
        backend.Download(stats.All, hostStats);
        return ToResult(hostStats);
    }

    /// <summary>The kernel parameters of this algorithm for a batch of <paramref name="rows"/> responses.</summary>
    public PolicyLossParameters Parameters(int rows, double? sequenceDivisor = null, LoptiPass pass = LoptiPass.All)
    {
        var low = Config.LowParameters; var high = Config.HighParameters;
        var s = Config.ToPolicyLossSettings(sequenceDivisor);
        return new PolicyLossParameters
        {
            LowClipLow = low.ClipLow, LowClipHigh = low.ClipHigh, LowPolicyWeight = low.PolicyWeight, LowKlWeight = low.KlCoef,
            HighClipLow = high.ClipLow, HighClipHigh = high.ClipHigh, HighPolicyWeight = high.PolicyWeight, HighKlWeight = high.KlCoef,
            DualClipC = (float)s.DualClipC, LogRatioClamp = (float)s.LogRatioClamp,
            KlDeltaClamp = (float)s.KlDeltaClamp, KlValueClamp = (float)s.KlValueClamp,
            KlEstimator = s.KlEstimator, Aggregation = s.Aggregation,
            KlAggregation = s.KlAggregation,
            SequenceDivisor = (float)(s.SequenceDivisor ?? rows), TokenSumNormalizer = (float)s.TokenSumNormalizer,
            Reweight = Config.AdvantageReweighting ? 1 : 0, ReweightAlpha = (float)Config.ReweightAlpha,
            Pass = pass switch
            {
                LoptiPass.LowProbability => PolicyTokenPass.LowProbability,
                LoptiPass.HighProbability => PolicyTokenPass.HighProbability,
                _ => PolicyTokenPass.All,
            },
            // The host split compares ℓ_old with the float ln η in the same way.
            LoptiLogEta = MathF.Log((float)Config.LowProbabilityEta),
        };
    }

    /// <summary>A <see cref="PolicyLossResult"/> from a downloaded statistics buffer.</summary>
    public static PolicyLossResult ToResult(ReadOnlySpan<float> s)
    {
        if (s.Length != PolicyLossStats.Count) throw new ArgumentException($"statistics have length {s.Length}, expected {PolicyLossStats.Count}");
        var clips = new ClipStatistics();
        for (int c = 0; c < 2; c++)
        {
            clips.Tokens[c] = (long)s[PolicyLossStats.Tokens + c];
            clips.ClippedHigh[c] = (long)s[PolicyLossStats.ClippedHigh + c];
            clips.ClippedLow[c] = (long)s[PolicyLossStats.ClippedLow + c];
            clips.DualClipped[c] = (long)s[PolicyLossStats.DualClipped + c];
        }
        return new PolicyLossResult(s[PolicyLossStats.Loss], s[PolicyLossStats.PolicyTerm], s[PolicyLossStats.KlTerm],
            s[PolicyLossStats.KlLow], s[PolicyLossStats.KlHigh], s[PolicyLossStats.PpoKl], clips);
    }

    Buf<int> Classify(in DeviceAlgorithmLossInputs x, int n)
    {
        LastThresholds = default;
        if (!x.Classes.IsEmpty)
        {
            if (x.Classes.Length != n) throw new ArgumentException($"Classes has length {x.Classes.Length}, expected rows × T = {n}");
            return LastClasses = x.Classes;
        }
        if (Config.Classification == EntropyClassification.None) return LastClasses = default;   // every valid token Low

        if (x.Entropies.IsEmpty) throw new ArgumentException($"algorithm \"{Config.Name}\" classifies by entropy but no entropies were given");
        if (classes is null || classes.Length < n) { classes?.Dispose(); classes = backend.Allocate<int>(n); }
        var cls = classes.All.Slice(0, n);
        Classify(x.Entropies, x.Mask, x.Rows, x.T, cls);
        return LastClasses = cls;
    }

    /// <summary>
    /// Enqueues this algorithm's entropy classification of [rows, T] tokens into <paramref name="classesOut"/>
    /// (per response or per batch; with <see cref="EntropyClassification.None"/> nothing is written and false
    /// is returned: every valid token counts as Low). Used per mini-batch by <see cref="Compute"/> and once per
    /// rollout by a trainer that classifies from the old policy's entropies.
    /// </summary>
    public bool Classify(Buf<float> entropies, Buf<float> mask, int rows, int T, Buf<int> classesOut)
    {
        if (Config.Classification == EntropyClassification.None) { LastThresholds = default; return false; }
        int thresholdCount = Config.Classification == EntropyClassification.PerResponse ? rows : 1;
        if (thresholds is null || thresholds.Length < thresholdCount) { thresholds?.Dispose(); thresholds = backend.Allocate<float>(thresholdCount); }
        var tau = thresholds.All.Slice(0, thresholdCount);
        bool strict = Config.TieRule == HighEntropyRule.Greater;
        if (Config.Classification == EntropyClassification.PerResponse)
            backend.ClassifyTokensPerResponse(entropies, mask, rows, T, Config.EntropyQuantile, strict, tau, classesOut);
        else
            backend.ClassifyTokensBatch(entropies, mask, checked(rows * T), Config.EntropyQuantile, strict, tau, classesOut);
        LastThresholds = tau;
        return true;
    }

    public void Dispose()
    {
        classes?.Dispose();
        thresholds?.Dispose();
        stats.Dispose();
        partStats?.Dispose();
    }
}
