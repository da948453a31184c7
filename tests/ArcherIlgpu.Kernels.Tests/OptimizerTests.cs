using ArcherIlgpu.Kernels.Tests.Reference;

namespace ArcherIlgpu.Kernels.Tests;

public class OptimizerTests
{
    [SkippableTheory, MemberData(nameof(TestBackends.Names), MemberType = typeof(TestBackends))]
    public void SumOfSquaresMatchesDoubleSum(string device)
    {
        var backend = TestBackends.Get(device);
        // 100003: many blocks and a ragged end; 2^20 + 3: spread over threads. On ilgpu-cpu each of the
        // 256-thread groups costs ~10 simulated barriers, so 4099 (17 groups, ragged) stands in for them.
        int[] sizes = device == "cpu" ? [.. Awkward.Sizes, 100003, (1 << 20) + 3] : [.. Awkward.Sizes, 4099];
        foreach (int n in sizes)
        {
            var g = TestData.Floats(n, n, 3.0);
            var result = backend.Allocate<float>(1).All;
            backend.SumOfSquares(backend.Upload<float>(g), result);
            // Accumulated in double on every backend, then rounded once to float: half an ulp (6e-8
            // relative) plus double rounding noise; 2e-7 relative.
            Check.Close([OptimizerReference.SumOfSquares(g)], backend.ToArray(result), 0, 2e-7, $"{device} sum of squares n={n}");
        }
    }

    [SkippableTheory, MemberData(nameof(TestBackends.Names), MemberType = typeof(TestBackends))]
    public void SumOfSquaresOverwritesAndHandlesZeros(string device)
    {
        var backend = TestBackends.Get(device);
        var result = backend.Upload<float>([123f]);
        backend.SumOfSquares(backend.Allocate<float>(40).All, result);
        Assert.Equal(0f, backend.ToArray(result)[0]);
        backend.SumOfSquares(backend.Upload<float>([3f, -4f]), result);
        Assert.Equal(25f, backend.ToArray(result)[0]);
    }

    // Hyperparameters of the hand-worked steps.
    const float Lr = 0.1f, Beta1 = 0.9f, Beta2 = 0.999f, Eps = 1e-8f, Wd = 0.01f;

    [SkippableTheory, MemberData(nameof(TestBackends.Names), MemberType = typeof(TestBackends))]
    public void AdamWMatchesHandWorkedSteps(string device)
    {
        var backend = TestBackends.Get(device);
        var p = backend.Upload<float>([1f, -2f, 0.5f]);
        var m = backend.Allocate<float>(3).All; var v = backend.Allocate<float>(3).All;
        // The norm is finite and clipping is off (maxNorm 0), so it plays no part.
        var norm = backend.Upload<float>([1e6f]);

        // Step 1, g = [0.1, -0.2, 0]:
        //   m = 0.1 g = [0.01, -0.02, 0];  v = 0.001 g² = [1e-5, 4e-5, 0]
        //   bias corrections 1 - 0.9 = 0.1 and 1 - 0.999 = 0.001: mhat = g, vhat = g²
        //   update = mhat / (sqrt(vhat) + 1e-8) = [0.1/0.10000001, -0.2/0.20000001, 0] = [0.9999999, -0.99999995, 0]
        //   p -= 0.1 (update + 0.01 p):
        //     p0 = 1 - 0.1 (0.9999999 + 0.01)          = 0.89900001
        //     p1 = -2 - 0.1 (-0.99999995 - 0.02)       = -1.898000005
        //     p2 = 0.5 - 0.1 (0 + 0.005)               = 0.4995
        backend.AdamW(p, backend.Upload<float>([0.1f, -0.2f, 0f]), m, v, norm, 0f, Lr, Beta1, Beta2, Eps, Wd, 1);
        // float32 arithmetic on O(1) values, about ten roundings: 1e-6 absolute. The betas are floats:
        // 1 - 0.999f = 9.99987e-4, 1.3e-5 below 0.001, so v is compared at 2e-5 relative (the bias
        // correction uses the same float beta and cancels it in vhat, so p is unaffected).
        Check.Close([0.01, -0.02, 0], backend.ToArray(m), 1e-9, 1e-6, $"{device} m after step 1");
        Check.Close([1e-5, 4e-5, 0], backend.ToArray(v), 1e-12, 2e-5, $"{device} v after step 1");
        Check.Close([0.89900001, -1.898000005, 0.4995], backend.ToArray(p), 1e-6, 0, $"{device} p after step 1");

        // Step 2, g = [-0.1, -0.2, 0.3]; corrections 1 - 0.81 = 0.19 and 1 - 0.998001 = 0.001999:
        //   m = 0.9 m + 0.1 g = [-0.001, -0.038, 0.03];  v = 0.999 v + 0.001 g² = [1.999e-5, 7.996e-5, 9e-5]
        //   mhat = m / 0.19 = [-0.0052631579, -0.2, 0.15789474];  vhat = v / 0.001999 = [0.01, 0.04, 0.045022511]
        //   update = mhat / (sqrt(vhat) + 1e-8) = [-0.052631574, -0.99999995, 0.74413679]
        //     p0 = 0.89900001 - 0.1 (-0.052631574 + 0.0089900001) = 0.90336417
        //     p1 = -1.898000005 - 0.1 (-0.99999995 - 0.01898000005) = -1.79610201
        //     p2 = 0.4995 - 0.1 (0.74413679 + 0.004995)    = 0.42458682
        backend.AdamW(p, backend.Upload<float>([-0.1f, -0.2f, 0.3f]), m, v, norm, 0f, Lr, Beta1, Beta2, Eps, Wd, 2);
        Check.Close([-0.001, -0.038, 0.03], backend.ToArray(m), 1e-9, 1e-6, $"{device} m after step 2");
        Check.Close([1.999e-5, 7.996e-5, 9e-5], backend.ToArray(v), 1e-12, 2e-5, $"{device} v after step 2");
        Check.Close([0.90336417, -1.79610201, 0.42458682], backend.ToArray(p), 1e-6, 0, $"{device} p after step 2");
    }

    [SkippableTheory, MemberData(nameof(TestBackends.Names), MemberType = typeof(TestBackends))]
    public void AdamWClipsByTheGlobalNormReadOnTheDevice(string device)
    {
        var backend = TestBackends.Get(device);
        // Hand case: g = [3, 4], norm 5, maxNorm 1 -> clip = 1 / (5 + 1e-6), g' = [0.6, 0.8] (to 2e-7).
        // At step 1 with m = v = 0 and wd = 0 the update is sign(g') = [1, 1] (Adam's first step),
        // which hides the clip, so look at m = 0.1 g' = [0.06, 0.08] and v = 0.001 g'² = [3.6e-4, 6.4e-4].
        var p = backend.Upload<float>([0f, 0f]); var m = backend.Allocate<float>(2).All; var v = backend.Allocate<float>(2).All;
        var g = backend.Upload<float>([3f, 4f]); var norm = backend.Allocate<float>(1).All;
        backend.SumOfSquares(g, norm);
        backend.AdamW(p, g, m, v, norm, 1f, Lr, Beta1, Beta2, Eps, 0f, 1);
        Check.Close([0.06, 0.08], backend.ToArray(m), 0, 1e-6, $"{device} clipped m");
        Check.Close([3.6e-4, 6.4e-4], backend.ToArray(v), 0, 2e-5, $"{device} clipped v (float beta2, see above)");
        Check.Close([-0.1, -0.1], backend.ToArray(p), 0, 1e-6, $"{device} clipped p");

        foreach (int n in Awkward.Sizes)
            foreach (float maxNorm in new[] { 0.5f, 0f, 1e6f })   // clipped, disabled, not reached
                CheckAgainstReference(backend, n, maxNorm, step: 3);
    }

    /// <summary>Random state (v > 0, as after earlier steps) against the float64 reference, norm from the backend.</summary>
    static void CheckAgainstReference(Backend backend, int n, float maxNorm, int step)
    {
        var p0 = TestData.Floats(n, n); var g = TestData.Floats(n + 1, n, 2.0); var m0 = TestData.Floats(n + 2, n, 0.1);
        var v0 = Array.ConvertAll(TestData.Floats(n + 3, n, 0.01), x => MathF.Abs(x) + 1e-4f);
        var p = backend.Upload<float>(p0); var m = backend.Upload<float>(m0); var v = backend.Upload<float>(v0);
        var gBuf = backend.Upload<float>(g); var norm = backend.Allocate<float>(1).All;
        backend.SumOfSquares(gBuf, norm);
        backend.AdamW(p, gBuf, m, v, norm, maxNorm, 1e-2f, Beta1, Beta2, Eps, Wd, step);

        var rp = TestData.ToDouble(p0); var rm = TestData.ToDouble(m0); var rv = TestData.ToDouble(v0);
        Assert.True(OptimizerReference.AdamW(rp, TestData.ToDouble(g), rm, rv, backend.ToArray(norm)[0], maxNorm,
            1e-2, Beta1, Beta2, Eps, Wd, step));
        string what = $"{backend.Name} adamw n={n} maxNorm={maxNorm}";
        // float32 update of O(1) values: a few ulp relative on m and v; the step is lr x O(1) = 1e-2,
        // so its few-ulp error is far below 1e-6 next to p ~ 1.
        Check.Close(rm, backend.ToArray(m), 1e-8, 1e-5, what + " m");
        Check.Close(rv, backend.ToArray(v), 1e-10, 1e-5, what + " v");
        Check.Close(rp, backend.ToArray(p), 1e-6, 1e-6, what + " p");
    }

    [SkippableTheory, MemberData(nameof(TestBackends.Names), MemberType = typeof(TestBackends))]
    public void AdamWChangesNothingWhenTheNormIsNotFinite(string device)
    {
        var backend = TestBackends.Get(device);
        int n = 37;
        var p0 = TestData.Floats(1, n); var m0 = TestData.Floats(2, n); var v0 = Array.ConvertAll(TestData.Floats(3, n), MathF.Abs);
        foreach (float bad in new[] { float.NaN, float.PositiveInfinity, float.NegativeInfinity })
            foreach (float maxNorm in new[] { 1f, 0f })
            {
                var p = backend.Upload<float>(p0); var m = backend.Upload<float>(m0); var v = backend.Upload<float>(v0);
                backend.AdamW(p, backend.Upload<float>(TestData.Floats(4, n)), m, v, backend.Upload<float>([bad]),
                    maxNorm, 1e-3f, Beta1, Beta2, Eps, Wd, 5);
                Assert.Equal(p0, backend.ToArray(p));
                Assert.Equal(m0, backend.ToArray(m));
                Assert.Equal(v0, backend.ToArray(v));
            }

        // A NaN gradient element gives a NaN norm through SumOfSquares, so the whole step is skipped.
        var grads = TestData.Floats(5, n); grads[7] = float.NaN;
        var norm = backend.Allocate<float>(1).All;
        var pp = backend.Upload<float>(p0);
        backend.SumOfSquares(backend.Upload<float>(grads), norm);
        backend.AdamW(pp, backend.Upload<float>(grads), backend.Upload<float>(m0), backend.Upload<float>(v0), norm,
            1f, 1e-3f, Beta1, Beta2, Eps, Wd, 5);
        Assert.True(float.IsNaN(backend.ToArray(norm)[0]));
        Assert.Equal(p0, backend.ToArray(pp));
    }
}
