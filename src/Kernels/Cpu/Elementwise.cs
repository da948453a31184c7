using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace ArcherIlgpu.Kernels;

public sealed partial class CpuBackend
{
    // GPT-2's tanh approximation of GELU: 0.5 x (1 + tanh(k (x + a x³))).
    internal const float GeluScale = 0.7978845608028654f;   // sqrt(2 / pi)
    internal const float GeluCubic = 0.044715f;

    // Elementwise ops touch 8-12 bytes per element; below this many elements a second thread costs
    // more to wake than it saves.
    const int ElementwiseGrain = 1 << 16;

    // 0.5 x (1 + tanh(u)) = x sigmoid(2u) = x / (1 + exp(-2u)): one vector exp and one divide per
    // element, no tanh and no scratch. exp(-2u) overflows to +inf for very negative x, which gives
    // x / inf = -0, the limit; for very positive x it is 0 and y = x.

    protected override void GeluForwardCore(Buf<float> input, int n, Buf<float> output)
    {
        var x = input.Buffer.Host!; long xo = input.Offset;
        var y = output.Buffer.Host!; long yo = output.Offset;
        ParallelRange(n, ElementwiseGrain, (start, end) =>
            GeluForwardRange(x.AsSpan((int)(xo + start), end - start), y.AsSpan((int)(yo + start), end - start)));
    }

    static unsafe void GeluForwardRange(ReadOnlySpan<float> x, Span<float> y)
    {
        int i = 0, n = x.Length;
        fixed (float* px = x, py = y)
        {
            if (Vector512.IsHardwareAccelerated)
                for (; i <= n - 16; i += 16)
                {
                    var xv = Vector512.Load(px + i);
                    Vector512.Store(xv / (Vector512<float>.One + Vector512.Exp(GeluMinusTwoU(xv))), py + i);
                }
            for (; i <= n - 8; i += 8)
            {
                var xv = Vector256.Load(px + i);
                Vector256.Store(xv / (Vector256<float>.One + Vector256.Exp(GeluMinusTwoU(xv))), py + i);
            }
        }
        for (; i < n; i++) y[i] = x[i] / (1f + MathF.Exp(-2f * GeluScale * (x[i] + GeluCubic * x[i] * x[i] * x[i])));
    }

    /// <summary>-2u = -2k (x + a x³) = x (-2k - 2ka x²).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> GeluMinusTwoU(Vector512<float> x)
        => x * Vector512.FusedMultiplyAdd(x * x, Vector512.Create(-2f * GeluScale * GeluCubic), Vector512.Create(-2f * GeluScale));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<float> GeluMinusTwoU(Vector256<float> x)
        => x * Vector256.FusedMultiplyAdd(x * x, Vector256.Create(-2f * GeluScale * GeluCubic), Vector256.Create(-2f * GeluScale));

    protected override void GeluBackwardCore(Buf<float> dOutput, Buf<float> input, int n, Buf<float> dInput)
    {
        var dy = dOutput.Buffer.Host!; long dyo = dOutput.Offset;
        var x = input.Buffer.Host!; long xo = input.Offset;
        var dx = dInput.Buffer.Host!; long dxo = dInput.Offset;
        ParallelRange(n, ElementwiseGrain, (start, end) =>
            GeluBackwardRange(dy.AsSpan((int)(dyo + start), end - start), x.AsSpan((int)(xo + start), end - start),
                dx.AsSpan((int)(dxo + start), end - start)));
    }

    // With s = sigmoid(2u): d/dx [x s] = s + 2 x s (1 - s) u', u' = k (1 + 3 a x²)
    // (the same as 0.5 (1 + t) + 0.5 x (1 - t²) u' with t = tanh u = 2s - 1).
    static unsafe void GeluBackwardRange(ReadOnlySpan<float> dy, ReadOnlySpan<float> x, Span<float> dx)
    {
        int i = 0, n = x.Length;
        fixed (float* px = x, pdy = dy, pdx = dx)
        {
            if (Vector512.IsHardwareAccelerated)
            {
                var one = Vector512<float>.One;
                var twoK = Vector512.Create(2f * GeluScale); var twoK3a = Vector512.Create(2f * GeluScale * 3f * GeluCubic);
                for (; i <= n - 16; i += 16)
                {
                    var xv = Vector512.Load(px + i);
                    var sv = one / (one + Vector512.Exp(GeluMinusTwoU(xv)));
                    var twoDu = Vector512.FusedMultiplyAdd(xv * xv, twoK3a, twoK);
                    var grad = Vector512.FusedMultiplyAdd(xv * sv * (one - sv), twoDu, sv);
                    Vector512.Store(Vector512.Load(pdy + i) * grad, pdx + i);
                }
            }
            {
                var one = Vector256<float>.One;
                var twoK = Vector256.Create(2f * GeluScale); var twoK3a = Vector256.Create(2f * GeluScale * 3f * GeluCubic);
                for (; i <= n - 8; i += 8)
                {
                    var xv = Vector256.Load(px + i);
                    var sv = one / (one + Vector256.Exp(GeluMinusTwoU(xv)));
                    var twoDu = Vector256.FusedMultiplyAdd(xv * xv, twoK3a, twoK);
                    var grad = Vector256.FusedMultiplyAdd(xv * sv * (one - sv), twoDu, sv);
                    Vector256.Store(Vector256.Load(pdy + i) * grad, pdx + i);
                }
            }
        }
        for (; i < n; i++)
        {
            float xi = x[i];
            float si = 1f / (1f + MathF.Exp(-2f * GeluScale * (xi + GeluCubic * xi * xi * xi)));
            dx[i] = dy[i] * (si + 2f * xi * si * (1f - si) * GeluScale * (1f + 3f * GeluCubic * xi * xi));
        }
    }

    protected override void ResidualForwardCore(Buf<float> a, Buf<float> b, int n, Buf<float> output)
    {
        var ah = a.Buffer.Host!; long ao = a.Offset;
        var bh = b.Buffer.Host!; long bo = b.Offset;
        var oh = output.Buffer.Host!; long oo = output.Offset;
        ParallelRange(n, ElementwiseGrain, (start, end) =>
            TensorPrimitives.Add(ah.AsSpan((int)(ao + start), end - start), bh.AsSpan((int)(bo + start), end - start),
                oh.AsSpan((int)(oo + start), end - start)));
    }

    protected override void ResidualBackwardCore(Buf<float> dOutput, int n, Buf<float> dA, Buf<float> dB)
    {
        var g = dOutput.Buffer.Host!; long go = dOutput.Offset;
        var ah = dA.Buffer.Host!; long ao = dA.Offset;
        var bh = dB.Buffer.Host!; long bo = dB.Offset;
        ParallelRange(n, ElementwiseGrain, (start, end) =>
        {
            var gs = g.AsSpan((int)(go + start), end - start);
            var das = ah.AsSpan((int)(ao + start), end - start);
            TensorPrimitives.Add(das, gs, das);
            var dbs = bh.AsSpan((int)(bo + start), end - start);
            TensorPrimitives.Add(dbs, gs, dbs);
        });
    }
}
