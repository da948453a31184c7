using ILGPU;
using ILGPU.Runtime;

namespace ArcherIlgpu.Kernels;

/// <summary>
/// The sampler kernel: one group per row. The top-k and top-p thresholds are found by a radix select on
/// the order key (<see cref="SamplingMath.OrderKey"/>), 8 bits per pass, over shared histograms of
/// counts (top-k) or of exact fixed-point masses (top-p): integer sums, so the result is independent of
/// thread order and equals the managed sampler's select. The draw is a Gumbel-max race (a group argmax).
/// </summary>
public sealed partial class IlgpuBackend
{
    Action<KernelConfig, ArrayView<float>, ArrayView<int>, ArrayView<int>, int, float, int, int, float, ulong,
        ArrayView<int>, ArrayView<float>>? sampleKernel;

    protected override void SampleCore(Buf<float> logits, Buf<int> rows, Buf<int> positions, int N, int V,
        float temperature, int topK, float topP, ulong seed, Buf<int> tokens, Buf<float> logProbs)
    {
        float invT = CpuBackend.InverseTemperature(temperature);
        if (N == 0) return;
        sampleKernel ??= Accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<int>, ArrayView<int>, int, float, int,
            int, float, ulong, ArrayView<int>, ArrayView<float>>(SampleKernel);
        sampleKernel(new KernelConfig(N, RowGroupSize(V)), logits.View, rows.View, positions.View, V, invT,
            temperature == 0f ? 1 : 0, topK, topP, seed, tokens.View, logProbs.View);
    }

    static void SampleKernel(ArrayView<float> logits, ArrayView<int> rows, ArrayView<int> positions, int V, float invT,
        int greedy, int topK, float topP, ulong seed, ArrayView<int> tokens, ArrayView<float> logProbs)
    {
        var sharedF = SharedMemory.Allocate<float>(RowReduce.MaxWarps);
        var sharedI = SharedMemory.Allocate<int>(RowReduce.MaxWarps);
        var sharedL = SharedMemory.Allocate<long>(RowReduce.MaxWarps);
        var histogram = SharedMemory.Allocate<long>(HistogramSlots);
        int n = Grid.IdxX;
        var z = logits.SubView((long)n * V, V);

        float max = float.NegativeInfinity; int argMax = int.MaxValue;
        for (int v = Group.IdxX; v < V; v += Group.DimX)
            if (z[v] > max || (argMax == int.MaxValue && z[v] == max)) { max = z[v]; argMax = v; }
        RowReduce.GroupArgMax(ref max, ref argMax, sharedF, sharedI);

        int token = argMax;
        if (greedy == 0)
        {
            uint minKey = 0;
            if (topK > 0 && topK < V) minKey = TopKKey(z, topK, histogram);
            if (topP < 1f)
            {
                uint nucleusKey = NucleusKey(z, max, invT, minKey, topP, sharedL, histogram);
                if (nucleusKey > minKey) minKey = nucleusKey;
            }
            token = GumbelRace(z, max, invT, minKey, seed, rows[n], positions[n], sharedF, sharedI);
        }

        float sum = 0f;
        for (int v = Group.IdxX; v < V; v += Group.DimX) sum += MathF.Exp(SamplingMath.Scaled(z[v], max, invT));
        sum = RowReduce.GroupSum(sum, sharedF);
        if (Group.IdxX == 0)
        {
            bool found = token != int.MaxValue;   // not found only if every logit is NaN
            tokens[n] = found ? token : -1;
            logProbs[n] = found ? SamplingMath.Scaled(z[token], max, invT) - MathF.Log(sum) : float.NaN;
        }
    }

    Action<KernelConfig, ArrayView<int>, ArrayView<float>, int, int, int, int, ArrayView<int>, ArrayView<int>, ArrayView<int>,
        ArrayView<int>, ArrayView<float>, ArrayView<int>, ArrayView<int>, ArrayView<int>>? recordSamplesKernel;

    protected override void RecordSamplesCore(Buf<int> sampled, Buf<float> sampledLogProbs, int B, int maxNew, int maxT, int endToken,
        Buf<int> status, Buf<int> counts, Buf<int> lengths, Buf<int> outTokens, Buf<float> outLogProbs,
        Buf<int> nextTokens, Buf<int> nextPositions, Buf<int> samplePositions)
    {
        recordSamplesKernel ??= Accelerator.LoadStreamKernel<ArrayView<int>, ArrayView<float>, int, int, int, int, ArrayView<int>,
            ArrayView<int>, ArrayView<int>, ArrayView<int>, ArrayView<float>, ArrayView<int>, ArrayView<int>, ArrayView<int>>(RecordSamplesKernel);
        recordSamplesKernel(Linear(B), sampled.View, sampledLogProbs.View, B, maxNew, maxT, endToken, status.View, counts.View,
            lengths.View, outTokens.View, outLogProbs.View, nextTokens.View, nextPositions.View, samplePositions.View);
    }

    /// <summary>One thread per row: <see cref="GenerationMath.Advance"/>, then the row's next decode input and draw position.</summary>
    static void RecordSamplesKernel(ArrayView<int> sampled, ArrayView<float> sampledLogProbs, int B, int maxNew, int maxT, int endToken,
        ArrayView<int> status, ArrayView<int> counts, ArrayView<int> lengths, ArrayView<int> outTokens, ArrayView<float> outLogProbs,
        ArrayView<int> nextTokens, ArrayView<int> nextPositions, ArrayView<int> samplePositions)
    {
        int b = Grid.GlobalIndex.X;
        if (b >= B) return;
        int token = sampled[b], st = status[b], count = counts[b], length = lengths[b];
        int slot = GenerationMath.Advance(token, maxNew, maxT, endToken, ref st, ref count, ref length);
        if (slot >= 0)
        {
            outTokens[(long)b * maxNew + slot] = token;
            outLogProbs[(long)b * maxNew + slot] = sampledLogProbs[b];
        }
        status[b] = st; counts[b] = count; lengths[b] = length;
        nextTokens[b] = Math.Max(token, 0);
        nextPositions[b] = GenerationMath.DecodePosition(length, maxT);
        samplePositions[b] = GenerationMath.SamplePosition(length, maxT);
    }

    /// <summary>Bits of the order key settled per select pass, and the histogram bins that takes.</summary>
    const int DigitBits = 8, DigitBins = 1 << DigitBits;

    /// <summary>Shared histogram slots: three rotating buffers, so one barrier per pass suffices.</summary>
    const int HistogramSlots = 3 * DigitBins;

    /// <summary>The largest key with at least k logits at or above it: the k-th largest logit's key.</summary>
    static uint TopKKey(ArrayView<float> z, int k, ArrayView<long> histogram)
        => SelectThresholdKey(z, 0f, 1f, 0u, false, k, histogram);

    /// <summary>
    /// The largest key whose fixed-point mass at or above it, among tokens allowed by top-k (key ≥ minKey),
    /// reaches topP of their total.
    /// </summary>
    static uint NucleusKey(ArrayView<float> z, float max, float invT, uint minKey, float topP,
        ArrayView<long> sharedL, ArrayView<long> histogram)
    {
        long total = 0;
        for (int v = Group.IdxX; v < (int)z.Length; v += Group.DimX)
            if (SamplingMath.OrderKey(z[v]) >= minKey) total += SamplingMath.FixedMass(SamplingMath.Scaled(z[v], max, invT));
        double target = SamplingMath.NucleusTarget(RowReduce.GroupSum(total, sharedL), topP);
        return SelectThresholdKey(z, max, invT, minKey, true, target, histogram);
    }

    /// <summary>
    /// Radix select: the largest key θ with Σ weight over tokens with key ≥ max(θ, floorKey) reaching
    /// target, where the weight is 1 (a count) or the token's fixed-point mass. Per pass, a shared histogram
    /// of the next 8-bit digit among tokens sharing the prefix chosen so far; every thread then walks the
    /// bins from the top and picks the digit where the mass above reaches the target. The histogram
    /// buffers rotate through three slots: the one cleared in pass p was last read in pass p − 2, and
    /// pass p − 1's barrier lies between. Each thread adds a run of equal digits at once, which keeps the
    /// shared atomics few in the early passes, where almost all logits share a digit.
    /// </summary>
    static uint SelectThresholdKey(ArrayView<float> z, float max, float invT, uint floorKey, bool weighByMass,
        double target, ArrayView<long> histogram)
    {
        for (int b = Group.IdxX; b < DigitBins; b += Group.DimX) histogram[b] = 0;
        Group.Barrier();
        uint prefix = 0, prefixMask = 0;
        long above = 0;
        for (int pass = 0; pass < 32 / DigitBits; pass++)
        {
            int shift = 32 - DigitBits * (pass + 1);
            int current = pass % 3 * DigitBins, next = (pass + 1) % 3 * DigitBins;
            int runDigit = -1; long run = 0;
            for (int v = Group.IdxX; v < (int)z.Length; v += Group.DimX)
            {
                uint key = SamplingMath.OrderKey(z[v]);
                if ((key & prefixMask) != prefix || key < floorKey) continue;
                int digit = (int)((key >> shift) & (DigitBins - 1));
                if (digit != runDigit)
                {
                    if (runDigit >= 0) Atomic.Add(ref histogram[current + runDigit], run);
                    runDigit = digit; run = 0;
                }
                run += weighByMass ? SamplingMath.FixedMass(SamplingMath.Scaled(z[v], max, invT)) : 1L;
            }
            if (runDigit >= 0) Atomic.Add(ref histogram[current + runDigit], run);
            for (int b = Group.IdxX; b < DigitBins; b += Group.DimX) histogram[next + b] = 0;
            Group.Barrier();

            int chosen = DigitBins - 1;
            for (; chosen > 0; chosen--)
            {
                long bin = histogram[current + chosen];
                if (above + bin >= target) break;
                above += bin;
            }
            prefix |= (uint)chosen << shift;
            prefixMask |= (uint)(DigitBins - 1) << shift;
        }
        return prefix;
    }

    /// <summary>argmax over allowed tokens (key ≥ minKey) of the Gumbel key; the lowest id wins exact ties.</summary>
    static int GumbelRace(ArrayView<float> z, float max, float invT, uint minKey, ulong seed, int rowId, int position,
        ArrayView<float> sharedF, ArrayView<int> sharedI)
    {
        float best = float.NegativeInfinity; int bestToken = int.MaxValue;
        for (int v = Group.IdxX; v < (int)z.Length; v += Group.DimX)
        {
            if (SamplingMath.OrderKey(z[v]) < minKey) continue;
            float scaled = SamplingMath.Scaled(z[v], max, invT);
            if (scaled + SamplingMath.MaxGumbel < best) continue;   // cannot beat this thread's best: skip the RNG and two logs
            float key = SamplingMath.GumbelKey(scaled, seed, rowId, position, v);
            if (key > best || (bestToken == int.MaxValue && key == best)) { best = key; bestToken = v; }
        }
        RowReduce.GroupArgMax(ref best, ref bestToken, sharedF, sharedI);
        return bestToken;
    }
}
