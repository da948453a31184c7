using ArcherIlgpu.Kernels;

namespace ArcherIlgpu.Rl.Losses;

/// <summary>How per-token losses of a mini-batch become one number.</summary>
public enum LossAggregation
{
    /// <summary>Σ m·x / Σ m over every token of the batch (DAPO; newer verl's global token mean).</summary>
    TokenMean,
    /// <summary>Mean over responses of each response's token mean (Archer's code: verl 0.4 token-mean with micro-batch 1).</summary>
    SeqMeanTokenMean,
    /// <summary>Mean over responses of each response's token sum, divided by a constant (Dr. GRPO's).</summary>
    SeqMeanTokenSum,
}

/// <summary>How the KL term is normalised.</summary>
public enum KlAggregation
{
    /// <summary>
    /// Like the policy term, with per-token weights β_t inside (the Archer paper's Eq. 5 with
    /// <see cref="LossAggregation.SeqMeanTokenMean"/>; verl's KL loss for GRPO).
    /// </summary>
    SameAsPolicy,
    /// <summary>
    /// Archer's code: per response, β_low·mean of KL over its low tokens + β_high·mean over its high tokens,
    /// then the mean over responses.
    /// </summary>
    PerClassMean,
}

/// <summary>KL estimators on the sampled token against the reference policy, δ = ℓ_ref − ℓ.</summary>
public enum KlEstimator
{
    /// <summary>k1 = ℓ − ℓ_ref (verl "kl").</summary>
    K1,
    /// <summary>k2 = ½(ℓ − ℓ_ref)² (verl "mse").</summary>
    K2,
    /// <summary>k3 = exp(δ) − δ − 1 with δ clamped and the value clamped (verl "low_var_kl"; Archer).</summary>
    K3,
}

/// <summary>Scalars of the policy loss; per-token quantities come in <see cref="PolicyLossBatch"/>.</summary>
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

/// <summary>
/// The per-token inputs of one mini-batch, all [Rows, T] (row-major, response i at i·T).
/// Optional spans may be left empty: <see cref="Classes"/> (every valid token then counts as Low),
/// <see cref="RefLogProbs"/> and <see cref="KlWeight"/> (no KL term), <see cref="PolicyWeight"/> (1 everywhere).
/// </summary>
public readonly ref struct PolicyLossBatch
{
    public int Rows { get; init; }
    public int T { get; init; }
    /// <summary>ℓ: log-probs of the sampled tokens under the current policy.</summary>
    public ReadOnlySpan<float> LogProbs { get; init; }
    /// <summary>ℓ_old: under the policy that generated the rollout (recomputed by the trainer).</summary>
    public ReadOnlySpan<float> OldLogProbs { get; init; }
    /// <summary>ℓ_ref: under the frozen reference model.</summary>
    public ReadOnlySpan<float> RefLogProbs { get; init; }
    /// <summary>A per token (already broadcast, already reweighted if AR is on).</summary>
    public ReadOnlySpan<float> Advantages { get; init; }
    /// <summary>m: token weight; a token counts iff m &gt; 0.</summary>
    public ReadOnlySpan<float> Mask { get; init; }
    /// <summary><see cref="TokenClass"/> per token.</summary>
    public ReadOnlySpan<byte> Classes { get; init; }
    /// <summary>ε_lo per token: the ratio is clipped below at 1 − ε_lo.</summary>
    public ReadOnlySpan<float> ClipLow { get; init; }
    /// <summary>ε_hi per token: the ratio is clipped above at 1 + ε_hi.</summary>
    public ReadOnlySpan<float> ClipHigh { get; init; }
    /// <summary>Multiplier of the policy term per token (0 masks the gradient but keeps the token in the denominator, as 80/20 does).</summary>
    public ReadOnlySpan<float> PolicyWeight { get; init; }
    /// <summary>β per token.</summary>
    public ReadOnlySpan<float> KlWeight { get; init; }
}

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

/// <summary>
/// The clipped-surrogate policy loss with per-token clip ranges, dual clip and a KL penalty against the
/// reference, returning its value and dLoss/dℓ per token. This is the CPU float32 implementation; it
/// defines the semantics the GPU kernel must match:
/// <code>
/// r   = exp(clamp(ℓ − ℓ_old, ±LogRatioClamp))
/// Lc  = max(−A·r, −A·clip(r, 1 − ε_lo, 1 + ε_hi))
/// L   = A &lt; 0 ? min(Lc, −A·c) : Lc
/// k3  = clamp(exp(δ) − δ − 1, ±KlValueClamp),  δ = clamp(ℓ_ref − ℓ, ±KlDeltaClamp)
/// loss = Agg(w_pg·L) + KL term (see <see cref="KlAggregation"/>)
/// </code>
/// Gradients follow autograd's conventions: a clamp passes the gradient inside its closed range and
/// blocks it outside; the max/min picks the branch that is strictly larger/smaller (at ties the
/// branches have equal gradients away from the clip boundaries). Tokens with mask ≤ 0 are skipped:
/// loss 0 and gradient 0, even if their log-probs are not finite.
/// </summary>
public static class PolicyLoss
{
    /// <summary>Per-token outcome of the clipped surrogate.</summary>
    public readonly record struct TokenLoss(float Loss, float Gradient, bool Clipped, bool DualClipped);

    /// <summary>The clipped surrogate of one token and dL/dℓ (the scalar math is <see cref="PolicyMath.ClippedSurrogate"/>, shared with the device kernels).</summary>
    public static TokenLoss Surrogate(float logProb, float oldLogProb, float advantage, float clipLow, float clipHigh,
        float dualClipC, float logRatioClamp)
    {
        var s = PolicyMath.ClippedSurrogate(logProb, oldLogProb, advantage, clipLow, clipHigh, dualClipC, logRatioClamp);
        return new TokenLoss(s.Loss, s.Gradient, s.Clipped, s.DualClipped);
    }

    /// <summary>A KL estimator of one token and its derivative with respect to ℓ (<see cref="PolicyMath.Kl"/>).</summary>
    public static (float Value, float Gradient) Kl(KlEstimator estimator, float logProb, float refLogProb, float deltaClamp, float valueClamp)
    {
        if (!Enum.IsDefined(estimator)) throw new ArgumentOutOfRangeException(nameof(estimator), estimator, "unknown KL estimator");
        var k = PolicyMath.Kl(ToDevice(estimator), logProb, refLogProb, deltaClamp, valueClamp);
        return (k.Value, k.Gradient);
    }

    /// <summary>The device-side names of the same enums (identical order, held by a test).</summary>
    internal static PolicyKlEstimator ToDevice(KlEstimator e) => (PolicyKlEstimator)(int)e;
    internal static PolicyAggregation ToDevice(LossAggregation a) => (PolicyAggregation)(int)a;
    internal static PolicyKlAggregation ToDevice(KlAggregation a) => (PolicyKlAggregation)(int)a;

    /// <summary>
    /// Loss of one mini-batch; <paramref name="dLogProbs"/> [Rows, T] is OVERWRITTEN with dLoss/dℓ (0 on
    /// tokens that do not count).
    /// </summary>
    public static PolicyLossResult Compute(in PolicyLossBatch b, PolicyLossSettings s, Span<float> dLogProbs)
    {
        Validate(b, dLogProbs);
        int rows = b.Rows, T = b.T;
        bool hasKl = !b.KlWeight.IsEmpty && !b.RefLogProbs.IsEmpty;
        bool hasClasses = !b.Classes.IsEmpty;
        bool hasPolicyWeight = !b.PolicyWeight.IsEmpty;
        double divisor = s.SequenceDivisor ?? rows;
        if (!(divisor > 0)) throw new ArgumentOutOfRangeException(nameof(s), divisor, "sequence divisor must be > 0");
        float c = (float)s.DualClipC, clamp = (float)s.LogRatioClamp;
        float klDeltaClamp = (float)s.KlDeltaClamp, klValueClamp = (float)s.KlValueClamp;

        double totalMask = 0, ppoKlSum = 0;
        for (int n = 0; n < b.Mask.Length; n++) if (b.Mask[n] > 0) { totalMask += b.Mask[n]; ppoKlSum += b.Mask[n] * (b.OldLogProbs[n] - b.LogProbs[n]); }

        var clips = new ClipStatistics();
        double policyTerm = 0, klTerm = 0, klLow = 0, klHigh = 0, klSame = 0;
        for (int i = 0; i < rows; i++)
        {
            int start = i * T;
            double rowMask = 0, rowLowMask = 0, rowHighMask = 0;
            for (int t = start; t < start + T; t++)
            {
                float m = b.Mask[t];
                if (!(m > 0)) continue;
                rowMask += m;
                if (ClassIndex(b, t, hasClasses) == 1) rowHighMask += m; else rowLowMask += m;
            }
            // Scale of one token's (m·x) in the aggregate: the derivative of the aggregation.
            if (!Enum.IsDefined(s.Aggregation)) throw new ArgumentOutOfRangeException(nameof(s), s.Aggregation, "unknown aggregation");
            double pgScale = PolicyMath.PolicyScale(ToDevice(s.Aggregation), rowMask, totalMask, divisor, s.TokenSumNormalizer);
            double lowKlScale = PolicyMath.ClassKlScale(rowLowMask, divisor), highKlScale = PolicyMath.ClassKlScale(rowHighMask, divisor);

            for (int t = start; t < start + T; t++)
            {
                float m = b.Mask[t];
                if (!(m > 0)) { dLogProbs[t] = 0f; continue; }
                int cls = ClassIndex(b, t, hasClasses);
                var tl = Surrogate(b.LogProbs[t], b.OldLogProbs[t], b.Advantages[t], b.ClipLow[t], b.ClipHigh[t], c, clamp);
                clips.Tokens[cls]++;
                if (tl.Clipped) { if (b.Advantages[t] > 0) clips.ClippedHigh[cls]++; else if (b.Advantages[t] < 0) clips.ClippedLow[cls]++; }
                if (tl.DualClipped) clips.DualClipped[cls]++;

                float w = hasPolicyWeight ? b.PolicyWeight[t] : 1f;
                double pgCoef = m * pgScale;
                policyTerm += pgCoef * w * tl.Loss;

                float kl = 0f, dkl = 0f, beta = 0f;
                double klCoef = 0;
                if (hasKl)
                {
                    (kl, dkl) = Kl(s.KlEstimator, b.LogProbs[t], b.RefLogProbs[t], klDeltaClamp, klValueClamp);
                    beta = b.KlWeight[t];
                    klCoef = s.KlAggregation == KlAggregation.PerClassMean
                        ? m * (cls == 1 ? highKlScale : lowKlScale)
                        : pgCoef;
                    klTerm += klCoef * beta * kl;
                    if (cls == 1) klHigh += klCoef * kl; else klLow += klCoef * kl;
                    klSame += pgCoef * kl;
                }
                dLogProbs[t] = PolicyMath.TokenGradient(pgCoef, w, tl.Gradient, hasKl, klCoef, beta, dkl);
            }
        }
        if (s.KlAggregation == KlAggregation.SameAsPolicy) { klLow = klSame; klHigh = 0; }
        double ppoKl = totalMask > 0 ? ppoKlSum / totalMask : 0;
        return new PolicyLossResult(policyTerm + klTerm, policyTerm, klTerm, klLow, klHigh, ppoKl, clips);
    }

    static int ClassIndex(in PolicyLossBatch b, int t, bool hasClasses) => hasClasses && b.Classes[t] == TokenClass.High ? 1 : 0;

    static void Validate(in PolicyLossBatch b, Span<float> dLogProbs)
    {
        int n = b.Rows * b.T;
        if (b.Rows < 0 || b.T < 0) throw new ArgumentException($"rows ({b.Rows}) and T ({b.T}) must be >= 0");
        Need(b.LogProbs.Length, n, "LogProbs");
        Need(b.OldLogProbs.Length, n, "OldLogProbs");
        Need(b.Advantages.Length, n, "Advantages");
        Need(b.Mask.Length, n, "Mask");
        Need(b.ClipLow.Length, n, "ClipLow");
        Need(b.ClipHigh.Length, n, "ClipHigh");
        Need(dLogProbs.Length, n, "dLogProbs");
        if (!b.Classes.IsEmpty) Need(b.Classes.Length, n, "Classes");
        if (!b.PolicyWeight.IsEmpty) Need(b.PolicyWeight.Length, n, "PolicyWeight");
        if (!b.KlWeight.IsEmpty) Need(b.KlWeight.Length, n, "KlWeight");
        if (!b.RefLogProbs.IsEmpty) Need(b.RefLogProbs.Length, n, "RefLogProbs");
        if (!b.KlWeight.IsEmpty && b.RefLogProbs.IsEmpty) throw new ArgumentException("KlWeight is given but RefLogProbs is empty");
    }

    static void Need(int actual, int expected, string name)
    {
        if (actual != expected) throw new ArgumentException($"{name} has length {actual}, expected rows × T = {expected}");
    }
}

/// <summary>Per-class loss parameters, expanded to per-token spans by <see cref="TokenParameters.FromClasses"/>.</summary>
/// <param name="ClipLow">ε_lo.</param> <param name="ClipHigh">ε_hi.</param>
/// <param name="KlCoef">β.</param> <param name="PolicyWeight">Multiplier of the policy term (0 masks it).</param>
public readonly record struct ClassParameters(float ClipLow, float ClipHigh, float KlCoef, float PolicyWeight = 1f);

public static class TokenParameters
{
    /// <summary>
    /// Fills per-token ε_lo, ε_hi, policy weight and β from each token's class. Tokens in neither class
    /// (padding) get the high-entropy parameters, as in Archer's code; they are masked out anyway.
    /// </summary>
    public static void FromClasses(ReadOnlySpan<byte> classes, ClassParameters low, ClassParameters high,
        Span<float> clipLow, Span<float> clipHigh, Span<float> policyWeight, Span<float> klWeight)
    {
        int n = classes.Length;
        if (clipLow.Length != n || clipHigh.Length != n || policyWeight.Length != n || klWeight.Length != n)
            throw new ArgumentException($"every output must have the length of classes ({n})");
        for (int t = 0; t < n; t++)
        {
            var p = classes[t] == TokenClass.Low ? low : high;
            clipLow[t] = p.ClipLow; clipHigh[t] = p.ClipHigh; policyWeight[t] = p.PolicyWeight; klWeight[t] = p.KlCoef;
        }
    }
}
