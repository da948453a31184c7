using System.Runtime.Intrinsics;

namespace ArcherIlgpu.Kernels;

// SwiGLU over the fused [gate (I) | up (I)] row: out = silu(g) · u, silu(g) = g · s, s = 1 / (1 + exp(−g)).
// s is formed as 1 / (1 + exp(−g)) and nothing else: exp(−g) overflows to +inf for g below about −88,
// which gives s = 0 exactly (the limit), and underflows to 0 for large g, which gives s = 1. Every
// formula below uses s, g and u only in products and sums of finite numbers, so no inf − inf or
// 0 · inf can appear for any finite input.
public sealed partial class CpuBackend
{
    protected override void SwiGluForwardCore(Buf<float> gateUp, int N, int I, Buf<float> output)
    {
        var gu = gateUp.Buffer.Host!; long guo = gateUp.Offset;
        var y = output.Buffer.Host!; long yo = output.Offset;
        ParallelRange(N, SwiGluRowGrain(I), (start, end) =>
        {
            for (int n = start; n < end; n++)
            {
                var row = gu.AsSpan((int)(guo + (long)n * 2 * I), 2 * I);
                SwiGluForwardRow(row[..I], row[I..], y.AsSpan((int)(yo + (long)n * I), I));
            }
        });
    }

    protected override void SwiGluBackwardCore(Buf<float> dOutput, Buf<float> gateUp, int N, int I, Buf<float> dGateUp)
    {
        var dy = dOutput.Buffer.Host!; long dyo = dOutput.Offset;
        var gu = gateUp.Buffer.Host!; long guo = gateUp.Offset;
        var dgu = dGateUp.Buffer.Host!; long dguo = dGateUp.Offset;
        ParallelRange(N, SwiGluRowGrain(I), (start, end) =>
        {
            for (int n = start; n < end; n++)
            {
                var row = gu.AsSpan((int)(guo + (long)n * 2 * I), 2 * I);
                var drow = dgu.AsSpan((int)(dguo + (long)n * 2 * I), 2 * I);
                SwiGluBackwardRow(dy.AsSpan((int)(dyo + (long)n * I), I), row[..I], row[I..], drow[..I], drow[I..]);
            }
        });
    }

    /// <summary>Rows per chunk so that a chunk covers about <see cref="ElementwiseGrain"/> elements.</summary>
    static int SwiGluRowGrain(int I) => Math.Max(1, ElementwiseGrain / Math.Max(1, I));

    static unsafe void SwiGluForwardRow(ReadOnlySpan<float> gate, ReadOnlySpan<float> up, Span<float> y)
    {
        int i = 0, n = y.Length;
        fixed (float* pg = gate, pu = up, py = y)
        {
            if (Vector512.IsHardwareAccelerated)
                for (; i <= n - 16; i += 16)
                {
                    var g = Vector512.Load(pg + i);
                    Vector512.Store(g * Vector512.Load(pu + i) / (Vector512<float>.One + Vector512.Exp(-g)), py + i);
                }
            for (; i <= n - 8; i += 8)
            {
                var g = Vector256.Load(pg + i);
                Vector256.Store(g * Vector256.Load(pu + i) / (Vector256<float>.One + Vector256.Exp(-g)), py + i);
            }
        }
        for (; i < n; i++) y[i] = gate[i] * up[i] / (1f + MathF.Exp(-gate[i]));
    }

    /// <summary>dg = dy · u · s (1 + g (1 − s)) (the derivative of g s), du = dy · g · s.</summary>
    static unsafe void SwiGluBackwardRow(ReadOnlySpan<float> dy, ReadOnlySpan<float> gate, ReadOnlySpan<float> up,
        Span<float> dGate, Span<float> dUp)
    {
        int i = 0, n = dy.Length;
        fixed (float* pdy = dy, pg = gate, pu = up, pdg = dGate, pdu = dUp)
        {
            if (Vector512.IsHardwareAccelerated)
            {
                var one = Vector512<float>.One;
                for (; i <= n - 16; i += 16)
                {
                    var g = Vector512.Load(pg + i); var d = Vector512.Load(pdy + i);
                    var s = one / (one + Vector512.Exp(-g));
                    var ds = d * s;
                    Vector512.Store(ds * Vector512.Load(pu + i) * Vector512.FusedMultiplyAdd(g, one - s, one), pdg + i);
                    Vector512.Store(ds * g, pdu + i);
                }
            }
            {
                var one = Vector256<float>.One;
                for (; i <= n - 8; i += 8)
                {
                    var g = Vector256.Load(pg + i); var d = Vector256.Load(pdy + i);
                    var s = one / (one + Vector256.Exp(-g));
                    var ds = d * s;
                    Vector256.Store(ds * Vector256.Load(pu + i) * Vector256.FusedMultiplyAdd(g, one - s, one), pdg + i);
                    Vector256.Store(ds * g, pdu + i);
                }
            }
        }
        for (; i < n; i++)
        {
            float g = gate[i], s = 1f / (1f + MathF.Exp(-g)), ds = dy[i] * s;
            dGate[i] = ds * up[i] * (1f + g * (1f - s));
            dUp[i] = ds * g;
        }
    }
}
