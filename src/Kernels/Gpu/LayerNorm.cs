using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace ArcherIlgpu.Kernels;

public sealed partial class IlgpuBackend
{
    // dWeight/dBias are summed over blocks of this many rows into partials [blocks, 2, C], then the
    // blocks are added in order by one thread per column: deterministic, no float atomics, and
    // N / 32 x C / 128 groups keep the GPU busy where one thread per column could not.
    const int LayerNormRowBlock = 32;

    Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, float,
        ArrayView<float>, ArrayView<float>, ArrayView<float>>? layerNormForwardKernel;
    Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int,
        ArrayView<float>>? layerNormInputGradKernel;
    Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int,
        ArrayView<float>>? layerNormParamPartialsKernel;
    Action<KernelConfig, ArrayView<float>, int, int, ArrayView<float>, ArrayView<float>>? layerNormParamSumKernel;
    DeviceBuffer<float>? layerNormPartials;

    protected override void LayerNormForwardCore(Buf<float> input, Buf<float> weight, Buf<float> bias,
        int N, int C, float eps, Buf<float> output, Buf<float> mean, Buf<float> rstd)
    {
        if (N == 0 || C == 0) return;
        layerNormForwardKernel ??= Accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, int, float,
            ArrayView<float>, ArrayView<float>, ArrayView<float>>(LayerNormForwardKernel);
        layerNormForwardKernel(new KernelConfig(N, RowGroupSize(C)), input.View, weight.View, bias.View, C, eps,
            output.View, mean.View, rstd.View);
    }

    protected override void LayerNormBackwardCore(Buf<float> dOutput, Buf<float> input, Buf<float> weight,
        Buf<float> mean, Buf<float> rstd, int N, int C,
        Buf<float> dInput, Buf<float> dWeight, Buf<float> dBias)
    {
        if (N == 0 || C == 0) return;
        layerNormInputGradKernel ??= Accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>,
            ArrayView<float>, ArrayView<float>, int, ArrayView<float>>(LayerNormInputGradKernel);
        layerNormParamPartialsKernel ??= Accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>,
            ArrayView<float>, int, int, int, ArrayView<float>>(LayerNormParamPartialsKernel);
        layerNormParamSumKernel ??= Accelerator.LoadStreamKernel<ArrayView<float>, int, int, ArrayView<float>, ArrayView<float>>(
            LayerNormParamSumKernel);

        layerNormInputGradKernel(new KernelConfig(N, RowGroupSize(C)), dOutput.View, input.View, weight.View,
            mean.View, rstd.View, C, dInput.View);

        int blocks = (N + LayerNormRowBlock - 1) / LayerNormRowBlock;
        long need = (long)blocks * 2 * C;
        if (layerNormPartials is null || layerNormPartials.Length < need)
        {
            // Only on the first call at a larger size: earlier queued kernels may still read the old buffer.
            if (layerNormPartials is not null) { Stream.Synchronize(); layerNormPartials.Dispose(); }
            layerNormPartials = Allocate<float>(need);
        }
        var partials = layerNormPartials.All.View;
        var columns = Linear(C);
        layerNormParamPartialsKernel(new KernelConfig(new Index3D(columns.GridDim.X, blocks, 1), columns.GroupDim),
            dOutput.View, input.View, mean.View, rstd.View, N, C, LayerNormRowBlock, partials);
        layerNormParamSumKernel(columns, partials, C, blocks, dWeight.View, dBias.View);
    }

    // ------------------------------------------------------------------ kernels

    /// <summary>One group per row: mean, then the variance from squared deviations (two passes over an L1-resident row).</summary>
    static void LayerNormForwardKernel(ArrayView<float> input, ArrayView<float> weight, ArrayView<float> bias, int C, float eps,
        ArrayView<float> output, ArrayView<float> mean, ArrayView<float> rstd)
    {
        var warpSums = SharedMemory.Allocate<float>(RowReduce.MaxWarps);
        long rowStart = (long)Grid.IdxX * C;
        int tid = Group.IdxX, size = Group.DimX;

        float sum = 0f;
        for (int c = tid; c < C; c += size) sum += input[rowStart + c];
        float m = RowReduce.GroupSum(sum, warpSums) / C;

        float squares = 0f;
        for (int c = tid; c < C; c += size) { float d = input[rowStart + c] - m; squares += d * d; }
        float r = XMath.Rsqrt(RowReduce.GroupSum(squares, warpSums) / C + eps);

        for (int c = tid; c < C; c += size)
            output[rowStart + c] = (input[rowStart + c] - m) * r * weight[c] + bias[c];
        if (tid == 0) { mean[Grid.IdxX] = m; rstd[Grid.IdxX] = r; }
    }

    /// <summary>
    /// One group per row: with n̂ = (x - mean) rstd and g = dy w,
    /// dInput += rstd (g - mean(g) - n̂ mean(g n̂)) (accumulates: the residual stream).
    /// </summary>
    static void LayerNormInputGradKernel(ArrayView<float> dOutput, ArrayView<float> input, ArrayView<float> weight,
        ArrayView<float> mean, ArrayView<float> rstd, int C, ArrayView<float> dInput)
    {
        var warpSums = SharedMemory.Allocate<float>(2 * RowReduce.MaxWarps);
        int row = Grid.IdxX;
        long rowStart = (long)row * C;
        int tid = Group.IdxX, size = Group.DimX;
        float m = mean[row], r = rstd[row];

        float sumG = 0f, sumGN = 0f;
        for (int c = tid; c < C; c += size)
        {
            float g = dOutput[rowStart + c] * weight[c];
            sumG += g;
            sumGN += g * (input[rowStart + c] - m) * r;
        }
        RowReduce.GroupSum2(ref sumG, ref sumGN, warpSums);
        float meanG = sumG / C, meanGN = sumGN / C;

        for (int c = tid; c < C; c += size)
        {
            float nhat = (input[rowStart + c] - m) * r;
            float g = dOutput[rowStart + c] * weight[c];
            dInput[rowStart + c] += (g - meanG - nhat * meanGN) * r;
        }
    }

    /// <summary>Thread per (column, row block): coalesced along the columns, rows of the block in order.</summary>
    static void LayerNormParamPartialsKernel(ArrayView<float> dOutput, ArrayView<float> input, ArrayView<float> mean,
        ArrayView<float> rstd, int N, int C, int rowsPerBlock, ArrayView<float> partials)
    {
        int c = Grid.IdxX * Group.DimX + Group.IdxX;
        int block = Grid.IdxY;
        if (c >= C) return;
        int start = block * rowsPerBlock, end = XMath.Min(N, start + rowsPerBlock);
        float dw = 0f, db = 0f;
        for (int n = start; n < end; n++)
        {
            float dy = dOutput[(long)n * C + c];
            dw += dy * (input[(long)n * C + c] - mean[n]) * rstd[n];
            db += dy;
        }
        partials[(long)block * 2 * C + c] = dw;
        partials[(long)block * 2 * C + C + c] = db;
    }

    /// <summary>Thread per column: adds the row-block partials in block order into dWeight and dBias.</summary>
    static void LayerNormParamSumKernel(ArrayView<float> partials, int C, int blocks, ArrayView<float> dWeight, ArrayView<float> dBias)
    {
        int c = Grid.GlobalIndex.X;
        if (c >= C) return;
        float dw = 0f, db = 0f;
        for (int b = 0; b < blocks; b++)
        {
            dw += partials[(long)b * 2 * C + c];
            db += partials[(long)b * 2 * C + C + c];
        }
        dWeight[c] += dw;
        dBias[c] += db;
    }
}
