using ArcherIlgpu.Kernels;

namespace ArcherIlgpu.Rl.Losses;

/// <summary>Scalars of the policy loss (per-token quantities are [Rows, T] tensors beside them).</summary>
/// <param name="DualClipC">c of the dual clip for A &lt; 0 (Archer script 10; verl default 3); ≤ 1 or infinity disables it.</param>
/// <param name="LogRatioClamp">ℓ − ℓ_old is clamped to ±this before exp (verl: 20).</param>
/// <param name="Aggregation">How the policy term is aggregated.</param>
/// <param name="KlAggregation">How the KL term is aggregated.</param>
/// <param name="KlEstimator">Which KL estimator.</param>
/// <param name="KlDeltaClamp">k3: δ clamped to ±this (20).</param>
/// <param name="KlValueClamp">k3: the value clamped to ±this (10).</param>
/// <param name="SequenceDivisor">Number of responses to divide by in sequence-mean modes; null: the rows of the batch.
/// Archer divides a partly filled mini-batch by its full size (32).</param>
/// <param name="TokenSumNormalizer">Constant divisor of <see cref="LossAggregation.SeqMeanTokenSum"/> (1; Dr. GRPO uses the max length).</param>
public sealed record PolicyLossSettings(
    double DualClipC = 10.0,
    double LogRatioClamp = 20.0,
    LossAggregation Aggregation = LossAggregation.SeqMeanTokenMean,
    KlAggregation KlAggregation = KlAggregation.PerClassMean,
    KlEstimator KlEstimator = KlEstimator.K3,
    double KlDeltaClamp = 20.0,
    double KlValueClamp = 10.0,
    double? SequenceDivisor = null,
    double TokenSumNormalizer = 1.0);

/// <summary>Counts of clip events, index 0 = low-entropy class, 1 = high-entropy class.</summary>
public sealed class ClipStatistics
{
    /// <summary>Valid tokens per class.</summary>
    public long[] Tokens { get; } = new long[2];
    /// <summary>The clipped branch binds with A &gt; 0 (ratio above 1 + ε_hi).</summary>
    public long[] ClippedHigh { get; } = new long[2];
    /// <summary>The clipped branch binds with A &lt; 0 (ratio below 1 − ε_lo).</summary>
    public long[] ClippedLow { get; } = new long[2];
    /// <summary>The dual clip binds (A &lt; 0, loss capped at −A·c).</summary>
    public long[] DualClipped { get; } = new long[2];

    public long ValidTokens => Tokens[0] + Tokens[1];
    /// <summary>verl's pg_clipfrac: share of valid tokens where the clipped branch binds, classes pooled.</summary>
    public double ClipFraction => Fraction(ClippedHigh[0] + ClippedHigh[1] + ClippedLow[0] + ClippedLow[1], ValidTokens);
    /// <summary>verl's pg_clipfrac_lower: share of valid tokens where the dual clip binds.</summary>
    public double DualClipFraction => Fraction(DualClipped[0] + DualClipped[1], ValidTokens);
    /// <summary>Share of the class's valid tokens clipped on one side; cls 0 low, 1 high.</summary>
    public double ClipFractionHigh(int cls) => Fraction(ClippedHigh[cls], Tokens[cls]);
    public double ClipFractionLow(int cls) => Fraction(ClippedLow[cls], Tokens[cls]);
    public double HighEntropyShare => Fraction(Tokens[1], ValidTokens);

    static double Fraction(long a, long b) => b == 0 ? 0 : (double)a / b;
}

/// <summary>The value of the loss and its parts, all already aggregated.</summary>
public sealed record PolicyLossResult(
    double Loss,
    double PolicyTerm,
    double KlTerm,
    double KlLow,
    double KlHigh,
    double PpoKl,
    ClipStatistics Clips)
{
    /// <summary>KL (unweighted) = KlLow + KlHigh under <see cref="KlAggregation.PerClassMean"/>, else the aggregated KL.</summary>
    public double Kl => KlLow + KlHigh;

    /// <summary>
    /// Metrics under ArcherCodeR's names (archer-spec.md §7) plus the per-class ones it does not log:
    /// actor/pg_loss, pg_clipfrac, pg_clipfrac_lower (dual clip), ppo_kl, kl_loss, low_entropy_kl_loss,
    /// high_entropy_kl_loss, loss, high_entropy_share, and clipfrac_{low,high}_entropy_{lower,upper}.
    /// </summary>
    public IReadOnlyDictionary<string, double> ToMetrics(string prefix = "actor/") => new Dictionary<string, double>
    {
        [prefix + "loss"] = Loss,
        [prefix + "pg_loss"] = PolicyTerm,
        [prefix + "pg_clipfrac"] = Clips.ClipFraction,
        [prefix + "pg_clipfrac_lower"] = Clips.DualClipFraction,
        [prefix + "ppo_kl"] = PpoKl,
        [prefix + "kl_loss"] = Kl,
        [prefix + "low_entropy_kl_loss"] = KlLow,
        [prefix + "high_entropy_kl_loss"] = KlHigh,
        [prefix + "high_entropy_share"] = Clips.HighEntropyShare,
        [prefix + "clipfrac_low_entropy_lower"] = Clips.ClipFractionLow(0),
        [prefix + "clipfrac_low_entropy_upper"] = Clips.ClipFractionHigh(0),
        [prefix + "clipfrac_high_entropy_lower"] = Clips.ClipFractionLow(1),
        [prefix + "clipfrac_high_entropy_upper"] = Clips.ClipFractionHigh(1),
    };
}

/// <summary>Per-class loss parameters (tokens of class None take the high class's, as in Archer's code).</summary>
/// <param name="ClipLow">ε_lo.</param> <param name="ClipHigh">ε_hi.</param>
/// <param name="KlCoef">β.</param> <param name="PolicyWeight">Multiplier of the policy term (0 masks it).</param>
public readonly record struct ClassParameters(float ClipLow, float ClipHigh, float KlCoef, float PolicyWeight = 1f);
