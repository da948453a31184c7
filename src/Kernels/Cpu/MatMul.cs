using System.Numerics.Tensors;

namespace ArcherIlgpu.Kernels;

// out = in · Wᵀ + b and its backward, all three products on the packed SIMD GEMM in Gemm.cs.
public sealed partial class CpuBackend
{
    protected override unsafe void MatMulForwardCore(Buf<float> input, Buf<float> weight, Buf<float> bias,
        int N, int K, int OC, Buf<float> output)
    {
        if (N < FewRows) { ForwardFewRows(input, weight, bias, N, K, OC, output); return; }
        fixed (float* x = input.Span, w = weight.Span, b = bias.IsEmpty ? default : bias.Span, y = output.Span)
        {
            // A = in [N, K] row-major; B(k, o) = W[o, k], i.e. Wᵀ read through its strides.
            Gemm.Multiply(N, OC, K, new StridedMatrix(x, K, 1), new StridedMatrix(w, 1, K),
                y, OC, b, accumulate: false);
        }
    }

    /// <summary>
    /// Below one micro-tile of rows (decoding: one row per sequence) the GEMM would pad the rows and
    /// pack all of W for little work; dot products of each weight row with every input row read W
    /// once, straight from memory, with the input rows held in L1.
    /// </summary>
    const int FewRows = 8;

    static void ForwardFewRows(Buf<float> input, Buf<float> weight, Buf<float> bias, int N, int K, int OC, Buf<float> output)
    {
        var x = input.Buffer.Host!; int xOffset = (int)input.Offset;
        var w = weight.Buffer.Host!; int wOffset = (int)weight.Offset;
        var y = output.Buffer.Host!; int yOffset = (int)output.Offset;
        float[]? b = bias.IsEmpty ? null : bias.Buffer.Host!; int bOffset = bias.IsEmpty ? 0 : (int)bias.Offset;
        // 64 weight rows per chunk is at least 64·K multiply-adds per row of input: worth a task.
        int grain = (long)N * K * OC < (1 << 18) ? Math.Max(OC, 1) : 64;
        ParallelRange(OC, grain, (start, end) =>
        {
            for (int o = start; o < end; o++)
            {
                var wRow = w.AsSpan(wOffset + o * K, K);
                float bo = b is null ? 0f : b[bOffset + o];
                for (int n = 0; n < N; n++)
                    y[yOffset + n * OC + o] = TensorPrimitives.Dot(x.AsSpan(xOffset + n * K, K), wRow) + bo;
            }
        });
    }

    protected override unsafe void MatMulBackwardCore(Buf<float> dOutput, Buf<float> input, Buf<float> weight,
        int N, int K, int OC, Buf<float> dInput, Buf<float> dWeight, Buf<float> dBias)
    {
        fixed (float* dy = dOutput.Span, x = input.Span, w = weight.Span, dw = dWeight.Span)
        {
            if (!dInput.IsEmpty)
                fixed (float* dx = dInput.Span)
                    // dIn [N, K] = dOut [N, OC] · W [OC, K]
                    Gemm.Multiply(N, K, OC, new StridedMatrix(dy, OC, 1), new StridedMatrix(w, K, 1),
                        dx, K, null, accumulate: false);
            // dW [OC, K] += dOutᵀ [OC, N] · in [N, K]: A(o, n) = dOut[n, o] read through its strides.
            Gemm.Multiply(OC, K, N, new StridedMatrix(dy, 1, OC), new StridedMatrix(x, K, 1),
                dw, K, null, accumulate: true);
        }
        if (!dBias.IsEmpty) AccumulateColumnSums(dOutput, N, OC, dBias);
    }

    /// <summary>dBias[o] += sum_n dOut[n, o]: row-wise vector adds, split over column ranges.</summary>
    static void AccumulateColumnSums(Buf<float> dOutput, int N, int OC, Buf<float> dBias)
    {
        var dy = dOutput.Buffer.Host!; int dyOffset = (int)dOutput.Offset;
        var db = dBias.Buffer.Host!; int dbOffset = (int)dBias.Offset;
        // 256 columns per chunk keeps each chunk a whole number of cache lines and worth a task
        // only when there are many rows.
        int grain = (long)N * OC < (1 << 16) ? OC : 256;
        ParallelRange(OC, grain, (start, end) =>
        {
            var sum = db.AsSpan(dbOffset + start, end - start);
            for (int n = 0; n < N; n++)
                TensorPrimitives.Add(sum, dy.AsSpan(dyOffset + n * OC + start, end - start), sum);
        });
    }
}
