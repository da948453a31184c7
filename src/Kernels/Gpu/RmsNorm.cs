using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace ArcherIlgpu.Kernels;

// RMSNorm and Qwen3's QK-norm are one set of kernels over "segments": a row of the buffer is
// segsTotal segments of L floats; the first segsA are normalised with weightA, the next up to
// segsNormed with weightB, the rest are copied (forward) or pass their gradient through (backward).
//   RmsNorm: L = C, one segment per row, weightA = weightB = weight.
//   QkNorm:  L = D, segments = H query heads (qWeight), Hkv key heads (kWeight), Hkv value heads.
// rstd has segsNormed entries per row. One group per segment, as LayerNorm has one group per row.
public sealed partial class IlgpuBackend
{
    // dWeight is summed over blocks of this many rows into partials [blocks, L], then the blocks are
    // added in order by one thread per column: deterministic and no float atomics (as in LayerNorm).
    const int RmsNormRowBlock = 32;

    Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, RmsNormSegments, float,
        ArrayView<float>, ArrayView<float>>? rmsNormForwardKernel;
    Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
        RmsNormSegments, int, ArrayView<float>>? rmsNormInputGradKernel;
    Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, RmsNormSegments, int, int, int, int,
        ArrayView<float>>? rmsNormWeightPartialsKernel;
    Action<KernelConfig, ArrayView<float>, int, int, ArrayView<float>>? rmsNormWeightSumKernel;
    DeviceBuffer<float>? rmsNormPartials;

    /// <summary>Where the normalised segments of a row are (see the comment at the top of the file).</summary>
    internal readonly struct RmsNormSegments(int length, int segsA, int segsNormed, int segsTotal)
    {
        public readonly int Length = length, SegsA = segsA, SegsNormed = segsNormed, SegsTotal = segsTotal;
        public int RowLength => SegsTotal * Length;
    }

    protected override void RmsNormForwardCore(Buf<float> input, Buf<float> weight, int N, int C, float eps,
        Buf<float> output, Buf<float> rstd)
    {
        if (N == 0 || C == 0) return;
        LaunchRmsNormForward(input, weight, weight, N, new RmsNormSegments(C, 1, 1, 1), eps, output, rstd);
    }

    protected override void RmsNormBackwardCore(Buf<float> dOutput, Buf<float> input, Buf<float> weight, Buf<float> rstd,
        int N, int C, Buf<float> dInput, Buf<float> dWeight)
    {
        if (N == 0 || C == 0) return;
        var segments = new RmsNormSegments(C, 1, 1, 1);
        LaunchRmsNormInputGrad(dOutput, input, weight, weight, rstd, N, segments, accumulate: true, dInput);
        LaunchRmsNormWeightGrad(dOutput, input, rstd, N, segments, firstSeg: 0, segCount: 1, dWeight);
    }

    protected override void QkNormForwardCore(Buf<float> qkv, Buf<float> qWeight, Buf<float> kWeight, int N, int H, int Hkv, int D,
        float eps, Buf<float> output, Buf<float> rstd)
    {
        var segments = new RmsNormSegments(D, H, H + Hkv, H + 2 * Hkv);
        if (N == 0 || D == 0) return;
        LaunchRmsNormForward(qkv, qWeight, kWeight, N, segments, eps, output, rstd);
    }

    protected override void QkNormBackwardCore(Buf<float> dOutput, Buf<float> qkv, Buf<float> qWeight, Buf<float> kWeight,
        Buf<float> rstd, int N, int H, int Hkv, int D, Buf<float> dQkv, Buf<float> dQWeight, Buf<float> dKWeight)
    {
        var segments = new RmsNormSegments(D, H, H + Hkv, H + 2 * Hkv);
        if (N == 0 || D == 0) return;
        // Weight gradients first: they read dOutput, which dQkv may alias (the backward in place).
        if (H > 0) LaunchRmsNormWeightGrad(dOutput, qkv, rstd, N, segments, firstSeg: 0, segCount: H, dQWeight);
        if (Hkv > 0) LaunchRmsNormWeightGrad(dOutput, qkv, rstd, N, segments, firstSeg: H, segCount: Hkv, dKWeight);
        LaunchRmsNormInputGrad(dOutput, qkv, qWeight, kWeight, rstd, N, segments, accumulate: false, dQkv);
    }

    // ------------------------------------------------------------------ launches

    void LaunchRmsNormForward(Buf<float> input, Buf<float> weightA, Buf<float> weightB, int N, RmsNormSegments segments,
        float eps, Buf<float> output, Buf<float> rstd)
    {
        rmsNormForwardKernel ??= Accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, RmsNormSegments,
            float, ArrayView<float>, ArrayView<float>>(RmsNormForwardKernel);
        rmsNormForwardKernel(new KernelConfig(N * segments.SegsTotal, RowGroupSize(segments.Length)),
            input.View, weightA.View, weightB.View, segments, eps, output.View, rstd.View);
    }

    void LaunchRmsNormInputGrad(Buf<float> dOutput, Buf<float> input, Buf<float> weightA, Buf<float> weightB, Buf<float> rstd,
        int N, RmsNormSegments segments, bool accumulate, Buf<float> dInput)
    {
        rmsNormInputGradKernel ??= Accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
            ArrayView<float>, RmsNormSegments, int, ArrayView<float>>(RmsNormInputGradKernel);
        rmsNormInputGradKernel(new KernelConfig(N * segments.SegsTotal, RowGroupSize(segments.Length)),
            dOutput.View, input.View, weightA.View, weightB.View, rstd.View, segments, accumulate ? 1 : 0, dInput.View);
    }

    /// <summary>dWeight += Σ over rows and over segments firstSeg .. firstSeg + segCount − 1 of dy ⊙ x · rstd.</summary>
    void LaunchRmsNormWeightGrad(Buf<float> dOutput, Buf<float> input, Buf<float> rstd, int N, RmsNormSegments segments,
        int firstSeg, int segCount, Buf<float> dWeight)
    {
        rmsNormWeightPartialsKernel ??= Accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>,
            RmsNormSegments, int, int, int, int, ArrayView<float>>(RmsNormWeightPartialsKernel);
        rmsNormWeightSumKernel ??= Accelerator.LoadStreamKernel<ArrayView<float>, int, int, ArrayView<float>>(RmsNormWeightSumKernel);
        int L = segments.Length;
        int blocks = (N + RmsNormRowBlock - 1) / RmsNormRowBlock;
        long need = (long)blocks * L;
        if (rmsNormPartials is null || rmsNormPartials.Length < need)
        {
            // Only on the first call at a larger size: earlier queued kernels may still read the old buffer.
            if (rmsNormPartials is not null) { Stream.Synchronize(); rmsNormPartials.Dispose(); }
            rmsNormPartials = Allocate<float>(need);
        }
        var partials = rmsNormPartials.All.View;
        var columns = Linear(L);
        rmsNormWeightPartialsKernel(new KernelConfig(new Index3D(columns.GridDim.X, blocks, 1), columns.GroupDim),
            dOutput.View, input.View, rstd.View, segments, N, firstSeg, segCount, RmsNormRowBlock, partials);
        // In stream order, so the k-weight launch reuses the partials only after this sum has read them.
        rmsNormWeightSumKernel(columns, partials, L, blocks, dWeight.View);
    }

    // ------------------------------------------------------------------ kernels

    /// <summary>The weight of a normalised segment: weightA for the first SegsA segments of a row, weightB after.</summary>
    static ArrayView<float> RmsNormSegmentWeight(int seg, RmsNormSegments s, ArrayView<float> weightA, ArrayView<float> weightB)
        => seg < s.SegsA ? weightA : weightB;

    /// <summary>
    /// Group per segment: the sum of squares (one group reduction), then y = (x · rstd) · w.
    /// Segments past SegsNormed are copied. The branch is uniform across the group.
    /// </summary>
    static void RmsNormForwardKernel(ArrayView<float> input, ArrayView<float> weightA, ArrayView<float> weightB,
        RmsNormSegments s, float eps, ArrayView<float> output, ArrayView<float> rstd)
    {
        var warpSums = SharedMemory.Allocate<float>(RowReduce.MaxWarps);
        int row = Grid.IdxX / s.SegsTotal, seg = Grid.IdxX - row * s.SegsTotal;
        long start = (long)row * s.RowLength + (long)seg * s.Length;
        int tid = Group.IdxX, size = Group.DimX, L = s.Length;
        if (seg >= s.SegsNormed)
        {
            for (int c = tid; c < L; c += size) output[start + c] = input[start + c];
            return;
        }
        float squares = 0f;
        for (int c = tid; c < L; c += size) { float x = input[start + c]; squares += x * x; }
        float r = XMath.Rsqrt(RowReduce.GroupSum(squares, warpSums) / L + eps);
        var weight = RmsNormSegmentWeight(seg, s, weightA, weightB);
        for (int c = tid; c < L; c += size) output[start + c] = input[start + c] * r * weight[c];
        if (tid == 0) rstd[(long)row * s.SegsNormed + seg] = r;
    }

    /// <summary>
    /// Group per segment: with g = dy ⊙ w, dx = r g − x · r³ Σ(g ⊙ x) / L (one group reduction), added to
    /// dInput when accumulate is 1 (RMSNorm: the residual stream), written over it otherwise (QK-norm).
    /// Segments past SegsNormed pass dy through. Each thread writes only the elements it read, after the
    /// reduction, so dInput may be dOutput itself.
    /// </summary>
    static void RmsNormInputGradKernel(ArrayView<float> dOutput, ArrayView<float> input, ArrayView<float> weightA,
        ArrayView<float> weightB, ArrayView<float> rstd, RmsNormSegments s, int accumulate, ArrayView<float> dInput)
    {
        var warpSums = SharedMemory.Allocate<float>(RowReduce.MaxWarps);
        int row = Grid.IdxX / s.SegsTotal, seg = Grid.IdxX - row * s.SegsTotal;
        long start = (long)row * s.RowLength + (long)seg * s.Length;
        int tid = Group.IdxX, size = Group.DimX, L = s.Length;
        if (seg >= s.SegsNormed)
        {
            for (int c = tid; c < L; c += size)
                dInput[start + c] = accumulate != 0 ? dInput[start + c] + dOutput[start + c] : dOutput[start + c];
            return;
        }
        var weight = RmsNormSegmentWeight(seg, s, weightA, weightB);
        float r = rstd[(long)row * s.SegsNormed + seg];
        float sumGX = 0f;
        for (int c = tid; c < L; c += size) sumGX += dOutput[start + c] * weight[c] * input[start + c];
        float k = r * r * r * RowReduce.GroupSum(sumGX, warpSums) / L;
        for (int c = tid; c < L; c += size)
        {
            float grad = dOutput[start + c] * weight[c] * r - input[start + c] * k;
            dInput[start + c] = accumulate != 0 ? dInput[start + c] + grad : grad;
        }
    }

    /// <summary>
    /// Thread per (column, row block): coalesced along the columns; rows of the block in order and,
    /// within a row, segments firstSeg .. firstSeg + segCount − 1 in order.
    /// </summary>
    static void RmsNormWeightPartialsKernel(ArrayView<float> dOutput, ArrayView<float> input, ArrayView<float> rstd,
        RmsNormSegments s, int N, int firstSeg, int segCount, int rowsPerBlock, ArrayView<float> partials)
    {
        int c = Grid.IdxX * Group.DimX + Group.IdxX;
        int block = Grid.IdxY;
        if (c >= s.Length) return;
        int end = XMath.Min(N, (block + 1) * rowsPerBlock);
        float dw = 0f;
        for (int n = block * rowsPerBlock; n < end; n++)
            for (int seg = firstSeg; seg < firstSeg + segCount; seg++)
            {
                long i = (long)n * s.RowLength + (long)seg * s.Length + c;
                dw += dOutput[i] * input[i] * rstd[(long)n * s.SegsNormed + seg];
            }
        partials[(long)block * s.Length + c] = dw;
    }

    /// <summary>Thread per column: adds the row-block partials in block order into dWeight.</summary>
    static void RmsNormWeightSumKernel(ArrayView<float> partials, int L, int blocks, ArrayView<float> dWeight)
    {
        int c = Grid.GlobalIndex.X;
        if (c >= L) return;
        float dw = 0f;
        for (int b = 0; b < blocks; b++) dw += partials[(long)b * L + c];
        dWeight[c] += dw;
    }
}
