using ILGPU;
using ILGPU.Runtime;

namespace ArcherIlgpu.Kernels;

/// <summary>
/// Rotary position embedding, in place on the fused qkv rows: one thread per rotated pair (row, head, i),
/// i fastest, so a warp reads consecutive channels of both halves and of the cos/sin row (coalesced).
/// The backward is the same kernel with the angle negated.
/// </summary>
public sealed partial class IlgpuBackend
{
    Action<KernelConfig, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>, int, int, int, int, int, float>? ropeKernel;

    protected override void RopeForwardCore(Buf<float> qkv, Buf<int> positions, Buf<float> cos, Buf<float> sin,
        int N, int H, int Hkv, int D)
        => Rope(nameof(RopeForward), qkv, positions, cos, sin, N, H, Hkv, D, sinSign: 1f);

    protected override void RopeBackwardCore(Buf<float> dQkv, Buf<int> positions, Buf<float> cos, Buf<float> sin,
        int N, int H, int Hkv, int D)
        => Rope(nameof(RopeBackward), dQkv, positions, cos, sin, N, H, Hkv, D, sinSign: -1f);

    void Rope(string op, Buf<float> qkv, Buf<int> positions, Buf<float> cos, Buf<float> sin,
        int N, int H, int Hkv, int D, float sinSign)
    {
        int maxT = RopeShape.TableRows(cos, D);
        long pairs = (long)N * (H + Hkv) * (D / 2);
        if (pairs == 0) return;
        if (pairs > int.MaxValue) throw new ArgumentException($"{op}: N·(H + Hkv)·D/2 = {pairs} rotated pairs exceed one launch's 2^31 threads");
        ropeKernel ??= Accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>, int, int, int, int, int, float>(RopeKernel);
        ropeKernel(Linear(pairs), qkv.View, positions.View, cos.View, sin.View, (int)pairs, H, Hkv, D, maxT, sinSign);
    }

    /// <summary>
    /// Thread (n, head, i) rotates x[i] and x[i + D/2] of head `head` (q heads, then k heads) of row n.
    /// A position outside the tables leaves its row untouched (the host cannot check device positions
    /// without a synchronisation).
    /// </summary>
    static void RopeKernel(ArrayView<float> qkv, ArrayView<int> positions, ArrayView<float> cos, ArrayView<float> sin,
        int pairs, int H, int Hkv, int D, int maxT, float sinSign)
    {
        int idx = Grid.GlobalIndex.X;
        if (idx >= pairs) return;
        int half = D / 2, rotated = H + Hkv;
        int i = idx % half, rowHead = idx / half;
        int head = rowHead % rotated, n = rowHead / rotated;
        int p = positions[n];
        if (p < 0 || p >= maxT) return;

        int x1 = n * (H + 2 * Hkv) * D + head * D + i, x2 = x1 + half;
        float c = cos[p * half + i], s = sin[p * half + i] * sinSign;
        float a = qkv[x1], b = qkv[x2];
        qkv[x1] = a * c - b * s;
        qkv[x2] = b * c + a * s;
    }
}
