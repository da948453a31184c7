using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace ArcherIlgpu.Kernels;

/// <summary>
/// Rotary position embedding on the managed backend, in place on the fused qkv rows. Each (x[i], x[i + half])
/// pair is a 2-D rotation by the angle of column i; the backward is the same loop with the angle negated.
/// </summary>
public sealed unsafe partial class CpuBackend
{
    /// <summary>Floats rotated per work item at least: below this, waking a second thread costs more than it saves.</summary>
    const int RopeGrain = 1 << 14;

    protected override void RopeForwardCore(Buf<float> qkv, Buf<int> positions, Buf<float> cos, Buf<float> sin,
        int N, int H, int Hkv, int D)
        => Rope(nameof(RopeForward), qkv, positions, cos, sin, N, H, Hkv, D, sinSign: 1f);

    protected override void RopeBackwardCore(Buf<float> dQkv, Buf<int> positions, Buf<float> cos, Buf<float> sin,
        int N, int H, int Hkv, int D)
        => Rope(nameof(RopeBackward), dQkv, positions, cos, sin, N, H, Hkv, D, sinSign: -1f);

    /// <summary>Rotates the q and k heads of every row by +angle (forward) or −angle (the gradient, sinSign = −1).</summary>
    void Rope(string op, Buf<float> qkv, Buf<int> positions, Buf<float> cos, Buf<float> sin,
        int N, int H, int Hkv, int D, float sinSign)
    {
        int maxT = RopeShape.TableRows(cos, D);
        var pos = positions.Span;
        for (int n = 0; n < N; n++)
            if ((uint)pos[n] >= (uint)maxT)
                throw new ArgumentOutOfRangeException(nameof(positions), $"{op}: positions[{n}] = {pos[n]} is outside the tables [0, {maxT})");

        int half = D / 2, rotated = H + Hkv, width = (H + 2 * Hkv) * D;
        nint xP = (nint)RopePtr(qkv.Span), cP = (nint)RopePtr(cos.Span), sP = (nint)RopePtr(sin.Span);
        nint posP = (nint)Unsafe.AsPointer(ref MemoryMarshal.GetReference(pos));   // pinned like every cpu buffer
        ParallelRange(N, Math.Max(1, RopeGrain / (rotated * D)), (start, end) =>
        {
            for (int n = start; n < end; n++)
            {
                int p = ((int*)posP)[n];
                float* c = (float*)cP + (long)p * half, s = (float*)sP + (long)p * half;
                float* row = (float*)xP + (long)n * width;
                for (int head = 0; head < rotated; head++)   // q heads then k heads: the first H + Hkv of the row
                    RotateHalf(row + head * D, c, s, half, sinSign);
            }
        });
    }

    static float* RopePtr<T>(Span<T> span) where T : unmanaged => (float*)Unsafe.AsPointer(ref MemoryMarshal.GetReference(span));

    /// <summary>(x1, x2) ← (x1·c − x2·s', x2·c + x1·s') with s' = sinSign·s, over the two halves of one head.</summary>
    static void RotateHalf(float* x, float* c, float* s, int half, float sinSign)
    {
        float* x2 = x + half;
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var sign = Vector512.Create(sinSign);
            for (; i <= half - 16; i += 16)
            {
                var a = Vector512.Load(x + i); var b = Vector512.Load(x2 + i);
                var cv = Vector512.Load(c + i); var sv = Vector512.Load(s + i) * sign;
                Vector512.Store(a * cv - b * sv, x + i);
                Vector512.Store(b * cv + a * sv, x2 + i);
            }
        }
        {
            var sign = Vector256.Create(sinSign);
            for (; i <= half - 8; i += 8)
            {
                var a = Vector256.Load(x + i); var b = Vector256.Load(x2 + i);
                var cv = Vector256.Load(c + i); var sv = Vector256.Load(s + i) * sign;
                Vector256.Store(a * cv - b * sv, x + i);
                Vector256.Store(b * cv + a * sv, x2 + i);
            }
        }
        for (; i < half; i++)
        {
            float a = x[i], b = x2[i], cv = c[i], sv = s[i] * sinSign;
            x[i] = a * cv - b * sv;
            x2[i] = b * cv + a * sv;
        }
    }
}
