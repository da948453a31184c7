using ArcherIlgpu.Kernels;

namespace ArcherIlgpu.Rl.Losses;

// The host policy loss, kept as the tests' reference of Backend.PolicyLossForwardBackward (the trainer runs the device loss).

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
        var k = PolicyMath.Kl(estimator, logProb, refLogProb, deltaClamp, valueClamp);
        return (k.Value, k.Gradient);
    }


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
            double pgScale = PolicyMath.PolicyScale(s.Aggregation, rowMask, totalMask, divisor, s.TokenSumNormalizer);
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
