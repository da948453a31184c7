using System.Numerics.Tensors;
using System.Runtime.Intrinsics;

namespace ArcherIlgpu.Kernels;

public sealed partial class CpuBackend
{
    // Rows per parallel chunk of the forward (a row of 768 floats is 3 KiB).
    const int LayerNormRowGrain = 16;

    // The backward sums dWeight/dBias over fixed blocks of this many rows into per-block partials,
    // then adds the blocks in order. Fixed blocks (not per-thread partials) make the result the same
    // on any number of cores.
    const int LayerNormRowBlock = 32;

    float[] layerNormPartials = [];   // [blocks, 2, C], grown on first use at a larger size

    protected override void LayerNormForwardCore(Buf<float> input, Buf<float> weight, Buf<float> bias,
        int N, int C, float eps, Buf<float> output, Buf<float> mean, Buf<float> rstd)
    {
        var x = input.Buffer.Host!; long xo = input.Offset;
        var w = weight.Buffer.Host!; int wo = (int)weight.Offset;
        var b = bias.Buffer.Host!; int bo = (int)bias.Offset;
        var y = output.Buffer.Host!; long yo = output.Offset;
        var mu = mean.Buffer.Host!; int muo = (int)mean.Offset;
        var rs = rstd.Buffer.Host!; int rso = (int)rstd.Offset;
        ParallelRange(N, LayerNormRowGrain, (start, end) =>
        {
            var ws = w.AsSpan(wo, C); var bs = b.AsSpan(bo, C);
            for (int n = start; n < end; n++)
            {
                var xs = x.AsSpan((int)(xo + (long)n * C), C);
                float m = TensorPrimitives.Sum(xs) / C;
                // Two passes (mean, then squared deviations) rather than E[x²] - m²: no cancellation.
                float r = 1f / MathF.Sqrt(SumSquaredDeviation(xs, m) / C + eps);
                NormalizeRow(xs, m, r, ws, bs, y.AsSpan((int)(yo + (long)n * C), C));
                mu[muo + n] = m; rs[rso + n] = r;
            }
        });
    }

    static float SumSquaredDeviation(ReadOnlySpan<float> x, float m)
    {
        int i = 0; var mv = Vector256.Create(m); var acc = Vector256<float>.Zero;
        for (; i <= x.Length - Vector256<float>.Count; i += Vector256<float>.Count)
        {
            var d = Vector256.Create(x.Slice(i, Vector256<float>.Count)) - mv;
            acc += d * d;
        }
        float s = Vector256.Sum(acc);
        for (; i < x.Length; i++) { float d = x[i] - m; s += d * d; }
        return s;
    }

    static void NormalizeRow(ReadOnlySpan<float> x, float m, float r, ReadOnlySpan<float> w, ReadOnlySpan<float> b, Span<float> y)
    {
        int i = 0; var mv = Vector256.Create(m); var rv = Vector256.Create(r);
        for (; i <= x.Length - Vector256<float>.Count; i += Vector256<float>.Count)
        {
            var xv = Vector256.Create(x.Slice(i, Vector256<float>.Count));
            var wv = Vector256.Create(w.Slice(i, Vector256<float>.Count));
            var bv = Vector256.Create(b.Slice(i, Vector256<float>.Count));
            ((xv - mv) * rv * wv + bv).CopyTo(y.Slice(i, Vector256<float>.Count));
        }
        for (; i < x.Length; i++) y[i] = (x[i] - m) * r * w[i] + b[i];
    }

    protected override void LayerNormBackwardCore(Buf<float> dOutput, Buf<float> input, Buf<float> weight,
        Buf<float> mean, Buf<float> rstd, int N, int C,
        Buf<float> dInput, Buf<float> dWeight, Buf<float> dBias)
    {
        if (N == 0 || C == 0) return;
        var dy = dOutput.Buffer.Host!; long dyo = dOutput.Offset;
        var x = input.Buffer.Host!; long xo = input.Offset;
        var w = weight.Buffer.Host!; int wo = (int)weight.Offset;
        var mu = mean.Buffer.Host!; int muo = (int)mean.Offset;
        var rs = rstd.Buffer.Host!; int rso = (int)rstd.Offset;
        var dx = dInput.Buffer.Host!; long dxo = dInput.Offset;
        int blocks = (N + LayerNormRowBlock - 1) / LayerNormRowBlock;
        if (layerNormPartials.Length < blocks * 2 * C) layerNormPartials = new float[blocks * 2 * C];
        var partials = layerNormPartials;
        ParallelRange(blocks, Math.Max(1, 4096 / (LayerNormRowBlock * C)), (b0, b1) =>
        {
            var ws = w.AsSpan(wo, C);
            for (int blk = b0; blk < b1; blk++)
            {
                var pw = partials.AsSpan(blk * 2 * C, C); var pb = partials.AsSpan(blk * 2 * C + C, C);
                pw.Clear(); pb.Clear();
                int end = Math.Min(N, (blk + 1) * LayerNormRowBlock);
                for (int n = blk * LayerNormRowBlock; n < end; n++)
                    LayerNormBackwardRow(dy.AsSpan((int)(dyo + (long)n * C), C), x.AsSpan((int)(xo + (long)n * C), C),
                        ws, mu[muo + n], rs[rso + n], dx.AsSpan((int)(dxo + (long)n * C), C), pw, pb);
            }
        });
        // Blocks in order, so the sum does not depend on how the blocks were spread over threads.
        var sw = partials.AsSpan(0, C); var sb = partials.AsSpan(C, C);
        for (int blk = 1; blk < blocks; blk++)
        {
            TensorPrimitives.Add(sw, partials.AsSpan(blk * 2 * C, C), sw);
            TensorPrimitives.Add(sb, partials.AsSpan(blk * 2 * C + C, C), sb);
        }
        var dw = dWeight.Buffer.Host!.AsSpan((int)dWeight.Offset, C); TensorPrimitives.Add(dw, sw, dw);
        var db = dBias.Buffer.Host!.AsSpan((int)dBias.Offset, C); TensorPrimitives.Add(db, sb, db);
    }

    /// <summary>
    /// With n̂ = (x - mean) rstd and g = dy ⊙ w: dx += rstd (g - mean(g) - n̂ mean(g ⊙ n̂));
    /// the row's dy ⊙ n̂ and dy go into the block partials of dWeight and dBias.
    /// </summary>
    static void LayerNormBackwardRow(ReadOnlySpan<float> dy, ReadOnlySpan<float> x, ReadOnlySpan<float> w,
        float m, float r, Span<float> dx, Span<float> pw, Span<float> pb)
    {
        int C = x.Length, K = Vector256<float>.Count;
        var mv = Vector256.Create(m); var rv = Vector256.Create(r);
        var sumG = Vector256<float>.Zero; var sumGN = Vector256<float>.Zero;
        int i = 0;
        for (; i <= C - K; i += K)
        {
            var dyv = Vector256.Create(dy.Slice(i, K));
            var nv = (Vector256.Create(x.Slice(i, K)) - mv) * rv;
            var gv = dyv * Vector256.Create(w.Slice(i, K));
            sumG += gv; sumGN += gv * nv;
            (Vector256.Create(pw.Slice(i, K)) + dyv * nv).CopyTo(pw.Slice(i, K));
            (Vector256.Create(pb.Slice(i, K)) + dyv).CopyTo(pb.Slice(i, K));
        }
        float sg = Vector256.Sum(sumG), sgn = Vector256.Sum(sumGN);
        for (; i < C; i++)
        {
            float nhat = (x[i] - m) * r, g = dy[i] * w[i];
            sg += g; sgn += g * nhat;
            pw[i] += dy[i] * nhat; pb[i] += dy[i];
        }
        float meanG = sg / C, meanGN = sgn / C;
        var meanGv = Vector256.Create(meanG); var meanGNv = Vector256.Create(meanGN);
        for (i = 0; i <= C - K; i += K)
        {
            var nv = (Vector256.Create(x.Slice(i, K)) - mv) * rv;
            var gv = Vector256.Create(dy.Slice(i, K)) * Vector256.Create(w.Slice(i, K));
            (Vector256.Create(dx.Slice(i, K)) + (gv - meanGv - nv * meanGNv) * rv).CopyTo(dx.Slice(i, K));
        }
        for (; i < C; i++)
        {
            float nhat = (x[i] - m) * r, g = dy[i] * w[i];
            dx[i] += (g - meanG - nhat * meanGN) * r;
        }
    }
}
