using System.Numerics.Tensors;
using System.Runtime.Intrinsics;

namespace ArcherIlgpu.Kernels;

// RMSNorm (Llama's block norm over C) and Qwen3's QK-norm (the same norm over each D-wide head of the
// fused qkv row) share the per-row code below; they differ only in where the rows are and whether
// dInput accumulates (the residual stream) or is overwritten (qkv is a plain activation).
public sealed partial class CpuBackend
{
    // Rows per parallel chunk of the forward (a row of 2048 floats is 8 KiB).
    const int RmsNormRowGrain = 16;

    // dWeight is summed over fixed blocks of this many rows into per-block partials, then the blocks
    // are added in order: the same result on any number of cores (as in LayerNormBackward).
    const int RmsNormRowBlock = 32;

    float[] rmsNormPartials = [];   // [blocks, C] or [blocks, 2, D], grown on first use at a larger size

    protected override void RmsNormForwardCore(Buf<float> input, Buf<float> weight, int N, int C, float eps,
        Buf<float> output, Buf<float> rstd)
    {
        var x = input.Buffer.Host!; long xo = input.Offset;
        var w = weight.Buffer.Host!; int wo = (int)weight.Offset;
        var y = output.Buffer.Host!; long yo = output.Offset;
        var rs = rstd.Buffer.Host!; int rso = (int)rstd.Offset;
        ParallelRange(N, RmsNormRowGrain, (start, end) =>
        {
            var ws = w.AsSpan(wo, C);
            for (int n = start; n < end; n++)
                rs[rso + n] = RmsNormRow(x.AsSpan((int)(xo + (long)n * C), C), ws, eps, y.AsSpan((int)(yo + (long)n * C), C));
        });
    }

    protected override void RmsNormBackwardCore(Buf<float> dOutput, Buf<float> input, Buf<float> weight, Buf<float> rstd,
        int N, int C, Buf<float> dInput, Buf<float> dWeight)
    {
        if (N == 0 || C == 0) return;
        var dy = dOutput.Buffer.Host!; long dyo = dOutput.Offset;
        var x = input.Buffer.Host!; long xo = input.Offset;
        var w = weight.Buffer.Host!; int wo = (int)weight.Offset;
        var rs = rstd.Buffer.Host!; int rso = (int)rstd.Offset;
        var dx = dInput.Buffer.Host!; long dxo = dInput.Offset;
        int blocks = (N + RmsNormRowBlock - 1) / RmsNormRowBlock;
        var partials = RmsNormPartials(blocks * C);
        ParallelRange(blocks, Math.Max(1, 4096 / (RmsNormRowBlock * C)), (b0, b1) =>
        {
            var ws = w.AsSpan(wo, C);
            for (int blk = b0; blk < b1; blk++)
            {
                var pw = partials.AsSpan(blk * C, C);
                pw.Clear();
                int end = Math.Min(N, (blk + 1) * RmsNormRowBlock);
                for (int n = blk * RmsNormRowBlock; n < end; n++)
                {
                    long row = (long)n * C;
                    RmsNormBackwardRow(dy.AsSpan((int)(dyo + row), C), x.AsSpan((int)(xo + row), C), ws, rs[rso + n],
                        dx.AsSpan((int)(dxo + row), C), pw, accumulate: true);
                }
            }
        });
        AddBlockPartials(partials.AsSpan(), blocks, C, stride: C, dWeight.Buffer.Host!.AsSpan((int)dWeight.Offset, C));
    }

    protected override void QkNormForwardCore(Buf<float> qkv, Buf<float> qWeight, Buf<float> kWeight, int N, int H, int Hkv, int D,
        float eps, Buf<float> output, Buf<float> rstd)
    {
        int W = (H + 2 * Hkv) * D, heads = H + Hkv;
        var x = qkv.Buffer.Host!; long xo = qkv.Offset;
        var qw = qWeight.Buffer.Host!; int qwo = (int)qWeight.Offset;
        var kw = kWeight.Buffer.Host!; int kwo = (int)kWeight.Offset;
        var y = output.Buffer.Host!; long yo = output.Offset;
        var rs = rstd.Buffer.Host!; long rso = rstd.Offset;
        ParallelRange(N, Math.Max(1, RmsNormRowGrain * 1024 / Math.Max(1, W)), (start, end) =>
        {
            var qws = qw.AsSpan(qwo, D); var kws = kw.AsSpan(kwo, D);
            for (int n = start; n < end; n++)
            {
                var xr = x.AsSpan((int)(xo + (long)n * W), W); var yr = y.AsSpan((int)(yo + (long)n * W), W);
                for (int h = 0; h < heads; h++)
                    rs[rso + (long)n * heads + h] = RmsNormRow(xr.Slice(h * D, D), h < H ? qws : kws, eps, yr.Slice(h * D, D));
                xr[(heads * D)..].CopyTo(yr[(heads * D)..]);   // value heads pass through
            }
        });
    }

    protected override void QkNormBackwardCore(Buf<float> dOutput, Buf<float> qkv, Buf<float> qWeight, Buf<float> kWeight,
        Buf<float> rstd, int N, int H, int Hkv, int D, Buf<float> dQkv, Buf<float> dQWeight, Buf<float> dKWeight)
    {
        int W = (H + 2 * Hkv) * D, heads = H + Hkv;
        if (N == 0 || D == 0) return;
        var dy = dOutput.Buffer.Host!; long dyo = dOutput.Offset;
        var x = qkv.Buffer.Host!; long xo = qkv.Offset;
        var qw = qWeight.Buffer.Host!; int qwo = (int)qWeight.Offset;
        var kw = kWeight.Buffer.Host!; int kwo = (int)kWeight.Offset;
        var rs = rstd.Buffer.Host!; long rso = rstd.Offset;
        var dx = dQkv.Buffer.Host!; long dxo = dQkv.Offset;
        int blocks = (N + RmsNormRowBlock - 1) / RmsNormRowBlock;
        var partials = RmsNormPartials(blocks * 2 * D);   // per block: dQWeight [D] then dKWeight [D]
        ParallelRange(blocks, Math.Max(1, 4096 / (RmsNormRowBlock * W)), (b0, b1) =>
        {
            var qws = qw.AsSpan(qwo, D); var kws = kw.AsSpan(kwo, D);
            for (int blk = b0; blk < b1; blk++)
            {
                var pq = partials.AsSpan(blk * 2 * D, D); var pk = partials.AsSpan(blk * 2 * D + D, D);
                pq.Clear(); pk.Clear();
                int end = Math.Min(N, (blk + 1) * RmsNormRowBlock);
                for (int n = blk * RmsNormRowBlock; n < end; n++)
                {
                    var dyr = dy.AsSpan((int)(dyo + (long)n * W), W); var xr = x.AsSpan((int)(xo + (long)n * W), W);
                    var dxr = dx.AsSpan((int)(dxo + (long)n * W), W);
                    for (int h = 0; h < heads; h++)
                        RmsNormBackwardRow(dyr.Slice(h * D, D), xr.Slice(h * D, D), h < H ? qws : kws, rs[rso + (long)n * heads + h],
                            dxr.Slice(h * D, D), h < H ? pq : pk, accumulate: false);
                    dyr[(heads * D)..].CopyTo(dxr[(heads * D)..]);   // value heads: identity
                }
            }
        });
        AddBlockPartials(partials.AsSpan(), blocks, D, stride: 2 * D, dQWeight.Buffer.Host!.AsSpan((int)dQWeight.Offset, D));
        AddBlockPartials(partials.AsSpan(D), blocks, D, stride: 2 * D, dKWeight.Buffer.Host!.AsSpan((int)dKWeight.Offset, D));
    }

    // ------------------------------------------------------------------ per-row code shared by both

    float[] RmsNormPartials(int length)
    {
        if (rmsNormPartials.Length < length) rmsNormPartials = new float[length];
        return rmsNormPartials;
    }

    /// <summary>y = x · r · w with r = 1 / sqrt(mean(x²) + eps); returns r. Hugging Face's order: (x · r) · w.</summary>
    static float RmsNormRow(ReadOnlySpan<float> x, ReadOnlySpan<float> w, float eps, Span<float> y)
    {
        float r = 1f / MathF.Sqrt(TensorPrimitives.SumOfSquares(x) / x.Length + eps);
        TensorPrimitives.Multiply(x, r, y);
        TensorPrimitives.Multiply(y, w, y);
        return r;
    }

    /// <summary>
    /// With n̂ = x r and g = dy ⊙ w: dx = r (g − n̂ mean(g ⊙ n̂)) (r depends on every x_i through mean(x²)),
    /// written as r g − x (r³ Σ(g ⊙ x) / C); added to dx or written over it. dy ⊙ n̂ goes into the partial of dWeight.
    /// </summary>
    static void RmsNormBackwardRow(ReadOnlySpan<float> dy, ReadOnlySpan<float> x, ReadOnlySpan<float> w, float r,
        Span<float> dx, Span<float> pw, bool accumulate)
    {
        int C = x.Length, K = Vector256<float>.Count, i = 0;
        var rv = Vector256.Create(r); var sumGX = Vector256<float>.Zero;
        for (; i <= C - K; i += K)
        {
            var dyv = Vector256.Create(dy.Slice(i, K)); var xv = Vector256.Create(x.Slice(i, K));
            sumGX += dyv * Vector256.Create(w.Slice(i, K)) * xv;
            (Vector256.Create(pw.Slice(i, K)) + dyv * xv * rv).CopyTo(pw.Slice(i, K));
        }
        float sgx = Vector256.Sum(sumGX);
        for (; i < C; i++) { sgx += dy[i] * w[i] * x[i]; pw[i] += dy[i] * x[i] * r; }

        float c = r * r * r * sgx / C;
        var cv = Vector256.Create(c);
        for (i = 0; i <= C - K; i += K)
        {
            var grad = Vector256.Create(dy.Slice(i, K)) * Vector256.Create(w.Slice(i, K)) * rv - Vector256.Create(x.Slice(i, K)) * cv;
            if (accumulate) grad += Vector256.Create(dx.Slice(i, K));
            grad.CopyTo(dx.Slice(i, K));
        }
        for (; i < C; i++)
        {
            float grad = dy[i] * w[i] * r - x[i] * c;
            dx[i] = accumulate ? dx[i] + grad : grad;
        }
    }

    /// <summary>target += Σ_blocks partials[block · stride .. + length], blocks added in order.</summary>
    static void AddBlockPartials(Span<float> partials, int blocks, int length, int stride, Span<float> target)
    {
        // The first block's partial holds the running sum: partials are scratch, cleared by the next backward.
        var sum = partials[..length];
        for (int blk = 1; blk < blocks; blk++) TensorPrimitives.Add(sum, partials.Slice(blk * stride, length), sum);
        TensorPrimitives.Add(target, sum, target);
    }
}
