using ArcherIlgpu.Kernels.Tests.Reference;

namespace ArcherIlgpu.Kernels.Tests;

public class SwiGluTests
{
    /// <summary>
    /// (N, I): every awkward pair, a row wider than the CPU's 16-lane vectors with a tail, and on cpu
    /// enough rows to be split over threads (> 64K elements).
    /// </summary>
    static IEnumerable<(int N, int I)> Shapes(string device)
    {
        var shapes = new List<(int, int)>();
        foreach (int n in Awkward.Sizes)
            foreach (int i in Awkward.Sizes)
                if (device == "cpu" || n * i <= 33 * 33 || n == 1 || i == 1) shapes.Add((n, i));
        shapes.Add((3, 1300));
        if (device == "cpu") shapes.Add((100, 1001));
        return shapes;
    }

    // Gates in [-8, 8] cover both tails of the sigmoid and its curved middle; ups in [-1.5, 1.5].
    static float[] GateUp(int seed, int N, int I)
    {
        var gu = TestData.Floats(seed, N * 2 * I, 1.5);
        var gates = TestData.Floats(seed + 1, N * I, 8.0);
        for (int n = 0; n < N; n++) Array.Copy(gates, n * I, gu, n * 2 * I, I);
        return gu;
    }

    // Budget: exp from Vector512/256.Exp or MathF.Exp (cpu, ~1 ulp) or ex2.approx (CUDA fast math,
    // ~2 ulp plus the rounding of −g·log2 e, ~1e-6 relative at |g| = 8), one division (rcp.approx:
    // 1 ulp) and a few roundings; |silu(g)| <= 8 and |u| <= 1.5 give |y| <= 12, so 1e-6 relative plus
    // 2e-6 absolute is several times the largest error seen.
    const double Atol = 2e-6, Rtol = 1e-6;

    [SkippableTheory, MemberData(nameof(TestBackends.Names), MemberType = typeof(TestBackends))]
    public void ForwardMatchesReference(string device)
    {
        var backend = TestBackends.Get(device);
        foreach (var (N, I) in Shapes(device))
        {
            var gu = GateUp(N + I, N, I);
            var y = backend.Upload<float>(Enumerable.Repeat(1000f, N * I).ToArray());
            backend.SwiGluForward(backend.Upload<float>(gu), N, I, y);
            Check.Close(SwiGluReference.Forward(TestData.ToDouble(gu), N, I), backend.ToArray(y), Atol, Rtol, $"{device} swiglu N={N} I={I}");
        }
    }

    [Fact]
    public void ReferenceMatchesKnownValuesAndFiniteDifferences()
    {
        // silu(0) = 0; silu(1) = 1 / (1 + e^-1) = 0.7310586; silu(-1) = -1 / (1 + e) = -0.2689414.
        Assert.Equal(0.0, SwiGluReference.Silu(0.0));
        Assert.Equal(0.7310586, SwiGluReference.Silu(1.0), 7);
        Assert.Equal(-0.2689414, SwiGluReference.Silu(-1.0), 7);
        int N = 3, I = 5;
        var gu = TestData.ToDouble(GateUp(3, N, I)); var dy = TestData.ToDouble(TestData.Floats(4, N * I));
        var fd = FiniteDifference.Gradient(x => FiniteDifference.Dot(dy, SwiGluReference.Forward(x, N, I)), gu);
        // Central differences, h = 1e-5, smooth function with O(1) third derivative: error ~1e-10.
        Check.Close(fd, SwiGluReference.Backward(dy, gu, N, I), 1e-8, 1e-7, "swiglu backward vs finite differences");
    }

    [SkippableTheory, MemberData(nameof(TestBackends.Names), MemberType = typeof(TestBackends))]
    public void BackwardMatchesReferenceAndOverwrites(string device)
    {
        var backend = TestBackends.Get(device);
        foreach (var (N, I) in Shapes(device))
        {
            var gu = GateUp(N * 3 + I, N, I); var dy = TestData.Floats(N + 2 * I, N * I);
            var guBuf = backend.Upload<float>(gu); var dyBuf = backend.Upload<float>(dy);
            // Stale values in dGateUp must not leak through: it is OVERWRITTEN.
            var d = backend.Upload<float>(Enumerable.Repeat(1000f, N * 2 * I).ToArray());
            backend.SwiGluBackward(dyBuf, guBuf, N, I, d);
            var once = backend.ToArray(d);
            // The forward's budget: silu' <= 1.1 and |u| <= 1.5 bound dg, du is dy times silu (|.| <= 8).
            Check.Close(SwiGluReference.Backward(TestData.ToDouble(dy), TestData.ToDouble(gu), N, I), once, Atol, Rtol,
                $"{device} swiglu backward N={N} I={I}");
            backend.SwiGluBackward(dyBuf, guBuf, N, I, d);
            Assert.Equal(once, backend.ToArray(d));
        }
    }

    [SkippableTheory, MemberData(nameof(TestBackends.Names), MemberType = typeof(TestBackends))]
    public void LargeGatesStayFinite(string device)
    {
        // exp(−g) overflows float for g < −88.7 and underflows for g > 87: the sigmoid must still be 0 or 1.
        // 17 gates so that the cpu runs them through its 16-lane vector loop and the scalar tail.
        float[] gates = [-1000f, -100f, -89f, -88f, -30f, -1f, 0f, 1f, 30f, 88f, 89f, 100f, 1000f, -100f, 100f, -95f, 95f];
        int I = gates.Length;
        var gu = new float[2 * I];
        for (int i = 0; i < I; i++) { gu[i] = gates[i]; gu[I + i] = i % 2 == 0 ? 0.5f : -2f; }
        var dy = TestData.Floats(5, I);
        var backend = TestBackends.Get(device);
        var y = backend.Allocate<float>(I).All; var d = backend.Allocate<float>(2 * I).All;
        var guBuf = backend.Upload<float>(gu);
        backend.SwiGluForward(guBuf, 1, I, y);
        backend.SwiGluBackward(backend.Upload<float>(dy), guBuf, 1, I, d);
        var gud = TestData.ToDouble(gu);
        // Far tails: silu(g) = g exactly (to float) for g >= 30 and |silu(g)| < 1e-11 for g <= −30; the
        // middle entries have the forward's budget, scaled by |g| <= 1000 for the relative part.
        Check.Close(SwiGluReference.Forward(gud, 1, I), backend.ToArray(y), Atol, Rtol, $"{device} swiglu large gates");
        Check.Close(SwiGluReference.Backward(TestData.ToDouble(dy), gud, 1, I), backend.ToArray(d), Atol, Rtol,
            $"{device} swiglu backward large gates");
    }
}
