using ArcherIlgpu.Kernels.Tests.Reference;

namespace ArcherIlgpu.Kernels.Tests;

public class LayerNormTests
{
    const float Eps = 1e-5f;

    /// <summary>
    /// Every awkward (N, C) pair on cpu plus rows longer than the largest group (256, so threads stride)
    /// and more rows than one dWeight row block (32). On ilgpu-cpu every simulated thread is an OS
    /// thread and every group barrier costs milliseconds, so it gets a few shapes covering the same cases.
    /// </summary>
    static IEnumerable<(int N, int C)> Shapes(string device)
    {
        if (device == "ilgpu-cpu")
            return [(1, 1), (7, 7), (1, 127), (7, 33), (33, 7), (40, 7), (2, 600)];
        var shapes = new List<(int, int)>();
        foreach (int n in Awkward.Sizes)
            foreach (int c in Awkward.Sizes)
                shapes.Add((n, c));
        shapes.Add((300, 600));
        return shapes;
    }

    /// <summary>Inputs with a non-zero mean and a spread of scales so that centring matters.</summary>
    static float[] Input(int seed, int N, int C)
    {
        var x = TestData.Floats(seed, N * C, 2.0);
        for (int i = 0; i < x.Length; i++) x[i] += 0.75f;
        return x;
    }

    [SkippableTheory, MemberData(nameof(TestBackends.Names), MemberType = typeof(TestBackends))]
    public void ForwardMatchesReference(string device)
    {
        var backend = TestBackends.Get(device);
        foreach (var (N, C) in Shapes(device))
        {
            var x = Input(N + C, N, C); var w = TestData.Floats(1, C); var b = TestData.Floats(2, C);
            var output = backend.Allocate<float>(N * C).All;
            var mean = backend.Allocate<float>(N).All; var rstd = backend.Allocate<float>(N).All;
            backend.LayerNormForward(backend.Upload<float>(x), backend.Upload<float>(w), backend.Upload<float>(b), N, C, Eps,
                output, mean, rstd);
            var (refOut, refMean, refRstd) = LayerNormReference.Forward(TestData.ToDouble(x), TestData.ToDouble(w),
                TestData.ToDouble(b), N, C, Eps);
            string what = $"{device} layernorm N={N} C={C}";
            // Float sums over C <= 600 terms of |x| <= 3: relative error ~C ulp in the worst case, far
            // less in practice; outputs are O(1..few), so 2e-5 absolute leaves a wide margin, 1e-4 for rstd.
            Check.Close(refMean, backend.ToArray(mean), 1e-5, 1e-5, what + " mean");
            Check.Close(refRstd, backend.ToArray(rstd), 1e-5, 1e-4, what + " rstd");
            Check.Close(refOut, backend.ToArray(output), 2e-5, 1e-4, what + " output");
        }
    }

    [Fact]
    public void ConstantRowNormalisesToTheBias()
    {
        // Variance 0: rstd = 1/sqrt(eps) and x - mean = 0 exactly, so output = bias, not NaN.
        var backend = TestBackends.Get("cpu");
        int N = 2, C = 9;
        var output = backend.Allocate<float>(N * C).All;
        var bias = TestData.Floats(3, C);
        backend.LayerNormForward(backend.Upload<float>(Enumerable.Repeat(3.5f, N * C).ToArray()),
            backend.Upload<float>(TestData.Floats(4, C)), backend.Upload<float>(bias), N, C, Eps,
            output, backend.Allocate<float>(N).All, backend.Allocate<float>(N).All);
        Assert.Equal(bias.Concat(bias).ToArray(), backend.ToArray(output));
    }

    [Fact]
    public void ReferenceBackwardMatchesFiniteDifferences()
    {
        foreach (var (N, C) in new[] { (3, 5), (2, 1), (1, 8) })
        {
            var x = TestData.ToDouble(Input(7, N, C)); var w = TestData.ToDouble(TestData.Floats(8, C));
            var b = TestData.ToDouble(TestData.Floats(9, C)); var dy = TestData.ToDouble(TestData.Floats(10, N * C));
            var (dx, dw, db) = LayerNormReference.Backward(dy, x, w, N, C, Eps);
            double Loss(double[] xx, double[] ww, double[] bb) => FiniteDifference.Dot(dy, LayerNormReference.Forward(xx, ww, bb, N, C, Eps).output);
            // Central differences with h = 1e-5 on a smooth O(1) function: truncation ~h² f''' ~ 1e-9,
            // rounding ~1e-16/h ~ 1e-11.
            Check.Close(FiniteDifference.Gradient(xx => Loss(xx, w, b), x), dx, 1e-7, 1e-6, $"dx N={N} C={C}");
            Check.Close(FiniteDifference.Gradient(ww => Loss(x, ww, b), w), dw, 1e-7, 1e-6, $"dw N={N} C={C}");
            Check.Close(FiniteDifference.Gradient(bb => Loss(x, w, bb), b), db, 1e-7, 1e-6, $"db N={N} C={C}");
        }
    }

    [SkippableTheory, MemberData(nameof(TestBackends.Names), MemberType = typeof(TestBackends))]
    public void BackwardMatchesReferenceAndAccumulatesEverything(string device)
    {
        var backend = TestBackends.Get(device);
        foreach (var (N, C) in Shapes(device))
        {
            var x = Input(N * 3 + C, N, C); var w = TestData.Floats(11, C); var dy = TestData.Floats(12, N * C);
            var dx0 = TestData.Floats(13, N * C); var dw0 = TestData.Floats(14, C); var db0 = TestData.Floats(15, C);
            var xBuf = backend.Upload<float>(x); var wBuf = backend.Upload<float>(w); var dyBuf = backend.Upload<float>(dy);
            var mean = backend.Allocate<float>(N).All; var rstd = backend.Allocate<float>(N).All;
            backend.LayerNormForward(xBuf, wBuf, backend.Allocate<float>(C).All, N, C, Eps, backend.Allocate<float>(N * C).All, mean, rstd);
            var dx = backend.Upload<float>(dx0); var dw = backend.Upload<float>(dw0); var db = backend.Upload<float>(db0);
            var (rdx, rdw, rdb) = LayerNormReference.Backward(TestData.ToDouble(dy), TestData.ToDouble(x), TestData.ToDouble(w), N, C, Eps);

            // dx: float sums over C terms of O(rstd) ~ O(1) values, cancelling; dw/db: sums over N rows of
            // O(1) terms. Errors grow ~sqrt(terms) ulp; bounds below are ~10x what the float paths show.
            double dxTol = 2e-5, pTol = 2e-6 * (N + 8);
            string what = $"{device} layernorm backward N={N} C={C}";
            backend.LayerNormBackward(dyBuf, xBuf, wBuf, mean, rstd, N, C, dx, dw, db);
            Check.Close(Plus(dx0, rdx, 1), backend.ToArray(dx), dxTol, 1e-4, what + " dInput (accumulated onto its start)");
            Check.Close(Plus(dw0, rdw, 1), backend.ToArray(dw), pTol, 1e-5, what + " dWeight");
            Check.Close(Plus(db0, rdb, 1), backend.ToArray(db), pTol, 1e-5, what + " dBias");

            // All three accumulate (dInput is the residual stream), so a second call adds everything again.
            backend.LayerNormBackward(dyBuf, xBuf, wBuf, mean, rstd, N, C, dx, dw, db);
            Check.Close(Plus(dx0, rdx, 2), backend.ToArray(dx), 2 * dxTol, 1e-4, what + " dInput twice");
            Check.Close(Plus(dw0, rdw, 2), backend.ToArray(dw), 2 * pTol, 1e-5, what + " dWeight twice");
            Check.Close(Plus(db0, rdb, 2), backend.ToArray(db), 2 * pTol, 1e-5, what + " dBias twice");
        }
    }

    static double[] Plus(float[] start, double[] delta, int times)
    {
        var r = new double[start.Length];
        for (int i = 0; i < r.Length; i++) r[i] = start[i] + times * delta[i];
        return r;
    }
}
