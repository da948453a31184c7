namespace ArcherIlgpu.Kernels;

/// <summary>How per-token policy losses of a mini-batch become one number (ArcherIlgpu.Rl names it LossAggregation: one type on both sides).</summary>
public enum PolicyAggregation
{
    /// <summary>Σ m·x / (Σ m + 1e-8) over every token of the batch (DAPO; newer verl's global token mean).</summary>
    TokenMean,
    /// <summary>Σ_rows [Σ_t m·x / (Σ_t m + 1e-8)] / SequenceDivisor: the mean over responses of each response's token mean
    /// (Archer's code: verl 0.4 token-mean with micro-batch 1).</summary>
    SeqMeanTokenMean,
    /// <summary>Σ_rows [Σ_t m·x / TokenSumNormalizer] / SequenceDivisor: each response's token sum over a constant (Dr. GRPO's).</summary>
    SeqMeanTokenSum,
}

/// <summary>How the KL term is normalised (ArcherIlgpu.Rl names it KlAggregation: one type on both sides).</summary>
public enum PolicyKlAggregation
{
    /// <summary>Like the policy term, with β·kl in place of w·L (the Archer paper's Eq. 5; verl's KL loss for GRPO).</summary>
    SameAsPolicy,
    /// <summary>Archer's code: per row, β_low·(mean KL over its low tokens) + β_high·(mean over its high tokens), summed over rows / SequenceDivisor.</summary>
    PerClassMean,
}

/// <summary>KL estimators on the sampled token against the reference policy (ArcherIlgpu.Rl names it KlEstimator: one type on both sides).</summary>
public enum PolicyKlEstimator
{
    /// <summary>ℓ − ℓ_ref (verl "kl").</summary>
    K1,
    /// <summary>½(ℓ − ℓ_ref)² (verl "mse").</summary>
    K2,
    /// <summary>clamp(exp(δ) − δ − 1, ±value clamp), δ = clamp(ℓ_ref − ℓ, ±delta clamp) (verl "low_var_kl"; Archer).</summary>
    K3,
}

/// <summary>How a group of rewards for one prompt becomes one advantage per response (ArcherIlgpu.Rl names it AdvantageEstimator: one type on both sides).</summary>
public enum PolicyAdvantageEstimator
{
    /// <summary>(r − mean) / (unbiased std + ε) within the group (GRPO; Archer's code, norm_adv_by_std_in_grpo=True).</summary>
    Grpo,
    /// <summary>r − mean, no division by the std (Dr. GRPO).</summary>
    DrGrpo,
    /// <summary>r − mean of the other G−1 rewards (RLOO).</summary>
    Rloo,
}

/// <summary>Which tokens an AR-Lopti pass trains on (others get advantage 0 and β 0 but stay in every denominator).</summary>
public enum PolicyTokenPass
{
    All,
    /// <summary>Tokens with ℓ_old &lt; ln η.</summary>
    LowProbability,
    /// <summary>The other valid tokens.</summary>
    HighProbability,
}

/// <summary>
/// The scalars of <see cref="Backend.PolicyLossForwardBackward"/>: per-class clip ranges and weights, the
/// clamps, the aggregation and AR-Lopti's advantage handling. A plain unmanaged struct so that it can be
/// passed to a kernel as one argument. Tokens of class Low use the Low* fields; High and None (padding)
/// use the High* fields, as ArcherIlgpu.Rl's TokenParameters.FromClasses does. Only 32-bit fields: CUDA
/// contexts run with MathMode.Fast32BitOnly, under which a float64 kernel argument would not arrive intact.
/// </summary>
public struct PolicyLossParameters
{
    /// <summary>Low class: ε_lo, ε_hi, policy-term multiplier, β.</summary>
    public float LowClipLow, LowClipHigh, LowPolicyWeight, LowKlWeight;
    /// <summary>High class (and None): ε_lo, ε_hi, policy-term multiplier, β.</summary>
    public float HighClipLow, HighClipHigh, HighPolicyWeight, HighKlWeight;
    /// <summary>Dual-clip c for A &lt; 0 (≤ 1 or +∞: off).</summary>
    public float DualClipC;
    /// <summary>ℓ − ℓ_old is clamped to ±this before exp.</summary>
    public float LogRatioClamp;
    /// <summary>k3 clamps: δ to ±KlDeltaClamp, the value to ±KlValueClamp.</summary>
    public float KlDeltaClamp, KlValueClamp;
    public PolicyKlEstimator KlEstimator;
    public PolicyAggregation Aggregation;
    public PolicyKlAggregation KlAggregation;
    /// <summary>Responses to divide by in the sequence-mean modes and in <see cref="PolicyKlAggregation.PerClassMean"/> (&gt; 0).</summary>
    public float SequenceDivisor;
    /// <summary>Constant divisor of <see cref="PolicyAggregation.SeqMeanTokenSum"/> (&gt; 0).</summary>
    public float TokenSumNormalizer;
    /// <summary>1: AR reweighting A' = (α·exp(ℓ_old) + 1 − α)·A with α = <see cref="ReweightAlpha"/>; 0: A as given.</summary>
    public int Reweight;
    public float ReweightAlpha;
    /// <summary>AR-Lopti's pass and its split point ln η (computed as MathF.Log(η)).</summary>
    public PolicyTokenPass Pass;
    public float LoptiLogEta;
    /// <summary>
    /// Σ m of the whole mini-batch when this call is one micro-batch of it, so that each micro-batch's dLogProbs
    /// come out alone (one forward per micro-batch): the token-mean denominator and the PPO-KL statistic's divisor.
    /// 0: this call's own Σ m. Float32 holds token counts exactly up to 2^24.
    /// </summary>
    public float MaskTotal;

    /// <summary>Archer's released-code defaults (archer-spec.md §9) for <paramref name="rows"/> responses.</summary>
    public static PolicyLossParameters ArcherDefaults(int rows) => new()
    {
        LowClipLow = 0.2f, LowClipHigh = 0.2f, LowPolicyWeight = 1f, LowKlWeight = 0.001f,
        HighClipLow = 0.5f, HighClipHigh = 0.5f, HighPolicyWeight = 1f, HighKlWeight = 0f,
        DualClipC = 10f, LogRatioClamp = 20f, KlDeltaClamp = 20f, KlValueClamp = 10f,
        KlEstimator = PolicyKlEstimator.K3, Aggregation = PolicyAggregation.SeqMeanTokenMean,
        KlAggregation = PolicyKlAggregation.PerClassMean, SequenceDivisor = Math.Max(rows, 1), TokenSumNormalizer = 1,
    };

    /// <summary>Throws if a value would make the loss meaningless (checked on the host before any launch).</summary>
    public readonly void Validate()
    {
        if (!(SequenceDivisor > 0)) throw new ArgumentOutOfRangeException(nameof(SequenceDivisor), SequenceDivisor, "sequence divisor must be > 0");
        if (!(TokenSumNormalizer > 0)) throw new ArgumentOutOfRangeException(nameof(TokenSumNormalizer), TokenSumNormalizer, "token-sum normaliser must be > 0");
        if (!(MaskTotal >= 0)) throw new ArgumentOutOfRangeException(nameof(MaskTotal), MaskTotal, "mask total must be >= 0 (0: the call's own)");
        if ((uint)KlEstimator > (uint)PolicyKlEstimator.K3) throw new ArgumentOutOfRangeException(nameof(KlEstimator), KlEstimator, "unknown KL estimator");
        if ((uint)Aggregation > (uint)PolicyAggregation.SeqMeanTokenSum) throw new ArgumentOutOfRangeException(nameof(Aggregation), Aggregation, "unknown aggregation");
        if ((uint)KlAggregation > (uint)PolicyKlAggregation.PerClassMean) throw new ArgumentOutOfRangeException(nameof(KlAggregation), KlAggregation, "unknown KL aggregation");
        if ((uint)Pass > (uint)PolicyTokenPass.HighProbability) throw new ArgumentOutOfRangeException(nameof(Pass), Pass, "unknown pass");
    }
}

/// <summary>Slots of the statistics buffer written by <see cref="Backend.PolicyLossForwardBackward"/>.</summary>
public static class PolicyLossStats
{
    /// <summary>Policy term + KL term.</summary>
    public const int Loss = 0;
    public const int PolicyTerm = 1;
    /// <summary>The KL term with its weights β.</summary>
    public const int KlTerm = 2;
    /// <summary>Unweighted aggregated KL of the low class (PerClassMean), or of all tokens (SameAsPolicy).</summary>
    public const int KlLow = 3;
    /// <summary>Unweighted aggregated KL of the high class (PerClassMean), 0 under SameAsPolicy.</summary>
    public const int KlHigh = 4;
    /// <summary>Σ m·(ℓ_old − ℓ) / Σ m, the divisor being <see cref="PolicyLossParameters.MaskTotal"/> when given (so micro-batches' values add up), else this call's (0 without valid tokens).</summary>
    public const int PpoKl = 5;
    /// <summary>Valid tokens per class: +0 low, +1 high (a valid token of class None counts as low).</summary>
    public const int Tokens = 6;
    /// <summary>The clipped branch binds with A &gt; 0, per class (+0 low, +1 high).</summary>
    public const int ClippedHigh = 8;
    /// <summary>The clipped branch binds with A &lt; 0, per class.</summary>
    public const int ClippedLow = 10;
    /// <summary>The dual clip binds, per class.</summary>
    public const int DualClipped = 12;
    /// <summary>Σ m over this call's valid tokens.</summary>
    public const int MaskSum = 14;
    /// <summary>Length of the statistics buffer.</summary>
    public const int Count = 15;
}

/// <summary>
/// The scalar math of token classification and of the policy loss, written once and called by the
/// managed backend, the ILGPU kernels and the tests' host references, so every path
/// takes the same branches and the same gradient at every kink. Kernel-safe: no Math.Clamp, no throw.
/// </summary>
public static class PolicyMath
{
    /// <summary>Token classes, one int per token on every backend: what the classify ops write and the loss reads.</summary>
    public const int ClassNone = 0, ClassLow = 1, ClassHigh = 2;

    /// <summary>Added to every token-count denominator, as verl does.</summary>
    public const double DenominatorEpsilon = 1e-8;

    /// <summary>Clamp that lets NaN through and never throws (Math.Clamp cannot run in a kernel).</summary>
    public static float Clamp(float x, float lo, float hi) => x < lo ? lo : x > hi ? hi : x;

    // ------------------------------------------------------------------ classification

    /// <summary>
    /// numpy's linear quantile between the two order statistics around p = ρ(n−1): a = h[⌊p⌋], b = h[⌈p⌉],
    /// interpolated in float64 from the nearer end (so frac = 1 gives b exactly), then rounded to float32.
    /// </summary>
    public static float QuantileLerp(float a, float b, double frac)
    {
        double da = a, db = b;
        double tau = frac < 0.5 ? da + (db - da) * frac : db - (db - da) * (1 - frac);
        return (float)tau;
    }

    /// <summary>Index of the lower order statistic, ⌊ρ(n−1)⌋, and the interpolation fraction; n ≥ 1.</summary>
    public static int QuantileIndex(int n, double rho, out double frac)
    {
        double p = rho * (n - 1);
        int lo = (int)Math.Floor(p);
        frac = p - lo;
        return lo;
    }

    /// <summary>Class of one token: None if masked out or τ is NaN, else High iff h &gt; τ (strict) or h ≥ τ.</summary>
    public static int ClassOf(float entropy, float mask, float tau, bool strictGreater)
    {
        if (!(mask > 0) || float.IsNaN(tau)) return ClassNone;
        bool high = strictGreater ? entropy > tau : entropy >= tau;
        return high ? ClassHigh : ClassLow;
    }

    /// <summary>Inverse of <see cref="SamplingMath.OrderKey"/>.</summary>
    public static float FromOrderKey(uint key)
    {
        uint bits = (key & 0x80000000u) != 0 ? key & 0x7FFFFFFFu : ~key;
        return BitConverter.Int32BitsToSingle((int)bits);
    }

    // ------------------------------------------------------------------ advantages

    /// <summary>
    /// One response's advantage from its reward and its group's Σ r and Σ (r − mean)² (mean = Σ r / G), float64
    /// (float32 under CUDA's Fast32BitOnly); NaN for an unknown estimator. G ≥ 2.
    /// </summary>
    public static double GroupAdvantage(PolicyAdvantageEstimator estimator, double reward, double sum, double squaredDeviations,
        int groupSize, double epsilon)
    {
        double mean = sum / groupSize;
        if (estimator == PolicyAdvantageEstimator.Grpo) return (reward - mean) / (Math.Sqrt(squaredDeviations / (groupSize - 1)) + epsilon);
        if (estimator == PolicyAdvantageEstimator.DrGrpo) return reward - mean;
        if (estimator == PolicyAdvantageEstimator.Rloo) return reward - (sum - reward) / (groupSize - 1);
        return double.NaN;
    }

    // ------------------------------------------------------------------ per-token loss

    /// <summary>The clipped surrogate of one token and dL/dℓ, with which branch bound.</summary>
    public struct Surrogate
    {
        public float Loss, Gradient;
        /// <summary>The clipped branch is strictly larger than the unclipped one.</summary>
        public bool Clipped;
        /// <summary>The dual-clip cap replaced the loss (A &lt; 0).</summary>
        public bool DualClipped;
    }

    /// <summary>
    /// r = exp(clamp(ℓ − ℓ_old, ±clamp)); Lc = max(−A·r, −A·clip(r, 1 − ε_lo, 1 + ε_hi)); L = A &lt; 0 ? min(Lc, −A·c) : Lc.
    /// Gradients as autograd: a clamp passes inside its closed range, max/min take the strictly larger/smaller branch.
    /// </summary>
    public static Surrogate ClippedSurrogate(float logProb, float oldLogProb, float advantage, float clipLow, float clipHigh,
        float dualClipC, float logRatioClamp)
    {
        float delta = logProb - oldLogProb;
        bool ratioLive = delta >= -logRatioClamp && delta <= logRatioClamp;
        float r = MathF.Exp(Clamp(delta, -logRatioClamp, logRatioClamp));
        float dr = ratioLive ? r : 0f;

        float unclipped = -advantage * r;
        float lower = 1f - clipLow, upper = 1f + clipHigh;
        float clipped = -advantage * Clamp(r, lower, upper);
        bool clipLive = r >= lower && r <= upper;

        var s = new Surrogate();
        s.Clipped = clipped > unclipped;
        s.Loss = s.Clipped ? clipped : unclipped;
        s.Gradient = s.Clipped ? (clipLive ? -advantage * dr : 0f) : -advantage * dr;
        s.DualClipped = false;
        // c > 1 also rejects NaN; c < +∞ is the finiteness test (float.IsFinite is not kernel code).
        if (advantage < 0 && dualClipC > 1f && dualClipC < float.PositiveInfinity)
        {
            float cap = -advantage * dualClipC;
            if (s.Loss > cap) { s.Loss = cap; s.Gradient = 0f; s.DualClipped = true; }
        }
        return s;
    }

    /// <summary>A KL estimator of one token (Value) and its derivative with respect to ℓ (Gradient); NaN for an unknown estimator.</summary>
    public struct KlValue
    {
        public float Value, Gradient;
    }

    public static KlValue Kl(PolicyKlEstimator estimator, float logProb, float refLogProb, float deltaClamp, float valueClamp)
    {
        var k = new KlValue();
        if (estimator == PolicyKlEstimator.K1)
        {
            k.Value = logProb - refLogProb; k.Gradient = 1f;
        }
        else if (estimator == PolicyKlEstimator.K2)
        {
            float d = logProb - refLogProb;
            k.Value = 0.5f * d * d; k.Gradient = d;
        }
        else if (estimator == PolicyKlEstimator.K3)
        {
            float delta = refLogProb - logProb;
            bool deltaLive = delta >= -deltaClamp && delta <= deltaClamp;
            float dc = Clamp(delta, -deltaClamp, deltaClamp);
            float e = MathF.Exp(dc);
            float raw = e - dc - 1f;
            bool valueLive = raw >= -valueClamp && raw <= valueClamp;
            k.Value = Clamp(raw, -valueClamp, valueClamp);
            // d(e^δ − δ − 1)/dδ = e^δ − 1 and dδ/dℓ = −1.
            k.Gradient = deltaLive && valueLive ? 1f - e : 0f;
        }
        else
        {
            k.Value = float.NaN; k.Gradient = float.NaN;
        }
        return k;
    }

    /// <summary>
    /// dLoss/dℓ of one token, summed in float64 in the host implementation's order and rounded once:
    /// pgCoef·w·g + klCoef·β·dkl, where the coefficients are m times the row's scales.
    /// </summary>
    public static float TokenGradient(double pgCoef, float policyWeight, float surrogateGradient,
        bool hasKl, double klCoef, float klWeight, float klGradient)
    {
        double grad = pgCoef * policyWeight * surrogateGradient;
        if (hasKl) grad += klCoef * klWeight * klGradient;
        return (float)grad;
    }

    /// <summary>The derivative of the aggregated policy term with respect to one token's m·x.</summary>
    public static double PolicyScale(PolicyAggregation aggregation, double rowMask, double totalMask, double divisor, double tokenSumNormalizer)
        => aggregation == PolicyAggregation.TokenMean ? 1.0 / (totalMask + DenominatorEpsilon)
         : aggregation == PolicyAggregation.SeqMeanTokenMean ? 1.0 / (rowMask + DenominatorEpsilon) / divisor
         : 1.0 / tokenSumNormalizer / divisor;

    /// <summary>The Σ m that token means divide by: the mini-batch's (<see cref="PolicyLossParameters.MaskTotal"/>) if given, else the call's own.</summary>
    public static double MaskTotal(in PolicyLossParameters p, double callTotal) => p.MaskTotal > 0 ? p.MaskTotal : callTotal;

    /// <summary>The derivative of a per-class KL mean term with respect to one of that class's tokens' m·kl.</summary>
    public static double ClassKlScale(double classMask, double divisor) => 1.0 / (classMask + DenominatorEpsilon) / divisor;

    /// <summary>A after AR-Lopti's reweighting and pass restriction (the host AlgorithmLoss's order of float operations).</summary>
    public static float EffectiveAdvantage(in PolicyLossParameters p, float advantage, float oldLogProb)
    {
        float a = p.Reweight != 0 ? (p.ReweightAlpha * MathF.Exp(oldLogProb) + 1f - p.ReweightAlpha) * advantage : advantage;
        if (!InPass(p, oldLogProb)) a = 0f;
        return a;
    }

    /// <summary>Whether a valid token belongs to the current AR-Lopti pass (always, outside AR-Lopti).</summary>
    public static bool InPass(in PolicyLossParameters p, float oldLogProb)
    {
        if (p.Pass == PolicyTokenPass.All) return true;
        bool low = oldLogProb < p.LoptiLogEta;
        return p.Pass == PolicyTokenPass.LowProbability ? low : !low;
    }

    /// <summary>Everything one valid token contributes, before the row and batch scales.</summary>
    public struct TokenTerms
    {
        /// <summary>0 low, 1 high: the class for statistics and per-class KL means (None counts as low).</summary>
        public int StatClass;
        public Surrogate Surrogate;
        public float Advantage, PolicyWeight, KlWeight;
        public KlValue Kl;
    }

    /// <summary>
    /// Evaluates one valid token. <paramref name="cls"/> is its class (ignored without classes: then Low);
    /// the parameters are the Low set for Low and the High set otherwise.
    /// </summary>
    public static TokenTerms Evaluate(in PolicyLossParameters p, float logProb, float oldLogProb, float refLogProb, float advantage,
        int cls, bool hasClasses, bool hasKl)
    {
        var t = new TokenTerms();
        bool lowParams = !hasClasses || cls == ClassLow;
        t.StatClass = hasClasses && cls == ClassHigh ? 1 : 0;
        float clipLow = lowParams ? p.LowClipLow : p.HighClipLow;
        float clipHigh = lowParams ? p.LowClipHigh : p.HighClipHigh;
        t.PolicyWeight = lowParams ? p.LowPolicyWeight : p.HighPolicyWeight;
        t.KlWeight = InPass(p, oldLogProb) ? (lowParams ? p.LowKlWeight : p.HighKlWeight) : 0f;
        t.Advantage = EffectiveAdvantage(p, advantage, oldLogProb);
        t.Surrogate = ClippedSurrogate(logProb, oldLogProb, t.Advantage, clipLow, clipHigh, p.DualClipC, p.LogRatioClamp);
        if (hasKl) t.Kl = Kl(p.KlEstimator, logProb, refLogProb, p.KlDeltaClamp, p.KlValueClamp);
        return t;
    }

    // ------------------------------------------------------------------ row and batch sums

    /// <summary>Slots of one row's sums in the scratch both backends use: [rows, RowSlots] float64.</summary>
    public const int RowMask = 0, RowLowMask = 1, RowHighMask = 2, RowPolicy = 3, RowKlWeightedLow = 4, RowKlWeightedHigh = 5,
        RowKlLow = 6, RowKlHigh = 7, RowPpoKl = 8, RowCounts = 9, RowCountSlots = 8,
        RowPolicyScale = 17, RowLowKlScale = 18, RowHighKlScale = 19, RowSlots = 20;

    /// <summary>Number of slots of a row that the per-row pass sums (the scales come later).</summary>
    public const int RowSumSlots = RowCounts + RowCountSlots;

    /// <summary>
    /// One row's sums (or one thread's share of them), in float64. <see cref="Get"/> numbers them as the
    /// row slots; the counts follow <see cref="PolicyLossStats"/> from Tokens on (each per class).
    /// </summary>
    public struct RowSums
    {
        public double Mask, LowMask, HighMask, Policy, KlWeightedLow, KlWeightedHigh, KlLow, KlHigh, PpoKl;
        public double TokensLow, TokensHigh, ClippedHighLow, ClippedHighHigh, ClippedLowLow, ClippedLowHigh, DualLow, DualHigh;

        /// <summary>Adds one valid token.</summary>
        public void Add(in TokenTerms t, float mask, float logProb, float oldLogProb, bool hasKl)
        {
            bool high = t.StatClass == 1;
            Mask += mask;
            if (high) HighMask += mask; else LowMask += mask;
            Policy += (double)mask * t.PolicyWeight * t.Surrogate.Loss;
            if (hasKl)
            {
                double klw = (double)mask * t.KlWeight * t.Kl.Value, kl = (double)mask * t.Kl.Value;
                if (high) { KlWeightedHigh += klw; KlHigh += kl; } else { KlWeightedLow += klw; KlLow += kl; }
            }
            PpoKl += mask * (oldLogProb - logProb);   // float product, as the host code forms it
            bool clippedHigh = t.Surrogate.Clipped && t.Advantage > 0, clippedLow = t.Surrogate.Clipped && t.Advantage < 0;
            if (high)
            {
                TokensHigh += 1;
                if (clippedHigh) ClippedHighHigh += 1;
                if (clippedLow) ClippedLowHigh += 1;
                if (t.Surrogate.DualClipped) DualHigh += 1;
            }
            else
            {
                TokensLow += 1;
                if (clippedHigh) ClippedHighLow += 1;
                if (clippedLow) ClippedLowLow += 1;
                if (t.Surrogate.DualClipped) DualLow += 1;
            }
        }

        /// <summary>The sum in row slot <paramref name="slot"/> (&lt; <see cref="RowSumSlots"/>).</summary>
        public readonly double Get(int slot)
        {
            switch (slot)
            {
                case RowMask: return Mask;
                case RowLowMask: return LowMask;
                case RowHighMask: return HighMask;
                case RowPolicy: return Policy;
                case RowKlWeightedLow: return KlWeightedLow;
                case RowKlWeightedHigh: return KlWeightedHigh;
                case RowKlLow: return KlLow;
                case RowKlHigh: return KlHigh;
                case RowPpoKl: return PpoKl;
                case RowCounts: return TokensLow;
                case RowCounts + 1: return TokensHigh;
                case RowCounts + 2: return ClippedHighLow;
                case RowCounts + 3: return ClippedHighHigh;
                case RowCounts + 4: return ClippedLowLow;
                case RowCounts + 5: return ClippedLowHigh;
                case RowCounts + 6: return DualLow;
                default: return DualHigh;
            }
        }
    }

    /// <summary>A row's three gradient scales: policy, low-class KL, high-class KL (KL scales already chosen by the KL mode).</summary>
    public struct RowScales
    {
        public double Policy, LowKl, HighKl;
    }

    public static RowScales Scales(in PolicyLossParameters p, double rowMask, double rowLowMask, double rowHighMask, double totalMask)
    {
        var s = new RowScales();
        s.Policy = PolicyScale(p.Aggregation, rowMask, totalMask, p.SequenceDivisor, p.TokenSumNormalizer);
        bool perClass = p.KlAggregation == PolicyKlAggregation.PerClassMean;
        s.LowKl = perClass ? ClassKlScale(rowLowMask, p.SequenceDivisor) : s.Policy;
        s.HighKl = perClass ? ClassKlScale(rowHighMask, p.SequenceDivisor) : s.Policy;
        return s;
    }

    /// <summary>A row's share of the aggregated terms, from its sums and its scales.</summary>
    public struct RowTerms
    {
        public double Policy, KlWeighted, KlLow, KlHigh;
    }

    public static RowTerms Terms(in PolicyLossParameters p, in RowScales s, double policySum, double klWeightedLow, double klWeightedHigh,
        double klLow, double klHigh)
    {
        var t = new RowTerms();
        t.Policy = s.Policy * policySum;
        t.KlWeighted = s.LowKl * klWeightedLow + s.HighKl * klWeightedHigh;
        if (p.KlAggregation == PolicyKlAggregation.PerClassMean) { t.KlLow = s.LowKl * klLow; t.KlHigh = s.HighKl * klHigh; }
        else { t.KlLow = s.Policy * (klLow + klHigh); t.KlHigh = 0; }
        return t;
    }
}
