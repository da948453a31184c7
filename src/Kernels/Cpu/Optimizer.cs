using System.Runtime.Intrinsics;

namespace ArcherIlgpu.Kernels;

public sealed partial class CpuBackend
{
    // SumOfSquares sums fixed blocks of this many elements in double, then adds the block sums in
    // order: the result is the same bits on any number of cores, and float error never builds up.
    const int SquaresBlock = 1 << 14;

    // AdamW reads 4 and writes 3 floats per element; chunks of 64K elements amortise the thread wake-up.
    const int AdamWGrain = 1 << 16;

    double[] squaresPartials = [];

    protected override void SumOfSquaresCore(Buf<float> grads, Buf<float> normSquared)
    {
        var g = grads.Buffer.Host!; int go = (int)grads.Offset; int n = (int)grads.Length;
        int blocks = (n + SquaresBlock - 1) / SquaresBlock;
        if (squaresPartials.Length < blocks) squaresPartials = new double[blocks];
        var partials = squaresPartials;
        ParallelRange(blocks, 4, (b0, b1) =>
        {
            for (int blk = b0; blk < b1; blk++)
            {
                int start = blk * SquaresBlock;
                partials[blk] = SumOfSquaresDouble(g.AsSpan(go + start, Math.Min(SquaresBlock, n - start)));
            }
        });
        double total = 0;
        for (int blk = 0; blk < blocks; blk++) total += partials[blk];
        normSquared.Buffer.Host![normSquared.Offset] = (float)total;
    }

    /// <summary>Σ x² with every square widened to double before it is added (4 independent lanes x 2 accumulators).</summary>
    static double SumOfSquaresDouble(ReadOnlySpan<float> x)
    {
        var acc0 = Vector256<double>.Zero; var acc1 = Vector256<double>.Zero;
        int i = 0, K = Vector256<float>.Count;
        for (; i <= x.Length - K; i += K)
        {
            var (lo, hi) = Vector256.Widen(Vector256.Create(x.Slice(i, K)));
            acc0 = Vector256.FusedMultiplyAdd(lo, lo, acc0);
            acc1 = Vector256.FusedMultiplyAdd(hi, hi, acc1);
        }
        double s = Vector256.Sum(acc0 + acc1);
        for (; i < x.Length; i++) s += (double)x[i] * x[i];
        return s;
    }

    protected override void AdamWCore(Buf<float> parameters, Buf<float> grads, Buf<float> m, Buf<float> v,
        Buf<float> normSquared, float maxNorm, float lr, float beta1, float beta2, float eps,
        float weightDecay, int step)
    {
        long n = parameters.Length;
        float norm2 = normSquared.Buffer.Host![normSquared.Offset];
        if (!float.IsFinite(norm2)) return;   // a non-finite gradient never reaches the weights
        var h = AdamWScalars.Create(norm2, maxNorm, lr, beta1, beta2, eps, weightDecay, step);
        var p = parameters.Buffer.Host!; int po = (int)parameters.Offset;
        var g = grads.Buffer.Host!; int go = (int)grads.Offset;
        var mh = m.Buffer.Host!; int mo = (int)m.Offset;
        var vh = v.Buffer.Host!; int vo = (int)v.Offset;
        ParallelRange((int)n, AdamWGrain, (start, end) =>
            AdamWRange(p.AsSpan(po + start, end - start), g.AsSpan(go + start, end - start),
                mh.AsSpan(mo + start, end - start), vh.AsSpan(vo + start, end - start), h));
    }

    static void AdamWRange(Span<float> p, ReadOnlySpan<float> g, Span<float> m, Span<float> v, AdamWScalars h)
    {
        int i = 0, K = Vector256<float>.Count;
        var clip = Vector256.Create(h.Clip);
        var b1 = Vector256.Create(h.Beta1); var c1 = Vector256.Create(1f - h.Beta1);
        var b2 = Vector256.Create(h.Beta2); var c2 = Vector256.Create(1f - h.Beta2);
        var inv1 = Vector256.Create(h.InvCorrection1); var inv2 = Vector256.Create(h.InvCorrection2);
        var eps = Vector256.Create(h.Eps); var lr = Vector256.Create(h.Lr); var wd = Vector256.Create(h.WeightDecay);
        for (; i <= p.Length - K; i += K)
        {
            var gv = Vector256.Create(g.Slice(i, K)) * clip;
            var mv = b1 * Vector256.Create(m.Slice(i, K)) + c1 * gv;
            var vv = b2 * Vector256.Create(v.Slice(i, K)) + c2 * gv * gv;
            var pv = Vector256.Create(p.Slice(i, K));
            pv -= lr * (mv * inv1 / (Vector256.Sqrt(vv * inv2) + eps) + wd * pv);
            mv.CopyTo(m.Slice(i, K)); vv.CopyTo(v.Slice(i, K)); pv.CopyTo(p.Slice(i, K));
        }
        for (; i < p.Length; i++)
        {
            float gi = g[i] * h.Clip;
            float mi = h.Beta1 * m[i] + (1f - h.Beta1) * gi;
            float vi = h.Beta2 * v[i] + (1f - h.Beta2) * gi * gi;
            p[i] -= h.Lr * (mi * h.InvCorrection1 / (MathF.Sqrt(vi * h.InvCorrection2) + h.Eps) + h.WeightDecay * p[i]);
            m[i] = mi; v[i] = vi;
        }
    }
}

/// <summary>The per-step scalars of AdamW, shared by the CPU and GPU backends so both clip and correct alike.</summary>
internal readonly record struct AdamWScalars(float Clip, float Lr, float Beta1, float Beta2, float Eps, float WeightDecay,
    float InvCorrection1, float InvCorrection2)
{
    /// <summary>clip = min(1, maxNorm / (‖g‖ + 1e-6)) (1 when maxNorm &lt;= 0); bias corrections 1/(1 - β^step) in double.</summary>
    public static AdamWScalars Create(float normSquared, float maxNorm, float lr, float beta1, float beta2, float eps,
        float weightDecay, int step)
    {
        float clip = ClipScale(normSquared, maxNorm);
        return new AdamWScalars(clip, lr, beta1, beta2, eps, weightDecay,
            (float)(1.0 / (1.0 - Math.Pow(beta1, step))), (float)(1.0 / (1.0 - Math.Pow(beta2, step))));
    }

    public static float ClipScale(float normSquared, float maxNorm)
        => maxNorm > 0f ? MathF.Min(1f, maxNorm / (MathF.Sqrt(normSquared) + 1e-6f)) : 1f;
}
