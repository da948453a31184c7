using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace ArcherIlgpu.Kernels;

/// <summary>
/// Classifier head kernels: one group per row, threads striding over the vocabulary so that a warp
/// reads consecutive logits. The forward statistics come from a single read of the row with an online
/// (running max, rescaled sum) per thread, combined across the group; a gradient row is then written in
/// a second pass. All reads of a row finish before the last barrier of its reductions, and each thread
/// writes only the elements it read, which makes in-place gradients (dLogits == logits) safe.
/// </summary>
public sealed partial class IlgpuBackend
{
    Action<KernelConfig, ArrayView<float>, ArrayView<int>, ArrayView<float>, int, ArrayView<float>, ArrayView<float>, int>? crossEntropyKernel;
    Action<KernelConfig, ArrayView<float>, ArrayView<int>, int, float, ArrayView<float>, ArrayView<float>>? logProbEntropyKernel;
    Action<KernelConfig, ArrayView<float>, ArrayView<int>, ArrayView<float>, int, float, ArrayView<float>>? logProbBackwardKernel;

    /// <summary>"Empty" for a running max: finite, so that rescaling by exp(empty − m) gives 0 instead of 0·∞.</summary>
    const float EmptyMax = -float.MaxValue;

    protected override void CrossEntropyForwardBackwardCore(Buf<float> logits, Buf<int> targets, Buf<float> weights,
        int N, int V, Buf<float> losses, Buf<float> dLogits)
    {
        if (N == 0) return;
        crossEntropyKernel ??= Accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<int>, ArrayView<float>, int,
            ArrayView<float>, ArrayView<float>, int>(CrossEntropyKernel);
        bool grad = !dLogits.IsEmpty;
        // Without a gradient the kernel never touches its dLogits argument; logits stands in for it.
        crossEntropyKernel(new KernelConfig(N, RowGroupSize(V)), logits.View, targets.View, weights.View, V,
            losses.View, grad ? dLogits.View : logits.View, grad ? 1 : 0);
    }

    static void CrossEntropyKernel(ArrayView<float> logits, ArrayView<int> targets, ArrayView<float> weights, int V,
        ArrayView<float> losses, ArrayView<float> dLogits, int grad)
    {
        var shared = SharedMemory.Allocate<float>(RowReduce.MaxWarps);
        int row = Grid.IdxX;
        long rowStart = (long)row * V;
        float weight = weights[row];
        if (weight == 0f)   // uniform across the group, so no thread misses a barrier
        {
            if (grad != 0)
                for (int v = Group.IdxX; v < V; v += Group.DimX) dLogits[rowStart + v] = 0f;
            if (Group.IdxX == 0) losses[row] = 0f;
            return;
        }
        int target = targets[row];
        bool inRange = (uint)target < (uint)V;
        float zTarget = inRange ? logits[rowStart + target] : float.NaN;   // before anything is written

        float max = EmptyMax, sum = 0f;
        for (int v = Group.IdxX; v < V; v += Group.DimX)
        {
            float z = logits[rowStart + v];
            if (z > max) { sum = sum * XMath.Exp(max - z) + 1f; max = z; }
            else sum += XMath.Exp(z - max);
        }
        float rowMax = RowReduce.GroupMax(max, shared);
        float rowSum = RowReduce.GroupSum(sum * XMath.Exp(max - rowMax), shared);

        if (Group.IdxX == 0) losses[row] = weight * (rowMax + XMath.Log(rowSum) - zTarget);
        if (grad == 0) return;
        float scale = weight / rowSum;
        for (int v = Group.IdxX; v < V; v += Group.DimX)
        {
            float p = XMath.Exp(logits[rowStart + v] - rowMax) * scale;
            dLogits[rowStart + v] = v == target ? p - weight : p;
        }
    }

    protected override void TokenLogProbEntropyCore(Buf<float> logits, Buf<int> tokens, int N, int V, float temperature,
        Buf<float> logProbs, Buf<float> entropies)
    {
        float invT = CpuBackend.InverseTemperature(temperature);
        if (N == 0) return;
        logProbEntropyKernel ??= Accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<int>, int, float,
            ArrayView<float>, ArrayView<float>>(LogProbEntropyKernel);
        logProbEntropyKernel(new KernelConfig(N, RowGroupSize(V)), logits.View, tokens.View, V, invT,
            logProbs.View, entropies.View);
    }

    /// <summary>
    /// Per thread, online over x = z·invT: m (running max), S = Σ exp(x − m), A = Σ exp(x − m)(x − m).
    /// Raising m to m' rescales S by c = exp(m − m') and A to c(A + S(m − m')). Across the group the same
    /// rescale brings every thread to the row max M; then log p[token] = x[token] − M − log S and
    /// H = log S − A / S.
    /// </summary>
    static void LogProbEntropyKernel(ArrayView<float> logits, ArrayView<int> tokens, int V, float invT,
        ArrayView<float> logProbs, ArrayView<float> entropies)
    {
        var shared = SharedMemory.Allocate<float>(RowReduce.MaxWarps);
        int row = Grid.IdxX;
        long rowStart = (long)row * V;
        float max = EmptyMax, sum = 0f, weighted = 0f;
        for (int v = Group.IdxX; v < V; v += Group.DimX)
        {
            float x = logits[rowStart + v] * invT;
            if (x > max)
            {
                float c = XMath.Exp(max - x);
                weighted = c * (weighted + sum * (max - x));
                sum = sum * c + 1f;
                max = x;
            }
            else
            {
                float e = XMath.Exp(x - max);
                sum += e;
                weighted += e > 0f ? e * (x - max) : 0f;   // a masked −∞ logit adds 0, not 0·(−∞)
            }
        }
        float rowMax = RowReduce.GroupMax(max, shared);
        float c0 = XMath.Exp(max - rowMax);
        float rowSum = RowReduce.GroupSum(sum * c0, shared);
        float rowWeighted = RowReduce.GroupSum(c0 > 0f ? c0 * (weighted + sum * (max - rowMax)) : 0f, shared);
        if (Group.IdxX == 0)
        {
            float logSum = XMath.Log(rowSum);
            int token = tokens[row];
            logProbs[row] = (uint)token < (uint)V ? logits[rowStart + token] * invT - rowMax - logSum : float.NaN;
            entropies[row] = logSum - rowWeighted / rowSum;
        }
    }

    protected override void TokenLogProbBackwardCore(Buf<float> logits, Buf<int> tokens, Buf<float> dLogProbs,
        int N, int V, float temperature, Buf<float> dLogits)
    {
        float invT = CpuBackend.InverseTemperature(temperature);
        if (N == 0) return;
        logProbBackwardKernel ??= Accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<int>, ArrayView<float>, int,
            float, ArrayView<float>>(LogProbBackwardKernel);
        logProbBackwardKernel(new KernelConfig(N, RowGroupSize(V)), logits.View, tokens.View, dLogProbs.View, V, invT,
            dLogits.View);
    }

    static void LogProbBackwardKernel(ArrayView<float> logits, ArrayView<int> tokens, ArrayView<float> dLogProbs, int V,
        float invT, ArrayView<float> dLogits)
    {
        var shared = SharedMemory.Allocate<float>(RowReduce.MaxWarps);
        int row = Grid.IdxX;
        long rowStart = (long)row * V;
        float g = dLogProbs[row];
        if (g == 0f)   // padding or masked token: zero gradient, token not read
        {
            for (int v = Group.IdxX; v < V; v += Group.DimX) dLogits[rowStart + v] = 0f;
            return;
        }
        float max = EmptyMax, sum = 0f;
        for (int v = Group.IdxX; v < V; v += Group.DimX)
        {
            float x = logits[rowStart + v] * invT;
            if (x > max) { sum = sum * XMath.Exp(max - x) + 1f; max = x; }
            else sum += XMath.Exp(x - max);
        }
        float rowMax = RowReduce.GroupMax(max, shared);
        float rowSum = RowReduce.GroupSum(sum * XMath.Exp(max - rowMax), shared);
        int token = tokens[row];
        float scale = g * invT;
        float pScale = (uint)token < (uint)V ? -scale / rowSum : float.NaN;
        for (int v = Group.IdxX; v < V; v += Group.DimX)
        {
            float d = XMath.Exp(logits[rowStart + v] * invT - rowMax) * pScale;
            dLogits[rowStart + v] = v == token ? d + scale : d;
        }
    }
}
