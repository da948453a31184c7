using ILGPU;
using ILGPU.Runtime;

namespace ArcherIlgpu.Kernels;

/// <summary>
/// The sampler kernel: one group per row. The top-k and top-p thresholds are found by bisection on the
/// 32 bits of the order key (<see cref="SamplingMath.OrderKey"/>): bit by bit from the top, keep a bit if
/// the mass at or above the candidate still reaches the target. Every step is a group reduction of a
/// count (top-k) or of exact fixed-point masses (top-p), so the result is independent of thread order and
/// equals the managed sampler's radix select. The draw is a Gumbel-max race (a group argmax).
/// </summary>
public sealed partial class IlgpuBackend
{
    Action<KernelConfig, ArrayView<float>, ArrayView<int>, ArrayView<int>, int, float, int, int, float, ulong,
        ArrayView<int>, ArrayView<float>>? sampleKernel;

    public override void Sample(Buf<float> logits, Buf<int> rows, Buf<int> positions, int N, int V,
        float temperature, int topK, float topP, ulong seed, Buf<int> tokens, Buf<float> logProbs)
    {
        float invT = CpuBackend.SampleInverseTemperature(temperature);
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
            if (topK > 0 && topK < V) minKey = TopKKey(z, topK, sharedI);
            if (topP < 1f)
            {
                uint nucleusKey = NucleusKey(z, max, invT, minKey, topP, sharedL);
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

    /// <summary>The largest key with at least k logits at or above it: the k-th largest logit's key.</summary>
    static uint TopKKey(ArrayView<float> z, int k, ArrayView<int> shared)
    {
        uint prefix = 0;
        for (int bit = 31; bit >= 0; bit--)
        {
            uint candidate = prefix | (1u << bit);
            int count = 0;
            for (int v = Group.IdxX; v < (int)z.Length; v += Group.DimX)
                if (SamplingMath.OrderKey(z[v]) >= candidate) count++;
            if (RowReduce.GroupSum(count, shared) >= k) prefix = candidate;
        }
        return prefix;
    }

    /// <summary>
    /// The largest key whose fixed-point mass at or above it, among tokens allowed by top-k (key ≥ minKey),
    /// reaches topP of their total.
    /// </summary>
    static uint NucleusKey(ArrayView<float> z, float max, float invT, uint minKey, float topP, ArrayView<long> shared)
    {
        long total = 0;
        for (int v = Group.IdxX; v < (int)z.Length; v += Group.DimX)
            if (SamplingMath.OrderKey(z[v]) >= minKey) total += SamplingMath.FixedMass(SamplingMath.Scaled(z[v], max, invT));
        double target = SamplingMath.NucleusTarget(RowReduce.GroupSum(total, shared), topP);

        uint prefix = 0;
        for (int bit = 31; bit >= 0; bit--)
        {
            uint candidate = prefix | (1u << bit);
            uint floor = candidate > minKey ? candidate : minKey;
            long mass = 0;
            for (int v = Group.IdxX; v < (int)z.Length; v += Group.DimX)
                if (SamplingMath.OrderKey(z[v]) >= floor) mass += SamplingMath.FixedMass(SamplingMath.Scaled(z[v], max, invT));
            if (RowReduce.GroupSum(mass, shared) >= target) prefix = candidate;
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
            float key = SamplingMath.GumbelKey(SamplingMath.Scaled(z[v], max, invT), seed, rowId, position, v);
            if (key > best || (bestToken == int.MaxValue && key == best)) { best = key; bestToken = v; }
        }
        RowReduce.GroupArgMax(ref best, ref bestToken, sharedF, sharedI);
        return bestToken;
    }
}
