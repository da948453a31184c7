using ArcherIlgpu.Kernels;
using ArcherIlgpu.Kernels.Tests.Reference;

namespace ArcherIlgpu.Kernels.Tests;

public class AttentionTests
{
    // Tolerances. Outputs are convex combinations of values in [-1, 1] computed in float32 with an
    // online softmax: relative error a few float32 ulps times log(T) -> 2e-5 absolute, 1e-4 relative.
    // logSumExp is a sum of at most 127 exponentials plus a max: same order. Gradients sum up to T
    // products of float32 terms of size ~1 -> 1e-4 absolute, 1e-3 relative.
    const double OutAtol = 2e-5, OutRtol = 1e-4;
    const double GradAtol = 1e-4, GradRtol = 1e-3;

    /// <summary>(B, T, H, D): the awkward T of the brief, head sizes 1, 8, 13, 64, 70 and the maximum 128.</summary>
    static readonly (int B, int T, int H, int D)[] Shapes =
    [
        (2, 1, 2, 8),
        (2, 7, 3, 13),
        (1, 33, 2, 64),
        (2, 33, 1, 1),
        (1, 40, 1, 70),
        (1, 9, 1, 128),
        (1, 127, 1, 8),    // long sequence: one head only, so the ILGPU CPU simulator stays quick
        (2, 127, 3, 16),   // cpu only (below)
    ];

    public static IEnumerable<object[]> Cases =>
        from device in TestBackends.Names.Select(n => (string)n[0])
        from i in Enumerable.Range(0, Shapes.Length)
        where device != "ilgpu-cpu" || Shapes[i].B * Shapes[i].H * Shapes[i].T <= 200
        select new object[] { device, Shapes[i].B, Shapes[i].T, Shapes[i].H, Shapes[i].D };

    static float[] Qkv(int seed, int B, int T, int C) => TestData.Floats(seed, (long)B * T * 3 * C, 1.5);

    [SkippableTheory, MemberData(nameof(Cases))]
    public void ForwardMatchesReference(string device, int B, int T, int H, int D)
    {
        var backend = TestBackends.Get(device);
        int C = H * D;
        var qkv = Qkv(11 + T, B, T, C);
        var (expOut, expLse) = AttentionReference.Forward(TestData.ToDouble(qkv), B, T, C, H);

        var output = backend.Allocate<float>(B * T * C).All;
        var lse = backend.Allocate<float>(B * H * T).All;
        backend.AttentionForward(backend.Upload<float>(qkv), B, T, C, H, output, lse);

        Check.Close(expOut, backend.ToArray(output), OutAtol, OutRtol, "attention output");
        Check.Close(expLse, backend.ToArray(lse), OutAtol, OutRtol, "logSumExp");
    }

    [Theory]
    [InlineData(1, 5, 2, 3)]
    [InlineData(2, 4, 1, 4)]
    public void ReferenceBackwardMatchesFiniteDifferences(int B, int T, int H, int D)
    {
        int C = H * D;
        var qkv = TestData.ToDouble(Qkv(3, B, T, C));
        var weights = TestData.ToDouble(TestData.Floats(4, B * T * C));
        double Loss(double[] x) => FiniteDifference.Dot(weights, AttentionReference.Forward(x, B, T, C, H).Output);
        var numeric = FiniteDifference.Gradient(Loss, qkv);
        var analytic = AttentionReference.Backward(weights, qkv, B, T, C, H);
        // Central differences with h = 1e-5 on a smooth float64 function: truncation ~h² and
        // rounding ~1e-16/h, both far below 1e-7.
        Check.Close(numeric, analytic, 1e-7, 1e-6, "reference dQkv vs finite differences");
    }

    [SkippableTheory, MemberData(nameof(Cases))]
    public void BackwardMatchesReference(string device, int B, int T, int H, int D)
    {
        var backend = TestBackends.Get(device);
        int C = H * D;
        var qkv = Qkv(21 + T, B, T, C);
        var dOut = TestData.Floats(22 + T, B * T * C);
        var expected = AttentionReference.Backward(TestData.ToDouble(dOut), TestData.ToDouble(qkv), B, T, C, H);

        var (qkvBuf, output, lse) = RunForward(backend, qkv, B, T, C, H);
        var dQkv = backend.Upload<float>(TestData.Floats(23, B * T * 3 * C, 100));   // garbage: must be overwritten
        backend.AttentionBackward(backend.Upload<float>(dOut), qkvBuf, output, lse, B, T, C, H, dQkv);

        Check.Close(expected, backend.ToArray(dQkv), GradAtol, GradRtol, "dQkv");
    }

    [SkippableTheory, MemberData(nameof(TestBackends.Names), MemberType = typeof(TestBackends))]
    public void BackwardOverwritesDQkv(string device)
    {
        var backend = TestBackends.Get(device);
        const int B = 2, T = 9, H = 2, D = 5, C = H * D;
        var qkv = Qkv(31, B, T, C);
        var dOut = backend.Upload<float>(TestData.Floats(32, B * T * C));
        var (qkvBuf, output, lse) = RunForward(backend, qkv, B, T, C, H);
        var dQkv = backend.Allocate<float>(B * T * 3 * C).All;

        backend.AttentionBackward(dOut, qkvBuf, output, lse, B, T, C, H, dQkv);
        var first = backend.ToArray(dQkv);
        backend.AttentionBackward(dOut, qkvBuf, output, lse, B, T, C, H, dQkv);
        var second = backend.ToArray(dQkv);

        Assert.Contains(first, v => v != 0f);
        Assert.Equal(first, second);   // same inputs, same arithmetic: bit-identical, not doubled
    }

    /// <summary>
    /// Prefill T0 positions with KvCacheWrite, then decode the rest one token at a time: every step's
    /// output must equal AttentionForward's over the full sequence at that position.
    /// </summary>
    [SkippableTheory, MemberData(nameof(TestBackends.Names), MemberType = typeof(TestBackends))]
    public void PrefillThenDecodeMatchesFullForward(string device)
    {
        var backend = TestBackends.Get(device);
        const int B = 2, T = 11, H = 2, D = 13, C = H * D, maxT = 16, T0 = 4;
        var qkv = Qkv(41, B, T, C);
        var full = FullForward(backend, qkv, B, T, C, H);
        var expected = AttentionReference.Forward(TestData.ToDouble(qkv), B, T, C, H).Output;

        var kCache = backend.Allocate<float>(B * H * maxT * D).All;
        var vCache = backend.Allocate<float>(B * H * maxT * D).All;
        backend.KvCacheWrite(backend.Upload<float>(Prefix(qkv, B, T, C, T0)), B, T0, C, H, maxT, kCache, vCache);

        var step = backend.Allocate<float>(B * 3 * C).All;
        var positions = backend.Allocate<int>(B).All;
        var output = backend.Allocate<float>(B * C).All;
        for (int t = T0; t < T; t++)
        {
            backend.Upload(step, Rows(qkv, T, C, Enumerable.Repeat(t, B).ToArray()));
            backend.Upload(positions, Enumerable.Repeat(t, B).ToArray());
            backend.AttentionDecode(step, positions, B, C, H, maxT, kCache, vCache, output);
            var got = backend.ToArray(output);
            var fromForward = RowsOut(full, T, C, Enumerable.Repeat(t, B).ToArray());
            // Both are float32 attention over the same keys, summed in different orders.
            Check.Close(Array.ConvertAll(fromForward, v => (double)v), got, OutAtol, OutRtol, $"decode vs forward at t={t}");
            Check.Close(RowsOut(expected, T, C, Enumerable.Repeat(t, B).ToArray()), got, OutAtol, OutRtol, $"decode vs reference at t={t}");
        }
    }

    /// <summary>Rows at different positions in one decode call (right-padded prefill, as in batched generation).</summary>
    [SkippableTheory, MemberData(nameof(TestBackends.Names), MemberType = typeof(TestBackends))]
    public void DecodeRowsAtDifferentPositions(string device)
    {
        var backend = TestBackends.Get(device);
        const int B = 3, T = 40, H = 2, D = 8, C = H * D, maxT = 40;
        int[] start = [0, 5, 33];   // 33: more than one 32-key tile before the new token
        var qkv = Qkv(51, B, T, C);
        var expected = AttentionReference.Forward(TestData.ToDouble(qkv), B, T, C, H).Output;

        var kCache = backend.Allocate<float>(B * H * maxT * D).All;
        var vCache = backend.Allocate<float>(B * H * maxT * D).All;
        // Prefill writes all of row 0..max(start)-1; positions past a row's own start are padding the
        // decode overwrites before any query can see them.
        int prefill = start.Max();
        backend.KvCacheWrite(backend.Upload<float>(Prefix(qkv, B, T, C, prefill)), B, prefill, C, H, maxT, kCache, vCache);

        var step = backend.Allocate<float>(B * 3 * C).All;
        var positions = backend.Allocate<int>(B).All;
        var output = backend.Allocate<float>(B * C).All;
        for (int k = 0; k < T - prefill; k++)
        {
            var pos = start.Select(s => s + k).ToArray();
            backend.Upload(step, Rows(qkv, T, C, pos));
            backend.Upload(positions, pos);
            backend.AttentionDecode(step, positions, B, C, H, maxT, kCache, vCache, output);
            Check.Close(RowsOut(expected, T, C, pos), backend.ToArray(output), OutAtol, OutRtol, $"decode step {k}");
        }
    }

    // ----------------------------------------------------------------- helpers

    static (Buf<float> Qkv, Buf<float> Output, Buf<float> Lse) RunForward(Backend backend, float[] qkv, int B, int T, int C, int H)
    {
        var qkvBuf = backend.Upload<float>(qkv);
        var output = backend.Allocate<float>(B * T * C).All;
        var lse = backend.Allocate<float>(B * H * T).All;
        backend.AttentionForward(qkvBuf, B, T, C, H, output, lse);
        return (qkvBuf, output, lse);
    }

    static float[] FullForward(Backend backend, float[] qkv, int B, int T, int C, int H)
        => backend.ToArray(RunForward(backend, qkv, B, T, C, H).Output);

    /// <summary>qkv[:, 0..T0, :] as its own [B, T0, 3C] tensor.</summary>
    static float[] Prefix(float[] qkv, int B, int T, int C, int T0)
    {
        var p = new float[B * T0 * 3 * C];
        for (int b = 0; b < B; b++)
            Array.Copy(qkv, b * T * 3 * C, p, b * T0 * 3 * C, T0 * 3 * C);
        return p;
    }

    /// <summary>qkv[b, pos[b], :] for each b, as [B, 3C].</summary>
    static float[] Rows(float[] qkv, int T, int C, int[] pos)
    {
        var r = new float[pos.Length * 3 * C];
        for (int b = 0; b < pos.Length; b++) Array.Copy(qkv, (b * T + pos[b]) * 3 * C, r, b * 3 * C, 3 * C);
        return r;
    }

    static T[] RowsOut<T>(T[] output, int Tlen, int C, int[] pos)
    {
        var r = new T[pos.Length * C];
        for (int b = 0; b < pos.Length; b++) Array.Copy(output, (b * Tlen + pos[b]) * C, r, b * C, C);
        return r;
    }
}
