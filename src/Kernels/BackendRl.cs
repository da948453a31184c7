namespace ArcherIlgpu.Kernels;

// ------------------------------------------------------- RL: token classes and the policy loss (RlLoss.cs)
//
// Token classification and the policy loss of an RL update, on the device, so that it goes from log-probs
// and entropies to dLogProbs without a host round trip (the scalar math is PolicyMath's; the float64 host
// references they are tested against live in tests/ArcherIlgpu.Rl.Tests/Reference). Classes are ints with the values
// of PolicyMath.ClassNone/ClassLow/ClassHigh (0, 1, 2). A token is valid iff mask > 0.
public abstract partial class Backend
{
    /// <summary>
    /// Archer's per-response classification. Per row i, over its valid tokens sorted ascending
    /// h(0) ≤ … ≤ h(n−1): p = ρ(n−1), τ_i = numpy-linear interpolation between h(⌊p⌋) and h(⌈p⌉)
    /// computed in float64 and rounded to float32 (<see cref="PolicyMath.QuantileLerp"/>). A valid token is
    /// High iff H &gt; τ_i (<paramref name="strictGreater"/>; else H ≥ τ_i), otherwise Low; invalid tokens
    /// are None. A row without a valid token gets τ_i = NaN and only None. Entropies of valid tokens must
    /// not be NaN.
    /// </summary>
    /// <param name="entropies">[R, T]</param> <param name="mask">[R, T]</param>
    /// <param name="rho">quantile in (0, 1), float64 as the host classifier takes it (p = ρ(n−1) must round alike)</param>
    /// <param name="thresholds">[R] out: τ_i</param> <param name="classes">[R, T] out, OVERWRITTEN</param>
    public void ClassifyTokensPerResponse(Buf<float> entropies, Buf<float> mask, int R, int T, double rho,
        bool strictGreater, Buf<float> thresholds, Buf<int> classes)
    {
        CheckClassifyArguments(entropies, mask, (long)R * T, rho, classes, thresholds, R);
        ClassifyTokensPerResponseCore(entropies, mask, R, T, rho, strictGreater, thresholds, classes);
    }

    protected abstract void ClassifyTokensPerResponseCore(Buf<float> entropies, Buf<float> mask, int R, int T, double rho,
        bool strictGreater, Buf<float> thresholds, Buf<int> classes);

    /// <summary>
    /// The 80/20 baseline: one threshold τ over every valid token of the batch (same quantile as
    /// <see cref="ClassifyTokensPerResponse"/>); High iff H ≥ τ by default (<paramref name="strictGreater"/>
    /// false), else Low; invalid tokens None. No valid token: τ = NaN, every token None.
    /// </summary>
    /// <param name="entropies">[N]</param> <param name="mask">[N]</param>
    /// <param name="threshold">[1] out: τ</param> <param name="classes">[N] out, OVERWRITTEN</param>
    public void ClassifyTokensBatch(Buf<float> entropies, Buf<float> mask, int N, double rho,
        bool strictGreater, Buf<float> threshold, Buf<int> classes)
    {
        CheckClassifyArguments(entropies, mask, N, rho, classes, threshold, 1);
        ClassifyTokensBatchCore(entropies, mask, N, rho, strictGreater, threshold, classes);
    }

    protected abstract void ClassifyTokensBatchCore(Buf<float> entropies, Buf<float> mask, int N, double rho,
        bool strictGreater, Buf<float> threshold, Buf<int> classes);

    static void CheckClassifyArguments(Buf<float> entropies, Buf<float> mask, long n, double rho, Buf<int> classes,
        Buf<float> thresholds, long thresholdCount)
    {
        if (thresholds.Length != thresholdCount)
            throw new ArgumentException($"thresholds has length {thresholds.Length}, expected {thresholdCount}");
        if (!(rho > 0 && rho < 1)) throw new ArgumentOutOfRangeException(nameof(rho), rho, "quantile ρ must be in (0, 1)");
        if (entropies.Length != n || mask.Length != n || classes.Length != n)
            throw new ArgumentException($"entropies ({entropies.Length}), mask ({mask.Length}) and classes ({classes.Length}) must all have length {n}");
    }

    /// <summary>
    /// The clipped-surrogate policy loss with per-class clip ranges, dual clip and a KL penalty, forward and
    /// backward in one call (ArcherIlgpu.Rl's PolicyLoss.Compute with the per-token parameters expanded from
    /// classes, plus AlgorithmLoss's AR-Lopti advantage handling; see <see cref="PolicyLossParameters"/>):
    /// <code>
    /// A'  = AR/Lopti(A)                           (PolicyMath.EffectiveAdvantage)
    /// r   = exp(clamp(ℓ − ℓ_old, ±LogRatioClamp))
    /// L   = A' &lt; 0 ? min(Lc, −A'·c) : Lc,  Lc = max(−A'·r, −A'·clip(r, 1 − ε_lo, 1 + ε_hi))
    /// loss = Agg(w·L) + KL term (k1/k2/k3 against ℓ_ref, aggregated per <see cref="PolicyKlAggregation"/>)
    /// </code>
    /// Invalid tokens contribute nothing and get gradient 0, whatever their values.
    /// </summary>
    /// <param name="logProbs">[R, T] ℓ under the current policy</param>
    /// <param name="oldLogProbs">[R, T] ℓ_old</param>
    /// <param name="refLogProbs">[R, T] ℓ_ref, or default for no KL term</param>
    /// <param name="advantages">[R, T] A per token (before AR reweighting)</param>
    /// <param name="mask">[R, T] token weight m</param>
    /// <param name="classes">[R, T] token classes, or default: every valid token Low</param>
    /// <param name="dLogProbs">[R, T] out, OVERWRITTEN: dLoss/dℓ</param>
    /// <param name="stats">[<see cref="PolicyLossStats.Count"/>] out, OVERWRITTEN: the loss, its terms and counts (see <see cref="PolicyLossStats"/>). Float32 because
    /// CUDA contexts run with MathMode.Fast32BitOnly, which turns every float64 load and store in a kernel into float32;
    /// counts are exact up to 2^24 tokens.</param>
    public void PolicyLossForwardBackward(Buf<float> logProbs, Buf<float> oldLogProbs, Buf<float> refLogProbs,
        Buf<float> advantages, Buf<float> mask, Buf<int> classes, int R, int T, in PolicyLossParameters parameters,
        Buf<float> dLogProbs, Buf<float> stats)
    {
        CheckPolicyLossArguments(logProbs, oldLogProbs, refLogProbs, advantages, mask, classes, R, T, parameters, dLogProbs, stats);
        PolicyLossForwardBackwardCore(logProbs, oldLogProbs, refLogProbs, advantages, mask, classes, R, T, parameters, dLogProbs, stats);
    }

    protected abstract void PolicyLossForwardBackwardCore(Buf<float> logProbs, Buf<float> oldLogProbs, Buf<float> refLogProbs,
        Buf<float> advantages, Buf<float> mask, Buf<int> classes, int R, int T, in PolicyLossParameters parameters,
        Buf<float> dLogProbs, Buf<float> stats);

    static void CheckPolicyLossArguments(Buf<float> logProbs, Buf<float> oldLogProbs, Buf<float> refLogProbs,
        Buf<float> advantages, Buf<float> mask, Buf<int> classes, int R, int T, in PolicyLossParameters parameters,
        Buf<float> dLogProbs, Buf<float> stats)
    {
        if (R < 0 || T < 0) throw new ArgumentException($"R ({R}) and T ({T}) must be >= 0");
        long n = (long)R * T;
        static void Need(long actual, long expected, string name)
        {
            if (actual != expected) throw new ArgumentException($"{name} has length {actual}, expected {expected}");
        }
        Need(logProbs.Length, n, nameof(logProbs));
        Need(oldLogProbs.Length, n, nameof(oldLogProbs));
        Need(advantages.Length, n, nameof(advantages));
        Need(mask.Length, n, nameof(mask));
        Need(dLogProbs.Length, n, nameof(dLogProbs));
        if (!refLogProbs.IsEmpty) Need(refLogProbs.Length, n, nameof(refLogProbs));
        if (!classes.IsEmpty) Need(classes.Length, n, nameof(classes));
        Need(stats.Length, PolicyLossStats.Count, nameof(stats));
        parameters.Validate();
    }

    /// <summary>
    /// Group-normalised advantages, spread over each response's tokens: rows are laid out group after group
    /// (row i is response i mod G of prompt ⌊i / G⌋); per group, Σ r and Σ (r − mean)² in float64 (float32
    /// under CUDA's Fast32BitOnly), then <see cref="PolicyMath.GroupAdvantage"/> per row, rounded to float32
    /// and written to each token of the row with mask &gt; 0 (0 elsewhere).
    /// </summary>
    /// <param name="rewards">[R] one reward per response</param> <param name="mask">[R, T]</param>
    /// <param name="groupSize">G ≥ 2, dividing R</param> <param name="epsilon">GRPO's ε added to the std (≥ 0)</param>
    /// <param name="advantages">[R, T] out, OVERWRITTEN</param>
    public void GroupAdvantages(Buf<float> rewards, Buf<float> mask, int R, int T, int groupSize, PolicyAdvantageEstimator estimator,
        double epsilon, Buf<float> advantages)
    {
        if (R < 0 || T < 0) throw new ArgumentException($"GroupAdvantages needs R >= 0 and T >= 0, got {R} and {T}");
        if (groupSize < 2) throw new ArgumentOutOfRangeException(nameof(groupSize), groupSize, "group size must be >= 2 (a group of one has no baseline)");
        if (R % groupSize != 0) throw new ArgumentException($"{R} rewards are not a whole number of groups of {groupSize}");
        if ((uint)estimator > (uint)PolicyAdvantageEstimator.Rloo) throw new ArgumentOutOfRangeException(nameof(estimator), estimator, "unknown advantage estimator");
        if (!(epsilon >= 0)) throw new ArgumentOutOfRangeException(nameof(epsilon), epsilon, "advantage epsilon must be >= 0");
        long n = (long)R * T;
        if (n == 0) return;
        BufChecks.RequireElements(rewards, R); BufChecks.RequireElements(mask, n); BufChecks.RequireElements(advantages, n);
        GroupAdvantagesCore(rewards, mask, R, T, groupSize, estimator, epsilon, advantages);
    }

    /// <summary>The backend's <see cref="GroupAdvantages"/>, arguments already checked.</summary>
    protected abstract void GroupAdvantagesCore(Buf<float> rewards, Buf<float> mask, int R, int T, int groupSize,
        PolicyAdvantageEstimator estimator, double epsilon, Buf<float> advantages);
}
