using ILGPU;
using ILGPU.Runtime;

namespace ArcherIlgpu.Kernels;

/// <summary>
/// Token classification and the policy loss as ILGPU kernels, with no host round trip.
/// Classification: one group per row (one group over the whole batch for the batch quantile) finds
/// the two order statistics around the quantile by a radix select on <see cref="SamplingMath.OrderKey"/>,
/// 8 bits per pass over shared count histograms, so the result is exact and independent of thread order.
/// Loss: (1) one group per row sums the row's <see cref="PolicyMath.RowSums"/> into a [R, RowSlots]
/// float32 scratch (float32 throughout: CUDA contexts use MathMode.Fast32BitOnly, which demotes every
/// float64 operation, load and store in a kernel to float32); (2) one group turns them into batch totals, per-row gradient scales and the
/// statistics; (3) one thread per token writes dLoss/dℓ. Every per-token value comes from the same
/// <see cref="PolicyMath"/> functions as the managed backend and the host code. Advantages: one thread per
/// token reads its group's rewards (<see cref="PolicyMath.GroupAdvantage"/>).
/// </summary>
public sealed partial class IlgpuBackend
{
    Action<KernelConfig, ArrayView<float>, ArrayView<float>, int, ArrayView<int>, ArrayView<float>, int, ArrayView<float>, ArrayView<int>>? classifyKernel;
    Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>,
        int, int, int, PolicyLossParameters, ArrayView<float>>? policyRowKernel;
    Action<KernelConfig, ArrayView<float>, int, PolicyLossParameters, ArrayView<float>>? policyTotalsKernel;
    Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>,
        int, int, int, int, PolicyLossParameters, ArrayView<float>, ArrayView<float>>? policyGradientKernel;
    Action<KernelConfig, ArrayView<float>, ArrayView<float>, int, int, int, PolicyAdvantageEstimator, float, ArrayView<float>>? groupAdvantagesKernel;

    DeviceBuffer<float>? policyRows;    // [R, RowSlots] float32 scratch (float64 does not survive Fast32BitOnly), grown to the largest R seen
    DeviceBuffer<int>? noClasses;       // stands in for an absent classes argument (never read)

    // Quantile positions per valid count n = 0..quantileMax: ⌊ρ(n−1)⌋ and the fraction as a float pair
    // (hi, lo), computed on the host in float64. Kernels cannot do that arithmetic themselves: CUDA contexts
    // run with MathMode.Fast32BitOnly, which demotes float64 to float32, and ρ(n−1) in float32 can land on
    // the wrong side of an integer. Rebuilt only when ρ changes or a longer row arrives.
    DeviceBuffer<int>? quantileIndex;
    DeviceBuffer<float>? quantileFraction;
    double quantileRho = double.NaN;
    int quantileMax = -1;

    // ------------------------------------------------------------------ classification

    protected override void ClassifyTokensPerResponseCore(Buf<float> entropies, Buf<float> mask, int R, int T, double rho,
        bool strictGreater, Buf<float> thresholds, Buf<int> classes)
    {
        if (R == 0) return;
        if (T == 0) { Fill(thresholds, float.NaN); return; }
        LaunchClassify(entropies, mask, R, T, rho, strictGreater, thresholds, classes);
    }

    protected override void ClassifyTokensBatchCore(Buf<float> entropies, Buf<float> mask, int N, double rho,
        bool strictGreater, Buf<float> threshold, Buf<int> classes)
    {
        if (N == 0) { Fill(threshold, float.NaN); return; }
        LaunchClassify(entropies, mask, 1, N, rho, strictGreater, threshold, classes);
    }

    void Fill(Buf<float> dst, float value)
    {
        var values = new float[dst.Length];   // only for degenerate shapes (no tokens at all)
        values.AsSpan().Fill(value);
        Upload(dst, values);
    }

    void LaunchClassify(Buf<float> entropies, Buf<float> mask, int rows, int length, double rho, bool strictGreater,
        Buf<float> thresholds, Buf<int> classes)
    {
        EnsureQuantileTable(rho, length);
        classifyKernel ??= Accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, int, ArrayView<int>, ArrayView<float>, int,
            ArrayView<float>, ArrayView<int>>(ClassifyKernel);
        classifyKernel(new KernelConfig(rows, RowGroupSize(length)), entropies.View, mask.View, length, quantileIndex!.All.View,
            quantileFraction!.All.View, strictGreater ? 1 : 0, thresholds.View, classes.View);
    }

    void EnsureQuantileTable(double rho, int length)
    {
        if (rho == quantileRho && length <= quantileMax) return;
        int max = Math.Max(length, quantileMax);
        var index = new int[max + 1]; var fraction = new float[2 * (max + 1)];
        for (int n = 1; n <= max; n++)
        {
            index[n] = PolicyMath.QuantileIndex(n, rho, out double frac);
            float hi = (float)frac;
            fraction[2 * n] = hi;
            fraction[2 * n + 1] = (float)(frac - hi);
        }
        quantileIndex?.Dispose(); quantileFraction?.Dispose();
        quantileIndex = this.Upload<int>(index).Buffer;
        quantileFraction = this.Upload<float>(fraction).Buffer;
        quantileRho = rho; quantileMax = max;
    }

    /// <summary>Count bins of one select pass, and three rotating histograms so one barrier per pass suffices.</summary>
    const int SelectBins = 256, SelectSlots = 3 * SelectBins;

    static void ClassifyKernel(ArrayView<float> entropies, ArrayView<float> mask, int length, ArrayView<int> quantileIndex,
        ArrayView<float> quantileFraction, int strictGreater, ArrayView<float> thresholds, ArrayView<int> classes)
    {
        var sharedI = SharedMemory.Allocate<int>(RowReduce.MaxWarps);
        var histogram = SharedMemory.Allocate<int>(SelectSlots);
        int row = Grid.IdxX;
        long start = (long)row * length;
        var h = entropies.SubView(start, length);
        var m = mask.SubView(start, length);

        int n = 0;
        for (int t = Group.IdxX; t < length; t += Group.DimX) if (m[t] > 0) n++;
        n = RowReduce.GroupSum(n, sharedI);

        float tau = float.NaN;
        if (n > 0)   // uniform across the group, so the barriers inside are reached by all
        {
            int lo = quantileIndex[n];
            double frac = (double)quantileFraction[2 * n] + quantileFraction[2 * n + 1];
            int hi = lo + 1 < n ? lo + 1 : n - 1;
            float a = PolicyMath.FromOrderKey(SelectKey(h, m, lo, histogram));
            float b = hi == lo ? a : PolicyMath.FromOrderKey(SelectKey(h, m, hi, histogram));
            tau = PolicyMath.QuantileLerp(a, b, frac);
        }
        if (Group.IdxX == 0) thresholds[row] = tau;
        for (int t = Group.IdxX; t < length; t += Group.DimX)
            classes[start + t] = PolicyMath.ClassOf(h[t], m[t], tau, strictGreater != 0);
    }

    /// <summary>
    /// The key of the k-th smallest (0-based) valid entropy: per pass, a shared histogram of the next 8-bit
    /// digit among valid keys sharing the prefix chosen so far; every thread walks the bins upward to the
    /// digit where the count below passes k. Slot p % 3 is filled in pass p while p + 1's is cleared; the
    /// one read in pass p − 1 is left alone until pass p + 1, after another barrier.
    /// </summary>
    static uint SelectKey(ArrayView<float> h, ArrayView<float> m, int k, ArrayView<int> histogram)
    {
        Group.Barrier();   // a previous select may still be walking slot 0
        for (int b = Group.IdxX; b < SelectBins; b += Group.DimX) histogram[b] = 0;
        Group.Barrier();
        uint prefix = 0, prefixMask = 0;
        int below = 0;
        for (int pass = 0; pass < 4; pass++)
        {
            int shift = 24 - 8 * pass;
            int current = pass % 3 * SelectBins, next = (pass + 1) % 3 * SelectBins;
            int runDigit = -1, run = 0;
            for (int t = Group.IdxX; t < (int)h.Length; t += Group.DimX)
            {
                if (!(m[t] > 0)) continue;
                uint key = SamplingMath.OrderKey(h[t]);
                if ((key & prefixMask) != prefix) continue;
                int digit = (int)((key >> shift) & (SelectBins - 1));
                if (digit != runDigit)
                {
                    if (runDigit >= 0) Atomic.Add(ref histogram[current + runDigit], run);
                    runDigit = digit; run = 0;
                }
                run++;
            }
            if (runDigit >= 0) Atomic.Add(ref histogram[current + runDigit], run);
            for (int b = Group.IdxX; b < SelectBins; b += Group.DimX) histogram[next + b] = 0;
            Group.Barrier();

            int chosen = 0;
            for (; chosen < SelectBins - 1; chosen++)
            {
                int bin = histogram[current + chosen];
                if (below + bin > k) break;
                below += bin;
            }
            prefix |= (uint)chosen << shift;
            prefixMask |= (uint)(SelectBins - 1) << shift;
        }
        return prefix;
    }

    // ------------------------------------------------------------------ policy loss

    protected override void PolicyLossForwardBackwardCore(Buf<float> logProbs, Buf<float> oldLogProbs, Buf<float> refLogProbs,
        Buf<float> advantages, Buf<float> mask, Buf<int> classes, int R, int T, in PolicyLossParameters parameters,
        Buf<float> dLogProbs, Buf<float> stats)
    {
        long n = (long)R * T;
        if (n == 0) { Zero(stats); return; }
        bool hasKl = !refLogProbs.IsEmpty, hasClasses = !classes.IsEmpty;
        if (policyRows is null || policyRows.Length < (long)R * PolicyMath.RowSlots)
        {
            policyRows?.Dispose();
            policyRows = Allocate<float>((long)R * PolicyMath.RowSlots);
        }
        noClasses ??= Allocate<int>(1);
        var rows = policyRows.All.View;
        // Absent inputs are never read (the flags say so); some valid view of the right type stands in.
        var rf = hasKl ? refLogProbs.View : logProbs.View;
        var cls = hasClasses ? classes.View : noClasses.All.View;

        policyRowKernel ??= Accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
            ArrayView<float>, ArrayView<int>, int, int, int, PolicyLossParameters, ArrayView<float>>(PolicyRowKernel);
        policyTotalsKernel ??= Accelerator.LoadStreamKernel<ArrayView<float>, int, PolicyLossParameters, ArrayView<float>>(PolicyTotalsKernel);
        policyGradientKernel ??= Accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
            ArrayView<float>, ArrayView<int>, int, int, int, int, PolicyLossParameters, ArrayView<float>, ArrayView<float>>(PolicyGradientKernel);

        policyRowKernel(new KernelConfig(R, RowGroupSize(T)), logProbs.View, oldLogProbs.View, rf, advantages.View, mask.View, cls,
            T, hasKl ? 1 : 0, hasClasses ? 1 : 0, parameters, rows);
        policyTotalsKernel(new KernelConfig(1, RowGroupSize(R)), rows, R, parameters, stats.View);
        policyGradientKernel(Linear(n), logProbs.View, oldLogProbs.View, rf, advantages.View, mask.View, cls,
            (int)n, T, hasKl ? 1 : 0, hasClasses ? 1 : 0, parameters, rows, dLogProbs.View);
    }

    protected override void GroupAdvantagesCore(Buf<float> rewards, Buf<float> mask, int R, int T, int groupSize,
        PolicyAdvantageEstimator estimator, double epsilon, Buf<float> advantages)
    {
        long n = (long)R * T;
        groupAdvantagesKernel ??= Accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, int, int, int, PolicyAdvantageEstimator, float,
            ArrayView<float>>(GroupAdvantagesKernel);
        // ε as float32: a float64 kernel argument does not arrive intact under CUDA's Fast32BitOnly.
        groupAdvantagesKernel(Linear(n), rewards.View, mask.View, (int)n, T, groupSize, estimator, (float)epsilon, advantages.View);
    }

    /// <summary>One thread per token: its group's sums (G reads twice; G is small), its row's advantage, the mask.</summary>
    static void GroupAdvantagesKernel(ArrayView<float> rewards, ArrayView<float> mask, int n, int T, int groupSize,
        PolicyAdvantageEstimator estimator, float epsilon, ArrayView<float> advantages)
    {
        int index = Grid.GlobalIndex.X;
        if (index >= n) return;
        if (!(mask[index] > 0)) { advantages[index] = 0f; return; }
        int row = index / T, start = row / groupSize * groupSize;
        double sum = 0, squares = 0;
        for (int j = 0; j < groupSize; j++) sum += rewards[start + j];
        double mean = sum / groupSize;
        for (int j = 0; j < groupSize; j++) squares += (rewards[start + j] - mean) * (rewards[start + j] - mean);
        advantages[index] = (float)PolicyMath.GroupAdvantage(estimator, rewards[row], sum, squares, groupSize, epsilon);
    }

    static void PolicyRowKernel(ArrayView<float> logProbs, ArrayView<float> oldLogProbs, ArrayView<float> refLogProbs,
        ArrayView<float> advantages, ArrayView<float> mask, ArrayView<int> classes, int T, int hasKl, int hasClasses,
        PolicyLossParameters p, ArrayView<float> rows)
    {
        var shared = SharedMemory.Allocate<float>(PolicyMath.RowSumSlots * RowReduce.MaxWarps);
        int row = Grid.IdxX;
        long start = (long)row * T;
        var sums = new PolicyMath.RowSums();
        for (int t = Group.IdxX; t < T; t += Group.DimX)
        {
            long n = start + t;
            float mk = mask[n];
            if (!(mk > 0)) continue;
            var terms = PolicyMath.Evaluate(p, logProbs[n], oldLogProbs[n], refLogProbs[hasKl != 0 ? n : 0], advantages[n],
                hasClasses != 0 ? classes[n] : PolicyMath.ClassLow, hasClasses != 0, hasKl != 0);
            sums.Add(terms, mk, logProbs[n], oldLogProbs[n], hasKl != 0);
        }
        int warp = Group.IdxX / Warp.WarpSize, warps = Group.DimX / Warp.WarpSize;
        for (int s = 0; s < PolicyMath.RowSumSlots; s++)
        {
            float v = RowReduce.WarpSum((float)sums.Get(s));
            if (Warp.LaneIdx == 0) shared[s * RowReduce.MaxWarps + warp] = v;
        }
        Group.Barrier();
        for (int s = Group.IdxX; s < PolicyMath.RowSumSlots; s += Group.DimX)
        {
            float total = 0;
            for (int w = 0; w < warps; w++) total += shared[s * RowReduce.MaxWarps + w];
            rows[(long)row * PolicyMath.RowSlots + s] = total;
        }
    }

    /// <summary>Values the totals kernel sums before the scales are known: mask, ppo-kl, the 8 counts.</summary>
    const int FirstTotals = 2 + PolicyMath.RowCountSlots;

    static void PolicyTotalsKernel(ArrayView<float> rows, int R, PolicyLossParameters p, ArrayView<float> stats)
    {
        var shared = SharedMemory.Allocate<float>(FirstTotals * RowReduce.MaxWarps);
        int warp = Group.IdxX / Warp.WarpSize, warps = Group.DimX / Warp.WarpSize;

        for (int k = 0; k < FirstTotals; k++)
        {
            int slot = k == 0 ? PolicyMath.RowMask : k == 1 ? PolicyMath.RowPpoKl : PolicyMath.RowCounts + k - 2;
            float v = 0;
            for (int i = Group.IdxX; i < R; i += Group.DimX) v += rows[(long)i * PolicyMath.RowSlots + slot];
            v = RowReduce.WarpSum(v);
            if (Warp.LaneIdx == 0) shared[k * RowReduce.MaxWarps + warp] = v;
        }
        Group.Barrier();
        float ownMask = 0;
        for (int w = 0; w < warps; w++) ownMask += shared[w];
        float totalMask = (float)PolicyMath.MaskTotal(p, ownMask);
        if (Group.IdxX == 0)
        {
            stats[PolicyLossStats.MaskSum] = ownMask;
            float ppo = 0;
            for (int w = 0; w < warps; w++) ppo += shared[RowReduce.MaxWarps + w];
            stats[PolicyLossStats.PpoKl] = totalMask > 0 ? ppo / totalMask : 0f;
            for (int c = 0; c < PolicyMath.RowCountSlots; c++)
            {
                float count = 0;
                for (int w = 0; w < warps; w++) count += shared[(2 + c) * RowReduce.MaxWarps + w];
                stats[PolicyLossStats.Tokens + c] = count;
            }
        }
        Group.Barrier();   // the shared partials are reused below

        float policy = 0, klWeighted = 0, klLow = 0, klHigh = 0;
        for (int i = Group.IdxX; i < R; i += Group.DimX)
        {
            var r = rows.SubView((long)i * PolicyMath.RowSlots, PolicyMath.RowSlots);
            var s = PolicyMath.Scales(p, r[PolicyMath.RowMask], r[PolicyMath.RowLowMask], r[PolicyMath.RowHighMask], totalMask);
            r[PolicyMath.RowPolicyScale] = (float)s.Policy;
            r[PolicyMath.RowLowKlScale] = (float)s.LowKl;
            r[PolicyMath.RowHighKlScale] = (float)s.HighKl;
            var terms = PolicyMath.Terms(p, s, r[PolicyMath.RowPolicy], r[PolicyMath.RowKlWeightedLow], r[PolicyMath.RowKlWeightedHigh],
                r[PolicyMath.RowKlLow], r[PolicyMath.RowKlHigh]);
            policy += (float)terms.Policy; klWeighted += (float)terms.KlWeighted; klLow += (float)terms.KlLow; klHigh += (float)terms.KlHigh;
        }
        policy = RowReduce.WarpSum(policy); klWeighted = RowReduce.WarpSum(klWeighted);
        klLow = RowReduce.WarpSum(klLow); klHigh = RowReduce.WarpSum(klHigh);
        if (Warp.LaneIdx == 0)
        {
            shared[warp] = policy;
            shared[RowReduce.MaxWarps + warp] = klWeighted;
            shared[2 * RowReduce.MaxWarps + warp] = klLow;
            shared[3 * RowReduce.MaxWarps + warp] = klHigh;
        }
        Group.Barrier();
        if (Group.IdxX == 0)
        {
            float pt = 0, kt = 0, kl = 0, kh = 0;
            for (int w = 0; w < warps; w++)
            {
                pt += shared[w]; kt += shared[RowReduce.MaxWarps + w];
                kl += shared[2 * RowReduce.MaxWarps + w]; kh += shared[3 * RowReduce.MaxWarps + w];
            }
            stats[PolicyLossStats.PolicyTerm] = pt;
            stats[PolicyLossStats.KlTerm] = kt;
            stats[PolicyLossStats.KlLow] = kl;
            stats[PolicyLossStats.KlHigh] = kh;
            stats[PolicyLossStats.Loss] = pt + kt;
        }
    }

    static void PolicyGradientKernel(ArrayView<float> logProbs, ArrayView<float> oldLogProbs, ArrayView<float> refLogProbs,
        ArrayView<float> advantages, ArrayView<float> mask, ArrayView<int> classes, int n, int T, int hasKl, int hasClasses,
        PolicyLossParameters p, ArrayView<float> rows, ArrayView<float> dLogProbs)
    {
        int index = Grid.GlobalIndex.X;
        if (index >= n) return;
        float mk = mask[index];
        if (!(mk > 0)) { dLogProbs[index] = 0f; return; }
        var terms = PolicyMath.Evaluate(p, logProbs[index], oldLogProbs[index], refLogProbs[hasKl != 0 ? index : 0], advantages[index],
            hasClasses != 0 ? classes[index] : PolicyMath.ClassLow, hasClasses != 0, hasKl != 0);
        long r = (long)(index / T) * PolicyMath.RowSlots;
        float klScale = terms.StatClass == 1 ? rows[r + PolicyMath.RowHighKlScale] : rows[r + PolicyMath.RowLowKlScale];
        dLogProbs[index] = PolicyMath.TokenGradient((double)mk * rows[r + PolicyMath.RowPolicyScale], terms.PolicyWeight,
            terms.Surrogate.Gradient, hasKl != 0, (double)mk * klScale, terms.KlWeight, terms.Kl.Gradient);
    }
}
