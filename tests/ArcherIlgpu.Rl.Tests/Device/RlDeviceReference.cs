using ArcherIlgpu.Kernels;

namespace ArcherIlgpu.Rl.Tests.Device;

/// <summary>
/// Float64 references for the device ops, written from archer-spec.md §1–§2 and the contract in
/// BackendRl.cs with plain loops and Math.Min/Max, independently of PolicyMath.
/// </summary>
public static class ClassifyReference
{
    /// <summary>τ of one range (numpy-linear quantile of the valid entropies, then rounded to float32) and its classes.</summary>
    public static (float Tau, int[] Classes) Classify(float[] h, float[] m, int start, int length, double rho, bool strictGreater)
    {
        var valid = new List<double>();
        for (int t = start; t < start + length; t++) if (m[t] > 0) valid.Add(h[t]);
        valid.Sort();
        float tau = float.NaN;
        if (valid.Count > 0)
        {
            double p = rho * (valid.Count - 1);
            int lo = (int)Math.Floor(p), hi = Math.Min(lo + 1, valid.Count - 1);
            tau = (float)(valid[lo] + (p - lo) * (valid[hi] - valid[lo]));
        }
        var cls = new int[length];
        for (int t = 0; t < length; t++)
        {
            if (!(m[start + t] > 0) || float.IsNaN(tau)) { cls[t] = 0; continue; }
            bool high = strictGreater ? h[start + t] > tau : h[start + t] >= tau;
            cls[t] = high ? 2 : 1;
        }
        return (tau, cls);
    }
}

/// <summary>The policy loss of archer-spec.md §2/§4 in float64: its value as a function of ℓ (for finite differences) and its statistics.</summary>
public sealed class LossReference
{
    public int R, T;
    public double[] Old = [], Ref = [], Adv = [], Mask = [];
    public int[]? Classes;
    public PolicyLossParameters P;
    public bool UseKl;

    public double Divisor => P.SequenceDivisor;

    bool Valid(int n) => Mask[n] > 0;
    bool LowParams(int n) => Classes is null || Classes[n] == 1;
    bool StatHigh(int n) => Classes is not null && Classes[n] == 2;
    bool InPass(int n) => P.Pass == PolicyTokenPass.All || ((Old[n] < P.LoptiLogEta) == (P.Pass == PolicyTokenPass.LowProbability));

    public double Advantage(int n)
    {
        double a = P.Reweight != 0 ? (P.ReweightAlpha * Math.Exp(Old[n]) + 1 - P.ReweightAlpha) * Adv[n] : Adv[n];
        return InPass(n) ? a : 0;
    }

    double Beta(int n) => InPass(n) ? (LowParams(n) ? P.LowKlWeight : P.HighKlWeight) : 0;
    double Weight(int n) => LowParams(n) ? P.LowPolicyWeight : P.HighPolicyWeight;

    public (double Loss, bool Clipped, bool Dual) Token(int n, double logp)
    {
        double eLo = LowParams(n) ? P.LowClipLow : P.HighClipLow, eHi = LowParams(n) ? P.LowClipHigh : P.HighClipHigh;
        double r = Math.Exp(Math.Max(-P.LogRatioClamp, Math.Min(P.LogRatioClamp, logp - Old[n])));
        double a = Advantage(n);
        double l1 = -a * r, l2 = -a * Math.Max(1 - eLo, Math.Min(1 + eHi, r));
        double lc = Math.Max(l1, l2);
        bool dual = a < 0 && P.DualClipC > 1 && double.IsFinite(P.DualClipC) && lc > -a * P.DualClipC;
        return (dual ? -a * P.DualClipC : lc, l2 > l1, dual);
    }

    public double Kl(int n, double logp)
    {
        switch (P.KlEstimator)
        {
            case PolicyKlEstimator.K1: return logp - Ref[n];
            case PolicyKlEstimator.K2: return 0.5 * (logp - Ref[n]) * (logp - Ref[n]);
            default:
                double d = Math.Max(-P.KlDeltaClamp, Math.Min(P.KlDeltaClamp, Ref[n] - logp));
                return Math.Max(-P.KlValueClamp, Math.Min(P.KlValueClamp, Math.Exp(d) - d - 1));
        }
    }

    /// <summary>Σ over rows/tokens of f aggregated as the policy term is.</summary>
    double Aggregate(Func<int, double> f)
    {
        if (P.Aggregation == PolicyAggregation.TokenMean)
        {
            double num = 0, den = 0;
            for (int n = 0; n < R * T; n++) if (Valid(n)) { num += Mask[n] * f(n); den += Mask[n]; }
            return num / (den + 1e-8);
        }
        double sum = 0;
        for (int i = 0; i < R; i++)
        {
            double num = 0, den = 0;
            for (int n = i * T; n < (i + 1) * T; n++) if (Valid(n)) { num += Mask[n] * f(n); den += Mask[n]; }
            sum += P.Aggregation == PolicyAggregation.SeqMeanTokenMean ? num / (den + 1e-8) : num / P.TokenSumNormalizer;
        }
        return sum / Divisor;
    }

    /// <summary>Σ_rows [Σ_low m·f / (N_low + 1e-8)] / D for cls = 1 (low, None included) or 2 (high).</summary>
    double ClassMean(Func<int, double> f, bool high)
    {
        double sum = 0;
        for (int i = 0; i < R; i++)
        {
            double num = 0, den = 0;
            for (int n = i * T; n < (i + 1) * T; n++)
                if (Valid(n) && StatHigh(n) == high) { num += Mask[n] * f(n); den += Mask[n]; }
            sum += num / (den + 1e-8);
        }
        return sum / Divisor;
    }

    public double PolicyTerm(double[] lp) => Aggregate(n => Weight(n) * Token(n, lp[n]).Loss);

    public double KlTerm(double[] lp)
    {
        if (!UseKl) return 0;
        if (P.KlAggregation == PolicyKlAggregation.SameAsPolicy) return Aggregate(n => Beta(n) * Kl(n, lp[n]));
        return ClassMean(n => Beta(n) * Kl(n, lp[n]), false) + ClassMean(n => Beta(n) * Kl(n, lp[n]), true);
    }

    public double Loss(double[] lp) => PolicyTerm(lp) + KlTerm(lp);

    /// <summary>The expected statistics buffer (<see cref="PolicyLossStats"/> layout).</summary>
    public double[] Stats(double[] lp)
    {
        var s = new double[PolicyLossStats.Count];
        s[PolicyLossStats.PolicyTerm] = PolicyTerm(lp);
        s[PolicyLossStats.KlTerm] = KlTerm(lp);
        s[PolicyLossStats.Loss] = s[PolicyLossStats.PolicyTerm] + s[PolicyLossStats.KlTerm];
        if (UseKl)
        {
            if (P.KlAggregation == PolicyKlAggregation.SameAsPolicy) s[PolicyLossStats.KlLow] = Aggregate(n => Kl(n, lp[n]));
            else
            {
                s[PolicyLossStats.KlLow] = ClassMean(n => Kl(n, lp[n]), false);
                s[PolicyLossStats.KlHigh] = ClassMean(n => Kl(n, lp[n]), true);
            }
        }
        double mass = 0, ppo = 0;
        for (int n = 0; n < R * T; n++)
        {
            if (!Valid(n)) continue;
            mass += Mask[n]; ppo += Mask[n] * (Old[n] - lp[n]);
            int c = StatHigh(n) ? 1 : 0;
            var tok = Token(n, lp[n]);
            double a = Advantage(n);
            s[PolicyLossStats.Tokens + c]++;
            if (tok.Clipped && a > 0) s[PolicyLossStats.ClippedHigh + c]++;
            if (tok.Clipped && a < 0) s[PolicyLossStats.ClippedLow + c]++;
            if (tok.Dual) s[PolicyLossStats.DualClipped + c]++;
        }
        s[PolicyLossStats.MaskSum] = mass;
        s[PolicyLossStats.PpoKl] = mass > 0 ? ppo / mass : 0;
        return s;
    }
}
