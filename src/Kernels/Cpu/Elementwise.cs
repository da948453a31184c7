using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

using static ArcherIlgpu.Kernels.BufChecks;

namespace ArcherIlgpu.Kernels;

public sealed partial class CpuBackend
{
    // GPT-2's tanh approximation of GELU: 0.5 x (1 + tanh(k (x + a x³))).
    internal const float GeluScale = 0.7978845608028654f;   // sqrt(2 / pi)
    internal const float GeluCubic = 0.044715f;

    // Elementwise ops touch 8-12 bytes per element; below this many elements a second thread costs
    // more to wake than it saves.
    const int ElementwiseGrain = 1 << 16;

    // Tanh is evaluated through TensorPrimitives on a stack tile of this many floats, so the whole
    // pass stays vectorised without any heap scratch.
    const int GeluTile = 512;

    public override void GeluForward(Buf<float> input, int n, Buf<float> output)
    {
        var x = input.Buffer.Host!; long xo = input.Offset;
        var y = output.Buffer.Host!; long yo = output.Offset;
        RequireElements(input, n); RequireElements(output, n);
        ParallelRange(n, ElementwiseGrain, (start, end) =>
            GeluForwardRange(x.AsSpan((int)(xo + start), end - start), y.AsSpan((int)(yo + start), end - start)));
    }

    static void GeluForwardRange(ReadOnlySpan<float> x, Span<float> y)
    {
        Span<float> t = stackalloc float[GeluTile];
        for (int s = 0; s < x.Length; s += GeluTile)
        {
            int len = Math.Min(GeluTile, x.Length - s);
            var xs = x.Slice(s, len); var ys = y.Slice(s, len); var ts = t[..len];
            GeluInner(xs, ts);
            TensorPrimitives.Tanh(ts, ts);
            // y = 0.5 x (1 + t)
            int i = 0;
            var half = Vector256.Create(0.5f); var one = Vector256<float>.One;
            for (; i <= len - Vector256<float>.Count; i += Vector256<float>.Count)
            {
                var xv = Vector256.Create(xs.Slice(i, Vector256<float>.Count));
                var tv = Vector256.Create(ts.Slice(i, Vector256<float>.Count));
                (half * xv * (one + tv)).CopyTo(ys.Slice(i, Vector256<float>.Count));
            }
            for (; i < len; i++) ys[i] = 0.5f * xs[i] * (1f + ts[i]);
        }
    }

    /// <summary>u = k (x + a x³), the argument of tanh.</summary>
    static void GeluInner(ReadOnlySpan<float> x, Span<float> u)
    {
        int i = 0;
        var k = Vector256.Create(GeluScale); var a = Vector256.Create(GeluCubic);
        for (; i <= x.Length - Vector256<float>.Count; i += Vector256<float>.Count)
        {
            var xv = Vector256.Create(x.Slice(i, Vector256<float>.Count));
            (k * (xv + a * xv * xv * xv)).CopyTo(u.Slice(i, Vector256<float>.Count));
        }
        for (; i < x.Length; i++) u[i] = GeluScale * (x[i] + GeluCubic * x[i] * x[i] * x[i]);
    }

    public override void GeluBackward(Buf<float> dOutput, Buf<float> input, int n, Buf<float> dInput)
    {
        var dy = dOutput.Buffer.Host!; long dyo = dOutput.Offset;
        var x = input.Buffer.Host!; long xo = input.Offset;
        var dx = dInput.Buffer.Host!; long dxo = dInput.Offset;
        RequireElements(dOutput, n); RequireElements(input, n); RequireElements(dInput, n);
        ParallelRange(n, ElementwiseGrain, (start, end) =>
            GeluBackwardRange(dy.AsSpan((int)(dyo + start), end - start), x.AsSpan((int)(xo + start), end - start),
                dx.AsSpan((int)(dxo + start), end - start)));
    }

    static void GeluBackwardRange(ReadOnlySpan<float> dy, ReadOnlySpan<float> x, Span<float> dx)
    {
        Span<float> t = stackalloc float[GeluTile];
        for (int s = 0; s < x.Length; s += GeluTile)
        {
            int len = Math.Min(GeluTile, x.Length - s);
            var xs = x.Slice(s, len); var dys = dy.Slice(s, len); var dxs = dx.Slice(s, len); var ts = t[..len];
            GeluInner(xs, ts);
            TensorPrimitives.Tanh(ts, ts);
            // d/dx = 0.5 (1 + t) + 0.5 x (1 - t²) k (1 + 3 a x²)
            int i = 0;
            var half = Vector256.Create(0.5f); var one = Vector256<float>.One;
            var k = Vector256.Create(GeluScale); var a3 = Vector256.Create(3f * GeluCubic);
            for (; i <= len - Vector256<float>.Count; i += Vector256<float>.Count)
            {
                var xv = Vector256.Create(xs.Slice(i, Vector256<float>.Count));
                var tv = Vector256.Create(ts.Slice(i, Vector256<float>.Count));
                var dyv = Vector256.Create(dys.Slice(i, Vector256<float>.Count));
                var grad = half * (one + tv) + half * xv * (one - tv * tv) * k * (one + a3 * xv * xv);
                (dyv * grad).CopyTo(dxs.Slice(i, Vector256<float>.Count));
            }
            for (; i < len; i++) dxs[i] = dys[i] * GeluGradient(xs[i], ts[i]);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float GeluGradient(float x, float t)
        => 0.5f * (1f + t) + 0.5f * x * (1f - t * t) * GeluScale * (1f + 3f * GeluCubic * x * x);

    public override void ResidualForward(Buf<float> a, Buf<float> b, int n, Buf<float> output)
    {
        RequireElements(a, n); RequireElements(b, n); RequireElements(output, n);
        var ah = a.Buffer.Host!; long ao = a.Offset;
        var bh = b.Buffer.Host!; long bo = b.Offset;
        var oh = output.Buffer.Host!; long oo = output.Offset;
        ParallelRange(n, ElementwiseGrain, (start, end) =>
            TensorPrimitives.Add(ah.AsSpan((int)(ao + start), end - start), bh.AsSpan((int)(bo + start), end - start),
                oh.AsSpan((int)(oo + start), end - start)));
    }

    public override void ResidualBackward(Buf<float> dOutput, int n, Buf<float> dA, Buf<float> dB)
    {
        RequireElements(dOutput, n); RequireElements(dA, n); RequireElements(dB, n);
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

/// <summary>Argument checks shared by the small ops of both backends.</summary>
internal static class BufChecks
{
    /// <summary>A slice shorter than the op's size would be read past its end on a GPU (silently); fail loudly instead.</summary>
    public static void RequireElements<T>(Buf<T> buf, long atLeast) where T : unmanaged
    {
        if (buf.IsEmpty || buf.Length < atLeast)
            throw new ArgumentException(buf.IsEmpty ? $"an empty buffer was given where {atLeast} elements are needed"
                : $"buffer {buf} holds {buf.Length} elements, the op needs {atLeast}");
    }
}
