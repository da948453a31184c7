namespace ArcherIlgpu.Kernels;

/// <summary>
/// Token classification and the policy loss on the managed backend. Classification sorts each row's
/// valid entropies (the order statistics are what the GPU's radix select finds). The loss runs the same
/// three phases as the GPU kernels, over the same <see cref="PolicyMath"/> functions: per-row sums into a
/// [R, RowSlots] float64 scratch, then the batch totals and per-row scales, then the gradient per token.
/// Advantages: each group's sums once, in float64 (the same numbers as the host formula's).
/// </summary>
public sealed partial class CpuBackend
{
    double[] rowScratch = [];
    float[] sortScratch = [];

    protected override void ClassifyTokensPerResponseCore(Buf<float> entropies, Buf<float> mask, int R, int T, double rho,
        bool strictGreater, Buf<float> thresholds, Buf<int> classes)
    {
        var h = entropies.Buffer.Host!; long hOff = entropies.Offset;
        var m = mask.Buffer.Host!; long mOff = mask.Offset;
        var tau = thresholds.Buffer.Host!; long tauOff = thresholds.Offset;
        var cls = classes.Buffer.Host!; long clsOff = classes.Offset;
        if (sortScratch.Length < (long)R * T) sortScratch = new float[(long)R * T];
        var scratch = sortScratch;
        ParallelRange(R, 16, (start, end) =>
        {
            for (int i = start; i < end; i++)
            {
                int rowStart = i * T;
                var sorted = scratch.AsSpan(rowStart, T);   // each row sorts in its own part of the scratch
                tau[tauOff + i] = ClassifyRange(h.AsSpan((int)(hOff + rowStart), T), m.AsSpan((int)(mOff + rowStart), T), rho,
                    strictGreater, sorted, cls.AsSpan((int)(clsOff + rowStart), T));
            }
        });
    }

    protected override void ClassifyTokensBatchCore(Buf<float> entropies, Buf<float> mask, int N, double rho,
        bool strictGreater, Buf<float> threshold, Buf<int> classes)
    {
        if (sortScratch.Length < N) sortScratch = new float[N];
        threshold.Span[0] = ClassifyRange(entropies.Span, mask.Span, rho, strictGreater, sortScratch.AsSpan(0, N), classes.Span);
    }

    /// <summary>Classifies one range by the ρ-quantile of its valid entropies; returns τ (NaN without valid tokens).</summary>
    static float ClassifyRange(ReadOnlySpan<float> h, ReadOnlySpan<float> m, double rho, bool strictGreater, Span<float> scratch, Span<int> cls)
    {
        int n = 0;
        for (int t = 0; t < h.Length; t++) if (m[t] > 0) scratch[n++] = h[t];
        float tau = float.NaN;
        if (n > 0)
        {
            var valid = scratch[..n];
            valid.Sort();
            int lo = PolicyMath.QuantileIndex(n, rho, out double frac);
            int hi = Math.Min(lo + 1, n - 1);
            tau = PolicyMath.QuantileLerp(valid[lo], valid[hi], frac);
        }
        for (int t = 0; t < h.Length; t++) cls[t] = PolicyMath.ClassOf(h[t], m[t], tau, strictGreater);
        return tau;
    }

    protected override void PolicyLossForwardBackwardCore(Buf<float> logProbs, Buf<float> oldLogProbs, Buf<float> refLogProbs,
        Buf<float> advantages, Buf<float> mask, Buf<int> classes, int R, int T, in PolicyLossParameters parameters,
        Buf<float> dLogProbs, Buf<float> stats)
    {
        var p = parameters;
        bool hasKl = !refLogProbs.IsEmpty, hasClasses = !classes.IsEmpty;
        if (rowScratch.Length < (long)R * PolicyMath.RowSlots) rowScratch = new double[(long)R * PolicyMath.RowSlots];
        var rows = rowScratch;
        var lp = logProbs.Buffer.Host!; long lpOff = logProbs.Offset;
        var old = oldLogProbs.Buffer.Host!; long oldOff = oldLogProbs.Offset;
        var rf = hasKl ? refLogProbs.Buffer.Host! : lp; long rfOff = hasKl ? refLogProbs.Offset : lpOff;
        var adv = advantages.Buffer.Host!; long advOff = advantages.Offset;
        var m = mask.Buffer.Host!; long mOff = mask.Offset;
        var cls = hasClasses ? classes.Buffer.Host! : null; long clsOff = hasClasses ? classes.Offset : 0;
        var d = dLogProbs.Buffer.Host!; long dOff = dLogProbs.Offset;

        ParallelRange(R, 8, (start, end) =>
        {
            for (int i = start; i < end; i++)
            {
                var sums = new PolicyMath.RowSums();
                for (int t = 0; t < T; t++)
                {
                    long n = (long)i * T + t;
                    float mk = m[mOff + n];
                    if (!(mk > 0)) continue;
                    var terms = PolicyMath.Evaluate(p, lp[lpOff + n], old[oldOff + n], rf[rfOff + n], adv[advOff + n],
                        hasClasses ? cls![clsOff + n] : PolicyMath.ClassLow, hasClasses, hasKl);
                    sums.Add(terms, mk, lp[lpOff + n], old[oldOff + n], hasKl);
                }
                for (int s = 0; s < PolicyMath.RowSumSlots; s++) rows[i * PolicyMath.RowSlots + s] = sums.Get(s);
            }
        });

        Span<double> totals = stackalloc double[PolicyLossStats.Count];
        BatchTotals(p, rows, R, totals);
        var statsOut = stats.Span;
        for (int s = 0; s < PolicyLossStats.Count; s++) statsOut[s] = (float)totals[s];

        ParallelRange(R, 8, (start, end) =>
        {
            for (int i = start; i < end; i++)
            {
                double pgScale = rows[i * PolicyMath.RowSlots + PolicyMath.RowPolicyScale];
                double lowKl = rows[i * PolicyMath.RowSlots + PolicyMath.RowLowKlScale];
                double highKl = rows[i * PolicyMath.RowSlots + PolicyMath.RowHighKlScale];
                for (int t = 0; t < T; t++)
                {
                    long n = (long)i * T + t;
                    float mk = m[mOff + n];
                    if (!(mk > 0)) { d[dOff + n] = 0f; continue; }
                    var terms = PolicyMath.Evaluate(p, lp[lpOff + n], old[oldOff + n], rf[rfOff + n], adv[advOff + n],
                        hasClasses ? cls![clsOff + n] : PolicyMath.ClassLow, hasClasses, hasKl);
                    d[dOff + n] = PolicyMath.TokenGradient(mk * pgScale, terms.PolicyWeight, terms.Surrogate.Gradient,
                        hasKl, mk * (terms.StatClass == 1 ? highKl : lowKl), terms.KlWeight, terms.Kl.Gradient);
                }
            }
        });
    }

    /// <summary>Batch totals, each row's scales (written into its scratch row) and the statistics.</summary>
    static void BatchTotals(in PolicyLossParameters p, double[] rows, int R, Span<double> stats)
    {
        stats.Clear();
        for (int i = 0; i < R; i++)
        {
            int r = i * PolicyMath.RowSlots;
            stats[PolicyLossStats.MaskSum] += rows[r + PolicyMath.RowMask];
            stats[PolicyLossStats.PpoKl] += rows[r + PolicyMath.RowPpoKl];
            for (int c = 0; c < PolicyMath.RowCountSlots; c++) stats[PolicyLossStats.Tokens + c] += rows[r + PolicyMath.RowCounts + c];
        }
        double total = PolicyMath.MaskTotal(p, stats[PolicyLossStats.MaskSum]);
        for (int i = 0; i < R; i++)
        {
            int r = i * PolicyMath.RowSlots;
            var s = PolicyMath.Scales(p, rows[r + PolicyMath.RowMask], rows[r + PolicyMath.RowLowMask], rows[r + PolicyMath.RowHighMask], total);
            rows[r + PolicyMath.RowPolicyScale] = s.Policy;
            rows[r + PolicyMath.RowLowKlScale] = s.LowKl;
            rows[r + PolicyMath.RowHighKlScale] = s.HighKl;
            var terms = PolicyMath.Terms(p, s, rows[r + PolicyMath.RowPolicy], rows[r + PolicyMath.RowKlWeightedLow],
                rows[r + PolicyMath.RowKlWeightedHigh], rows[r + PolicyMath.RowKlLow], rows[r + PolicyMath.RowKlHigh]);
            stats[PolicyLossStats.PolicyTerm] += terms.Policy;
            stats[PolicyLossStats.KlTerm] += terms.KlWeighted;
            stats[PolicyLossStats.KlLow] += terms.KlLow;
            stats[PolicyLossStats.KlHigh] += terms.KlHigh;
        }
        stats[PolicyLossStats.PpoKl] = total > 0 ? stats[PolicyLossStats.PpoKl] / total : 0;
        stats[PolicyLossStats.Loss] = stats[PolicyLossStats.PolicyTerm] + stats[PolicyLossStats.KlTerm];
    }

    protected override void GroupAdvantagesCore(Buf<float> rewards, Buf<float> mask, int R, int T, int groupSize,
        PolicyAdvantageEstimator estimator, double epsilon, Buf<float> advantages)
    {
        var r = rewards.Span; var m = mask.Span; var a = advantages.Span;
        for (int start = 0; start < R; start += groupSize)
        {
            var group = r.Slice(start, groupSize);
            double sum = 0, squares = 0;
            foreach (var x in group) sum += x;
            double mean = sum / groupSize;
            foreach (var x in group) squares += (x - mean) * (x - mean);
            for (int i = start; i < start + groupSize; i++)
            {
                float advantage = (float)PolicyMath.GroupAdvantage(estimator, r[i], sum, squares, groupSize, epsilon);
                for (int t = 0; t < T; t++) a[i * T + t] = m[i * T + t] > 0 ? advantage : 0f;
            }
        }
    }
}
