using ArcherIlgpu.Kernels.Tests.Reference;

namespace ArcherIlgpu.Kernels.Tests;

public class RmsNormTests
{
    const float Eps = 1e-6f;   // Llama's rms_norm_eps

    /// <summary>
    /// Every awkward (N, C) pair on cpu plus rows longer than the largest group (256, so threads stride)
    /// and more rows than one dWeight row block (32). On ilgpu-cpu every simulated thread is an OS
    /// thread and every group barrier costs milliseconds, so it gets a few shapes covering the same cases.
    /// </summary>
    static IEnumerable<(int N, int C)> Shapes(string device)
    {
        if (device == "ilgpu-cpu")
            return [(1, 1), (7, 7), (1, 127), (7, 33), (40, 7), (2, 600)];
        var shapes = new List<(int, int)>();
        foreach (int n in Awkward.Sizes)
            foreach (int c in Awkward.Sizes)
                shapes.Add((n, c));
        shapes.Add((300, 600));
        return shapes;
    }

    /// <summary>
    /// (N, H, Hkv, D) for QK-norm: grouped-query (H = 3 per Hkv = 1), equal heads, heads narrower and
    /// wider than a warp, D = 1, and more rows than a dWeight row block.
    /// </summary>
    static IEnumerable<(int N, int H, int Hkv, int D)> QkShapes(string device)
        => device == "ilgpu-cpu"
            ? [(1, 1, 1, 1), (3, 3, 1, 5), (2, 2, 2, 8), (33, 2, 1, 7), (2, 2, 1, 40)]
            : [(1, 1, 1, 1), (3, 3, 1, 5), (2, 2, 2, 8), (7, 4, 2, 33), (33, 2, 1, 7), (40, 6, 2, 64), (5, 2, 1, 300)];

    /// <summary>Inputs with a spread of scales and a non-zero mean (RMSNorm does not centre).</summary>
    static float[] Input(int seed, long n)
    {
        var x = TestData.Floats(seed, n, 2.0);
        for (long i = 0; i < x.Length; i++) x[i] += 0.75f;
        return x;
    }

    // ------------------------------------------------------------------ RMSNorm

    [Fact]
    public void ReferenceMatchesHandValues()
    {
        // x = [3, 4]: mean(x²) = 12.5, rstd = 1/sqrt(12.5 + eps); w = [1, 2]: y = [3, 8] / 3.5355339.
        var (y, r) = RmsNormReference.Forward([3, 4], [1, 2], 1, 2, 0);
        Assert.Equal(1 / Math.Sqrt(12.5), r[0], 12);
        Assert.Equal(0.8485281374, y[0], 9);
        Assert.Equal(2.2627416998, y[1], 9);
    }

    [SkippableTheory, MemberData(nameof(TestBackends.Names), MemberType = typeof(TestBackends))]
    public void ForwardMatchesReference(string device)
    {
        var backend = TestBackends.Get(device);
        foreach (var (N, C) in Shapes(device))
        {
            var x = Input(N + C, N * C); var w = TestData.Floats(1, C);
            var output = backend.Allocate<float>(N * C).All; var rstd = backend.Allocate<float>(N).All;
            backend.RmsNormForward(backend.Upload<float>(x), backend.Upload<float>(w), N, C, Eps, output, rstd);
            var (refOut, refRstd) = RmsNormReference.Forward(TestData.ToDouble(x), TestData.ToDouble(w), N, C, Eps);
            string what = $"{device} rmsnorm N={N} C={C}";
            // A float sum of C <= 600 squares |x| <= 2.75: ~sqrt(C) ulp relative, rsqrt a few ulp more (GPU
            // fast math); outputs |y| <= a few: 1e-4 relative and 2e-5 absolute leave a wide margin.
            Check.Close(refRstd, backend.ToArray(rstd), 1e-6, 1e-4, what + " rstd");
            Check.Close(refOut, backend.ToArray(output), 2e-5, 1e-4, what + " output");
        }
    }

    [SkippableTheory, MemberData(nameof(TestBackends.Names), MemberType = typeof(TestBackends))]
    public void ZeroRowGivesZeroNotNaN(string device)
    {
        // mean(x²) = 0: rstd = 1/sqrt(eps) (finite), y = 0 · rstd · w = 0.
        var backend = TestBackends.Get(device);
        int N = 2, C = 9;
        var output = backend.Upload<float>(Enumerable.Repeat(5f, N * C).ToArray()); var rstd = backend.Allocate<float>(N).All;
        backend.RmsNormForward(backend.Allocate<float>(N * C).All, backend.Upload<float>(TestData.Floats(4, C)), N, C, Eps, output, rstd);
        Assert.All(backend.ToArray(output), v => Assert.Equal(0f, v));
        // 1/sqrt(1e-6) = 1000; float rsqrt (fast math on GPU) within 1e-4 relative.
        Assert.All(backend.ToArray(rstd), v => Assert.Equal(1000.0, v, 0.1));
    }

    [Fact]
    public void ReferenceBackwardMatchesFiniteDifferences()
    {
        foreach (var (N, C) in new[] { (3, 5), (2, 1), (1, 8) })
        {
            var x = TestData.ToDouble(Input(7, N * C)); var w = TestData.ToDouble(TestData.Floats(8, C));
            var dy = TestData.ToDouble(TestData.Floats(10, N * C));
            var (dx, dw) = RmsNormReference.Backward(dy, x, w, N, C, Eps);
            double Loss(double[] xx, double[] ww) => FiniteDifference.Dot(dy, RmsNormReference.Forward(xx, ww, N, C, Eps).output);
            // Central differences with h = 1e-5 on a smooth O(1) function: truncation ~h² f''' ~ 1e-9,
            // rounding ~1e-16/h ~ 1e-11.
            Check.Close(FiniteDifference.Gradient(xx => Loss(xx, w), x), dx, 1e-7, 1e-6, $"dx N={N} C={C}");
            Check.Close(FiniteDifference.Gradient(ww => Loss(x, ww), w), dw, 1e-7, 1e-6, $"dw N={N} C={C}");
        }
    }

    [SkippableTheory, MemberData(nameof(TestBackends.Names), MemberType = typeof(TestBackends))]
    public void BackwardMatchesReferenceAndAccumulatesEverything(string device)
    {
        var backend = TestBackends.Get(device);
        foreach (var (N, C) in Shapes(device))
        {
            var x = Input(N * 3 + C, N * C); var w = TestData.Floats(11, C); var dy = TestData.Floats(12, N * C);
            var dx0 = TestData.Floats(13, N * C); var dw0 = TestData.Floats(14, C);
            var xBuf = backend.Upload<float>(x); var wBuf = backend.Upload<float>(w); var dyBuf = backend.Upload<float>(dy);
            var rstd = backend.Allocate<float>(N).All;
            backend.RmsNormForward(xBuf, wBuf, N, C, Eps, backend.Allocate<float>(N * C).All, rstd);
            var dx = backend.Upload<float>(dx0); var dw = backend.Upload<float>(dw0);
            var (rdx, rdw) = RmsNormReference.Backward(TestData.ToDouble(dy), TestData.ToDouble(x), TestData.ToDouble(w), N, C, Eps);

            // dx: float sums over C terms of O(rstd) ~ O(1) values; dw: sums over N rows of O(1) terms.
            // Errors grow ~sqrt(terms) ulp; the bounds are ~10x what the float paths show (as for LayerNorm).
            double dxTol = 2e-5, pTol = 2e-6 * (N + 8);
            string what = $"{device} rmsnorm backward N={N} C={C}";
            backend.RmsNormBackward(dyBuf, xBuf, wBuf, rstd, N, C, dx, dw);
            Check.Close(Plus(dx0, rdx, 1), backend.ToArray(dx), dxTol, 1e-4, what + " dInput (accumulated onto its start)");
            Check.Close(Plus(dw0, rdw, 1), backend.ToArray(dw), pTol, 1e-5, what + " dWeight");

            // Both accumulate (dInput is the residual stream), so a second call adds everything again.
            backend.RmsNormBackward(dyBuf, xBuf, wBuf, rstd, N, C, dx, dw);
            Check.Close(Plus(dx0, rdx, 2), backend.ToArray(dx), 2 * dxTol, 1e-4, what + " dInput twice");
            Check.Close(Plus(dw0, rdw, 2), backend.ToArray(dw), 2 * pTol, 1e-5, what + " dWeight twice");
        }
    }

    // ------------------------------------------------------------------ QK-norm

    [SkippableTheory, MemberData(nameof(TestBackends.Names), MemberType = typeof(TestBackends))]
    public void QkNormForwardMatchesReferenceAndCopiesValues(string device)
    {
        var backend = TestBackends.Get(device);
        foreach (var (N, H, Hkv, D) in QkShapes(device))
        {
            int W = RmsNormReference.Width(H, Hkv, D), heads = H + Hkv;
            var qkv = Input(N * W + D, N * W); var qw = TestData.Floats(21, D); var kw = TestData.Floats(22, D);
            var output = backend.Upload<float>(Enumerable.Repeat(1000f, N * W).ToArray());
            var rstd = backend.Allocate<float>(N * heads).All;
            backend.QkNormForward(backend.Upload<float>(qkv), backend.Upload<float>(qw), backend.Upload<float>(kw), N, H, Hkv, D, Eps,
                output, rstd);
            var (refOut, refRstd) = RmsNormReference.QkForward(TestData.ToDouble(qkv), TestData.ToDouble(qw), TestData.ToDouble(kw),
                N, H, Hkv, D, Eps);
            string what = $"{device} qknorm N={N} H={H} Hkv={Hkv} D={D}";
            // As the RMSNorm forward over rows of D <= 300; value heads are copied, so exactly equal there.
            Check.Close(refRstd, backend.ToArray(rstd), 1e-6, 1e-4, what + " rstd");
            Check.Close(refOut, backend.ToArray(output), 2e-5, 1e-4, what + " output");
            var got = backend.ToArray(output);
            for (int n = 0; n < N; n++)
                for (int i = heads * D; i < W; i++) Assert.Equal(qkv[n * W + i], got[n * W + i]);
        }
    }

    [Fact]
    public void QkReferenceBackwardMatchesFiniteDifferences()
    {
        foreach (var (N, H, Hkv, D) in new[] { (2, 3, 1, 5), (1, 2, 2, 3), (2, 1, 1, 1) })
        {
            int W = RmsNormReference.Width(H, Hkv, D);
            var x = TestData.ToDouble(Input(31, N * W)); var qw = TestData.ToDouble(TestData.Floats(32, D));
            var kw = TestData.ToDouble(TestData.Floats(33, D)); var dy = TestData.ToDouble(TestData.Floats(34, N * W));
            var (dx, dqw, dkw) = RmsNormReference.QkBackward(dy, x, qw, kw, N, H, Hkv, D, Eps);
            double Loss(double[] xx, double[] q, double[] k) => FiniteDifference.Dot(dy, RmsNormReference.QkForward(xx, q, k, N, H, Hkv, D, Eps).output);
            // As for RMSNorm: central differences of a smooth O(1) function, error ~1e-9.
            string what = $"N={N} H={H} Hkv={Hkv} D={D}";
            Check.Close(FiniteDifference.Gradient(xx => Loss(xx, qw, kw), x), dx, 1e-7, 1e-6, "dQkv " + what);
            Check.Close(FiniteDifference.Gradient(q => Loss(x, q, kw), qw), dqw, 1e-7, 1e-6, "dQWeight " + what);
            Check.Close(FiniteDifference.Gradient(k => Loss(x, qw, k), kw), dkw, 1e-7, 1e-6, "dKWeight " + what);
        }
    }

    [SkippableTheory, MemberData(nameof(TestBackends.Names), MemberType = typeof(TestBackends))]
    public void QkNormBackwardOverwritesDQkvAndAccumulatesWeights(string device)
    {
        var backend = TestBackends.Get(device);
        foreach (var (N, H, Hkv, D) in QkShapes(device))
        {
            int W = RmsNormReference.Width(H, Hkv, D), heads = H + Hkv;
            var x = Input(N * 5 + W, N * W); var qw = TestData.Floats(41, D); var kw = TestData.Floats(42, D);
            var dy = TestData.Floats(43, N * W); var dqw0 = TestData.Floats(44, D); var dkw0 = TestData.Floats(45, D);
            var xBuf = backend.Upload<float>(x); var qwBuf = backend.Upload<float>(qw); var kwBuf = backend.Upload<float>(kw);
            var dyBuf = backend.Upload<float>(dy); var rstd = backend.Allocate<float>(N * heads).All;
            backend.QkNormForward(xBuf, qwBuf, kwBuf, N, H, Hkv, D, Eps, backend.Allocate<float>(N * W).All, rstd);
            // Stale values in dQkv must not leak through: it is OVERWRITTEN.
            var dx = backend.Upload<float>(Enumerable.Repeat(1000f, N * W).ToArray());
            var dqw = backend.Upload<float>(dqw0); var dkw = backend.Upload<float>(dkw0);
            var (rdx, rdqw, rdkw) = RmsNormReference.QkBackward(TestData.ToDouble(dy), TestData.ToDouble(x), TestData.ToDouble(qw),
                TestData.ToDouble(kw), N, H, Hkv, D, Eps);

            // As for RMSNorm; a weight gradient sums N·H (or N·Hkv) head rows, so its budget grows with that count.
            double dxTol = 2e-5, qTol = 2e-6 * (N * H + 8), kTol = 2e-6 * (N * Hkv + 8);
            string what = $"{device} qknorm backward N={N} H={H} Hkv={Hkv} D={D}";
            backend.QkNormBackward(dyBuf, xBuf, qwBuf, kwBuf, rstd, N, H, Hkv, D, dx, dqw, dkw);
            var once = backend.ToArray(dx);
            Check.Close(rdx, once, dxTol, 1e-4, what + " dQkv");
            Check.Close(Plus(dqw0, rdqw, 1), backend.ToArray(dqw), qTol, 1e-5, what + " dQWeight");
            Check.Close(Plus(dkw0, rdkw, 1), backend.ToArray(dkw), kTol, 1e-5, what + " dKWeight");

            // The weight gradients accumulate; dQkv is written again with the same values.
            backend.QkNormBackward(dyBuf, xBuf, qwBuf, kwBuf, rstd, N, H, Hkv, D, dx, dqw, dkw);
            Assert.Equal(once, backend.ToArray(dx));
            Check.Close(Plus(dqw0, rdqw, 2), backend.ToArray(dqw), 2 * qTol, 1e-5, what + " dQWeight twice");
            Check.Close(Plus(dkw0, rdkw, 2), backend.ToArray(dkw), 2 * kTol, 1e-5, what + " dKWeight twice");
        }
    }

    [SkippableTheory, MemberData(nameof(TestBackends.Names), MemberType = typeof(TestBackends))]
    public void QkNormWorksInPlace(string device)
    {
        // A model can normalise qkv where it is and turn dOutput into dQkv where it is: same results as
        // with separate buffers, bit for bit (the same code runs in the same order).
        var backend = TestBackends.Get(device);
        foreach (var (N, H, Hkv, D) in new[] { (3, 3, 1, 5), (2, 2, 2, 40) })
        {
            int W = RmsNormReference.Width(H, Hkv, D), heads = H + Hkv;
            var x = Input(51, N * W); var dy = TestData.Floats(52, N * W);
            var qw = backend.Upload<float>(TestData.Floats(53, D)); var kw = backend.Upload<float>(TestData.Floats(54, D));
            var xBuf = backend.Upload<float>(x); var rstd = backend.Allocate<float>(N * heads).All;
            var separate = backend.Allocate<float>(N * W).All;
            backend.QkNormForward(xBuf, qw, kw, N, H, Hkv, D, Eps, separate, rstd);
            var inPlace = backend.Upload<float>(x);
            backend.QkNormForward(inPlace, qw, kw, N, H, Hkv, D, Eps, inPlace, backend.Allocate<float>(N * heads).All);
            Assert.Equal(backend.ToArray(separate), backend.ToArray(inPlace));

            var dx = backend.Allocate<float>(N * W).All;
            var dqw = backend.Allocate<float>(D).All; var dkw = backend.Allocate<float>(D).All;
            backend.QkNormBackward(backend.Upload<float>(dy), xBuf, qw, kw, rstd, N, H, Hkv, D, dx, dqw, dkw);
            var dyInPlace = backend.Upload<float>(dy);
            var dqw2 = backend.Allocate<float>(D).All; var dkw2 = backend.Allocate<float>(D).All;
            backend.QkNormBackward(dyInPlace, xBuf, qw, kw, rstd, N, H, Hkv, D, dyInPlace, dqw2, dkw2);
            Assert.Equal(backend.ToArray(dx), backend.ToArray(dyInPlace));
            Assert.Equal(backend.ToArray(dqw), backend.ToArray(dqw2));
            Assert.Equal(backend.ToArray(dkw), backend.ToArray(dkw2));
        }
    }

    static double[] Plus(float[] start, double[] delta, int times)
    {
        var r = new double[start.Length];
        for (int i = 0; i < r.Length; i++) r[i] = start[i] + times * delta[i];
        return r;
    }
}
