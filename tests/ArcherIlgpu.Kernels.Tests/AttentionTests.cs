using ArcherIlgpu.Kernels;
using ArcherIlgpu.Kernels.Tests.Reference;

namespace ArcherIlgpu.Kernels.Tests;

public class AttentionTests
{
    // Tolerances. Outputs are convex combinations of values in [-1, 1] computed in float32 with an
    // online softmax: relative error a few float32 ulps times log(T) -> 2e-5 absolute, 1e-4 relative.
    // logSumExp is a sum of at most 127 exponentials plus a max: same order. Gradients sum up to T
    // products of float32 terms of size ~1 (times the group size, at most 4 here, for a shared key)
    // -> 1e-4 absolute, 1e-3 relative.
    internal const double OutAtol = 2e-5, OutRtol = 1e-4;
    internal const double GradAtol = 1e-4, GradRtol = 1e-3;

    /// <summary>
    /// (B, T, H, Hkv, D): the awkward T of the brief; multi-head (Hkv = H) with head sizes 1, 8, 13, 64,
    /// 70 and the maximum 128; grouped-query with groups of 2, 3 and 4 and head sizes 8, 12, 24, 128.
    /// </summary>
    static readonly (int B, int T, int H, int Hkv, int D)[] Shapes =
    [
        (2, 1, 2, 2, 8),
        (2, 7, 3, 3, 13),
        (1, 33, 2, 2, 64),
        (2, 33, 1, 1, 1),
        (1, 40, 1, 1, 70),
        (1, 9, 1, 1, 128),
        (1, 127, 1, 1, 8),    // long sequence: one head only, so the ILGPU CPU simulator stays quick
        (2, 127, 3, 3, 16),   // cpu only (below)
        (2, 7, 4, 2, 8),      // GQA, groups of 2
        (1, 33, 3, 1, 12),    // GQA, one kv head for three query heads (multi-query)
        (1, 9, 2, 1, 128),    // GQA at the largest head size
        (2, 40, 4, 1, 24),    // cpu only: two key tiles, a group of 4
        (1, 70, 6, 2, 64),    // cpu only: Qwen-like group of 3 over several 64-row GEMM blocks
    ];

    public static IEnumerable<object[]> Cases =>
        from device in TestBackends.Names.Select(n => (string)n[0])
        from i in Enumerable.Range(0, Shapes.Length)
        let s = Shapes[i]
        where device != "ilgpu-cpu" || s.B * s.H * s.T <= 200
        select new object[] { device, s.B, s.T, s.H, s.Hkv, s.D };

    /// <summary>Head layouts (H, Hkv, D) for the decode tests: multi-head, and groups of 2 and 3.</summary>
    static readonly (int H, int Hkv, int D)[] Heads = [(2, 2, 13), (4, 2, 8), (3, 1, 12)];

    public static IEnumerable<object[]> HeadCases =>
        from device in TestBackends.Names.Select(n => (string)n[0])
        from h in Heads
        select new object[] { device, h.H, h.Hkv, h.D };

    internal static int Width(int H, int Hkv, int D) => (H + 2 * Hkv) * D;

    internal static float[] Qkv(int seed, int B, int T, int H, int Hkv, int D) => TestData.Floats(seed, (long)B * T * Width(H, Hkv, D), 1.5);

    [SkippableTheory, MemberData(nameof(Cases))]
    public void ForwardMatchesReference(string device, int B, int T, int H, int Hkv, int D)
    {
        var backend = TestBackends.Get(device);
        var qkv = Qkv(11 + T, B, T, H, Hkv, D);
        var (expOut, expLse) = AttentionReference.Forward(TestData.ToDouble(qkv), B, T, H, Hkv, D);

        var output = backend.Allocate<float>(B * T * H * D).All;
        var lse = backend.Allocate<float>(B * H * T).All;
        backend.AttentionForward(backend.Upload<float>(qkv), B, T, H, Hkv, D, output, lse);

        Check.Close(expOut, backend.ToArray(output), OutAtol, OutRtol, "attention output");
        Check.Close(expLse, backend.ToArray(lse), OutAtol, OutRtol, "logSumExp");
    }

    [Theory]
    [InlineData(1, 5, 2, 2, 3)]
    [InlineData(2, 4, 1, 1, 4)]
    [InlineData(1, 5, 4, 2, 3)]
    [InlineData(2, 4, 3, 1, 2)]
    public void ReferenceBackwardMatchesFiniteDifferences(int B, int T, int H, int Hkv, int D)
    {
        var qkv = TestData.ToDouble(Qkv(3, B, T, H, Hkv, D));
        var weights = TestData.ToDouble(TestData.Floats(4, B * T * H * D));
        double Loss(double[] x) => FiniteDifference.Dot(weights, AttentionReference.Forward(x, B, T, H, Hkv, D).Output);
        var numeric = FiniteDifference.Gradient(Loss, qkv);
        var analytic = AttentionReference.Backward(weights, qkv, B, T, H, Hkv, D);
        // Central differences with h = 1e-5 on a smooth float64 function: truncation ~h² and
        // rounding ~1e-16/h, both far below 1e-7.
        Check.Close(numeric, analytic, 1e-7, 1e-6, "reference dQkv vs finite differences");
    }

    /// <summary>
    /// The reference's grouped-query path against its multi-head path on repeated key/value heads: the
    /// outputs are the same, and a shared head's gradient is the sum of its copies' gradients.
    /// </summary>
    [Theory]
    [InlineData(2, 6, 4, 2, 3)]
    [InlineData(1, 5, 3, 1, 4)]
    public void ReferenceGroupedQueryEqualsRepeatedKeyValueHeads(int B, int T, int H, int Hkv, int D)
    {
        var qkv = TestData.ToDouble(Qkv(5, B, T, H, Hkv, D));
        var repeated = AttentionReference.RepeatKv(qkv, B, T, H, Hkv, D);
        var gqa = AttentionReference.Forward(qkv, B, T, H, Hkv, D);
        var mha = AttentionReference.Forward(repeated, B, T, H, H, D);
        // Same float64 arithmetic in the same order: equal to rounding.
        Check.Close(mha.Output, gqa.Output, 1e-12, 1e-12, "GQA output vs MHA on repeated heads");
        Check.Close(mha.LogSumExp, gqa.LogSumExp, 1e-12, 1e-12, "GQA logSumExp vs MHA on repeated heads");

        var dOut = TestData.ToDouble(TestData.Floats(6, B * T * H * D));
        var dGqa = AttentionReference.Backward(dOut, qkv, B, T, H, Hkv, D);
        var dMha = AttentionReference.Backward(dOut, repeated, B, T, H, H, D);
        // Fold the repeated heads' gradients back: q copies through; k and v of a group sum.
        int group = H / Hkv, W = Width(H, Hkv, D), Wm = 3 * H * D;
        var folded = new double[dGqa.Length];
        for (int bt = 0; bt < B * T; bt++)
            for (int h = 0; h < H; h++)
                for (int d = 0; d < D; d++)
                {
                    int kvh = h / group;
                    folded[bt * W + h * D + d] += dMha[bt * Wm + h * D + d];
                    folded[bt * W + (H + kvh) * D + d] += dMha[bt * Wm + (H + h) * D + d];
                    folded[bt * W + (H + Hkv + kvh) * D + d] += dMha[bt * Wm + (2 * H + h) * D + d];
                }
        Check.Close(folded, dGqa, 1e-12, 1e-10, "GQA dQkv vs summed MHA gradients of the copies");
    }

    [SkippableTheory, MemberData(nameof(Cases))]
    public void BackwardMatchesReference(string device, int B, int T, int H, int Hkv, int D)
    {
        var backend = TestBackends.Get(device);
        var qkv = Qkv(21 + T, B, T, H, Hkv, D);
        var dOut = TestData.Floats(22 + T, B * T * H * D);
        var expected = AttentionReference.Backward(TestData.ToDouble(dOut), TestData.ToDouble(qkv), B, T, H, Hkv, D);

        var (qkvBuf, output, lse) = RunForward(backend, qkv, B, T, H, Hkv, D);
        var dQkv = backend.Upload<float>(TestData.Floats(23, B * T * Width(H, Hkv, D), 100));   // garbage: must be overwritten
        backend.AttentionBackward(backend.Upload<float>(dOut), qkvBuf, output, lse, B, T, H, Hkv, D, dQkv);

        Check.Close(expected, backend.ToArray(dQkv), GradAtol, GradRtol, "dQkv");
    }

    [SkippableTheory, MemberData(nameof(HeadCases))]
    public void BackwardOverwritesDQkv(string device, int H, int Hkv, int D)
    {
        var backend = TestBackends.Get(device);
        const int B = 2, T = 9;
        var qkv = Qkv(31, B, T, H, Hkv, D);
        var dOut = backend.Upload<float>(TestData.Floats(32, B * T * H * D));
        var (qkvBuf, output, lse) = RunForward(backend, qkv, B, T, H, Hkv, D);
        var dQkv = backend.Allocate<float>(B * T * Width(H, Hkv, D)).All;

        backend.AttentionBackward(dOut, qkvBuf, output, lse, B, T, H, Hkv, D, dQkv);
        var first = backend.ToArray(dQkv);
        backend.AttentionBackward(dOut, qkvBuf, output, lse, B, T, H, Hkv, D, dQkv);
        var second = backend.ToArray(dQkv);

        Assert.Contains(first, v => v != 0f);
        Assert.Equal(first, second);   // same inputs, same arithmetic: bit-identical, not doubled
    }

    /// <summary>
    /// Prefill T0 positions with KvCacheWrite, then decode the rest one token at a time: every step's
    /// output must equal AttentionForward's over the full sequence at that position.
    /// </summary>
    [SkippableTheory, MemberData(nameof(HeadCases))]
    public void PrefillThenDecodeMatchesFullForward(string device, int H, int Hkv, int D)
    {
        var backend = TestBackends.Get(device);
        const int B = 2, T = 11, maxT = 16, T0 = 4;
        int W = Width(H, Hkv, D), HD = H * D;
        var qkv = Qkv(41, B, T, H, Hkv, D);
        var full = backend.ToArray(RunForward(backend, qkv, B, T, H, Hkv, D).Output);
        var expected = AttentionReference.Forward(TestData.ToDouble(qkv), B, T, H, Hkv, D).Output;

        var kCache = backend.Allocate<float>(B * Hkv * maxT * D).All;
        var vCache = backend.Allocate<float>(B * Hkv * maxT * D).All;
        backend.KvCacheWrite(backend.Upload<float>(Prefix(qkv, B, T, W, T0)), B, T0, H, Hkv, D, maxT, kCache, vCache);

        var step = backend.Allocate<float>(B * W).All;
        var positions = backend.Allocate<int>(B).All;
        var output = backend.Allocate<float>(B * HD).All;
        for (int t = T0; t < T; t++)
        {
            var pos = Enumerable.Repeat(t, B).ToArray();
            backend.Upload(step, Rows(qkv, T, W, pos));
            backend.Upload(positions, pos);
            backend.AttentionDecode(step, positions, B, H, Hkv, D, maxT, kCache, vCache, output);
            var got = backend.ToArray(output);
            // Both are float32 attention over the same keys, summed in different orders.
            Check.Close(Array.ConvertAll(Rows(full, T, HD, pos), v => (double)v), got, OutAtol, OutRtol, $"decode vs forward at t={t}");
            Check.Close(Rows(expected, T, HD, pos), got, OutAtol, OutRtol, $"decode vs reference at t={t}");
        }
    }

    /// <summary>The cache holds each key/value head once ([B, Hkv, maxT, D]), in the order of the qkv row.</summary>
    [SkippableTheory, MemberData(nameof(HeadCases))]
    public void KvCacheWriteStoresEachKeyValueHeadOnce(string device, int H, int Hkv, int D)
    {
        var backend = TestBackends.Get(device);
        const int B = 2, T = 5, maxT = 7;
        int W = Width(H, Hkv, D);
        var qkv = Qkv(45, B, T, H, Hkv, D);
        var kCache = backend.Upload<float>(new float[B * Hkv * maxT * D]);
        var vCache = backend.Upload<float>(new float[B * Hkv * maxT * D]);
        backend.KvCacheWrite(backend.Upload<float>(qkv), B, T, H, Hkv, D, maxT, kCache, vCache);

        var expK = new double[B * Hkv * maxT * D];
        var expV = new double[B * Hkv * maxT * D];
        for (int b = 0; b < B; b++)
            for (int kvh = 0; kvh < Hkv; kvh++)
                for (int t = 0; t < T; t++)
                    for (int d = 0; d < D; d++)
                    {
                        int dst = ((b * Hkv + kvh) * maxT + t) * D + d, src = (b * T + t) * W;
                        expK[dst] = qkv[src + (H + kvh) * D + d];
                        expV[dst] = qkv[src + (H + Hkv + kvh) * D + d];
                    }
        // A copy: exact.
        Check.Close(expK, backend.ToArray(kCache), 0, 0, "kCache");
        Check.Close(expV, backend.ToArray(vCache), 0, 0, "vCache");
    }

    /// <summary>Rows at different positions in one decode call (right-padded prefill, as in batched generation).</summary>
    [SkippableTheory, MemberData(nameof(HeadCases))]
    public void DecodeRowsAtDifferentPositions(string device, int H, int Hkv, int D)
    {
        var backend = TestBackends.Get(device);
        const int B = 3, T = 40, maxT = 40;
        int W = Width(H, Hkv, D), HD = H * D;
        int[] start = [0, 5, 33];   // 33: more than one 32-key tile before the new token
        var qkv = Qkv(51, B, T, H, Hkv, D);
        var expected = AttentionReference.Forward(TestData.ToDouble(qkv), B, T, H, Hkv, D).Output;

        var kCache = backend.Allocate<float>(B * Hkv * maxT * D).All;
        var vCache = backend.Allocate<float>(B * Hkv * maxT * D).All;
        // Prefill writes all of row 0..max(start)-1; positions past a row's own start are padding the
        // decode overwrites before any query can see them.
        int prefill = start.Max();
        backend.KvCacheWrite(backend.Upload<float>(Prefix(qkv, B, T, W, prefill)), B, prefill, H, Hkv, D, maxT, kCache, vCache);

        var step = backend.Allocate<float>(B * W).All;
        var positions = backend.Allocate<int>(B).All;
        var output = backend.Allocate<float>(B * HD).All;
        for (int k = 0; k < T - prefill; k++)
        {
            var pos = start.Select(s => s + k).ToArray();
            backend.Upload(step, Rows(qkv, T, W, pos));
            backend.Upload(positions, pos);
            backend.AttentionDecode(step, positions, B, H, Hkv, D, maxT, kCache, vCache, output);
            Check.Close(Rows(expected, T, HD, pos), backend.ToArray(output), OutAtol, OutRtol, $"decode step {k}");
        }
    }

    [SkippableTheory, MemberData(nameof(TestBackends.Names), MemberType = typeof(TestBackends))]
    public void QueryHeadsThatDoNotSplitOverKeyValueHeadsThrow(string device)
    {
        var backend = TestBackends.Get(device);
        const int B = 1, T = 2, H = 3, Hkv = 2, D = 4;
        var qkv = backend.Allocate<float>(B * T * Width(H, Hkv, D)).All;
        var output = backend.Allocate<float>(B * T * H * D).All;
        var lse = backend.Allocate<float>(B * H * T).All;
        var e = Assert.Throws<ArgumentException>(() => backend.AttentionForward(qkv, B, T, H, Hkv, D, output, lse));
        Assert.Contains("H % Hkv", e.Message);
        Assert.Throws<ArgumentException>(() => backend.AttentionBackward(output, qkv, output, lse, B, T, H, Hkv, D, qkv));
    }

    /// <summary>The ILGPU kernels keep four channels per lane: a larger head fails with the limit named.</summary>
    [SkippableTheory, MemberData(nameof(TestBackends.Names), MemberType = typeof(TestBackends))]
    public void HeadSizeAboveTheKernelLimitThrowsOnIlgpu(string device)
    {
        Skip.If(device == "cpu", "the managed backend has no head-size limit");
        var backend = TestBackends.Get(device);
        const int B = 1, T = 1, H = 1, Hkv = 1, D = 129;
        var qkv = backend.Allocate<float>(B * T * Width(H, Hkv, D)).All;
        var output = backend.Allocate<float>(B * T * H * D).All;
        var lse = backend.Allocate<float>(B * H * T).All;
        var e = Assert.Throws<NotSupportedException>(() => backend.AttentionForward(qkv, B, T, H, Hkv, D, output, lse));
        Assert.Contains("128", e.Message);
    }

    // ----------------------------------------------------------------- helpers

    static (Buf<float> Qkv, Buf<float> Output, Buf<float> Lse) RunForward(Backend backend, float[] qkv, int B, int T, int H, int Hkv, int D)
    {
        var qkvBuf = backend.Upload<float>(qkv);
        var output = backend.Allocate<float>(B * T * H * D).All;
        var lse = backend.Allocate<float>(B * H * T).All;
        backend.AttentionForward(qkvBuf, B, T, H, Hkv, D, output, lse);
        return (qkvBuf, output, lse);
    }

    /// <summary>x[:, 0..T0, :] of a [B, T, width] tensor, as its own [B, T0, width] tensor.</summary>
    static float[] Prefix(float[] x, int B, int T, int width, int T0)
    {
        var p = new float[B * T0 * width];
        for (int b = 0; b < B; b++)
            Array.Copy(x, b * T * width, p, b * T0 * width, T0 * width);
        return p;
    }

    /// <summary>x[b, pos[b], :] of a [B, T, width] tensor for each b, as [B, width].</summary>
    static T[] Rows<T>(T[] x, int Tlen, int width, int[] pos)
    {
        var r = new T[pos.Length * width];
        for (int b = 0; b < pos.Length; b++) Array.Copy(x, (b * Tlen + pos[b]) * width, r, b * width, width);
        return r;
    }

    /// <summary>
    /// Every attention op checks each buffer's length against the shape, on every backend, with a message
    /// naming the op and the buffer: one element short is enough (B 2, T 3, H 4, Hkv 2, D 8: qkv 384,
    /// output 192, logSumExp 24, caches 2·2·5·8 = 160 at maxT 5).
    /// </summary>
    [SkippableTheory]
    [MemberData(nameof(TestBackends.Names), MemberType = typeof(TestBackends))]
    public void A_buffer_one_element_short_is_an_error_naming_it(string device)
    {
        var be = TestBackends.Get(device);
        const int B = 2, T = 3, H = 4, Hkv = 2, D = 8, maxT = 5;
        Buf<float> F(long n) => be.Allocate<float>(n).All;
        void Throws(string expected, Action call) => Assert.Contains(expected, Assert.Throws<ArgumentException>(call).Message);
        Throws("AttentionForward: output holds 191 elements, the shape needs 192", () => be.AttentionForward(F(384), B, T, H, Hkv, D, F(191), F(24)));
        Throws("AttentionForward: logSumExp holds 23", () => be.AttentionForward(F(384), B, T, H, Hkv, D, F(192), F(23)));
        Throws("AttentionForward: qkv holds 383", () => be.AttentionForward(F(383), B, T, H, Hkv, D, F(192), F(24)));
        Throws("AttentionBackward: dQkv holds 383", () => be.AttentionBackward(F(192), F(384), F(192), F(24), B, T, H, Hkv, D, F(383)));
        Throws("AttentionBackward: dOutput holds 191", () => be.AttentionBackward(F(191), F(384), F(192), F(24), B, T, H, Hkv, D, F(384)));
        Throws("KvCacheWrite: vCache holds 159", () => be.KvCacheWrite(F(384), B, T, H, Hkv, D, maxT, F(160), F(159)));
        Throws("AttentionDecode: kCache holds 159", () => be.AttentionDecode(F(128), be.Allocate<int>(2).All, B, H, Hkv, D, maxT, F(159), F(160), F(64)));
        Throws("AttentionDecode: positions holds 1", () => be.AttentionDecode(F(128), be.Allocate<int>(1).All, B, H, Hkv, D, maxT, F(160), F(160), F(64)));
    }
}
