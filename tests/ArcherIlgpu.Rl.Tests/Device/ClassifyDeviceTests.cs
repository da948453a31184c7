using ArcherIlgpu.Kernels;

namespace ArcherIlgpu.Rl.Tests.Device;

[Collection(DeviceCollection.Name)]
public class ClassifyDeviceTests
{
    /// <summary>
    /// Rows that cover the quantile's cases: 0 full with ties from a 4-value set (the quantile often lands on
    /// a tie), 1 empty, 2 one token, 3 all equal, 4 full continuous, the rest random lengths and values
    /// (including negatives and ±0); padding holds values that would change τ if they were read.
    /// </summary>
    static (float[] H, float[] M) Rows(int seed, int R, int T)
    {
        var rng = new Random(seed);
        var h = new float[R * T]; var m = new float[R * T];
        float[] ties = [0.25f, 0.5f, 1f, 2f];
        for (int i = 0; i < R; i++)
        {
            int len = i == 0 || i == 3 || i == 4 ? T : i == 1 ? 0 : i == 2 ? 1 : 1 + rng.Next(T);
            for (int t = 0; t < T; t++)
            {
                int k = i * T + t;
                if (t >= len) { h[k] = t % 2 == 0 ? 1e9f : -1e9f; continue; }
                m[k] = rng.Next(6) == 0 ? 0.5f : 1f;
                h[k] = i == 0 ? ties[rng.Next(ties.Length)] : i == 3 ? 0.7f : i == 5 && t < 2 ? (t == 0 ? -0f : 0f)
                    : (float)(4 * rng.NextDouble() - (i == 6 ? 2 : 0));
            }
        }
        return (h, m);
    }

    public static IEnumerable<object[]> Cases()
    {
        foreach (var be in new[] { "cpu", "ilgpu-cpu", "cuda" })
            foreach (var rho in new[] { 0.8, 0.25, 0.5 })
                yield return [be, rho];
    }

    [SkippableTheory, MemberData(nameof(Cases))]
    public void PerResponseMatchesTheFloat64Reference(string backend, double rho)
    {
        var be = TestBackends.Get(backend);
        const int R = 8, T = 21;
        var (h, m) = Rows(3 + (int)(rho * 100), R, T);
        foreach (bool strict in new[] { true, false })
        {
            var tau = be.Allocate<float>(R).All; var cls = be.Upload<int>(Enumerable.Repeat(9, R * T).ToArray());
            be.ClassifyTokensPerResponse(be.Upload<float>(h), be.Upload<float>(m), R, T, rho, strict, tau, cls);
            var gotTau = be.ToArray(tau); var gotCls = be.ToArray(cls);
            for (int i = 0; i < R; i++)
            {
                var (eTau, eCls) = ClassifyReference.Classify(h, m, i * T, T, rho, strict);
                // τ: the reference interpolates from the lower end, the op from the nearer end (numpy): both
                // round a float64 within a few ulp of each other to float32, so they agree to 1e-6 relative.
                Close.One(eTau, gotTau[i], 0, 1e-6, $"{backend} ρ={rho} strict={strict} τ[{i}]");
                Assert.Equal(eCls, gotCls.AsSpan(i * T, T).ToArray());
            }
            // The hand-checkable rows: one token is never High under '>', always High under '≥'; all-equal likewise.
            Assert.Equal(strict ? PolicyMath.ClassLow : PolicyMath.ClassHigh, gotCls[2 * T]);
            Assert.All(gotCls.AsSpan(3 * T, T).ToArray(), c => Assert.Equal(strict ? PolicyMath.ClassLow : PolicyMath.ClassHigh, c));
            Assert.True(float.IsNaN(gotTau[1]));
            Assert.All(gotCls.AsSpan(T, T).ToArray(), c => Assert.Equal(PolicyMath.ClassNone, c));
        }
    }

    [SkippableTheory, MemberData(nameof(Cases))]
    public void BatchLevelMatchesTheFloat64Reference(string backend, double rho)
    {
        var be = TestBackends.Get(backend);
        foreach (var (R, T) in new[] { (5, 9), (3, 33) })
        {
            var (h, m) = Rows(40 + R, R, T);
            foreach (bool strict in new[] { false, true })
            {
                var tau = be.Allocate<float>(1).All; var cls = be.Allocate<int>(R * T).All;
                be.ClassifyTokensBatch(be.Upload<float>(h), be.Upload<float>(m), R * T, rho, strict, tau, cls);
                var (eTau, eCls) = ClassifyReference.Classify(h, m, 0, R * T, rho, strict);
                Close.One(eTau, be.ToArray(tau)[0], 0, 1e-6, $"{backend} batch ρ={rho} τ");   // as above
                Assert.Equal(eCls, be.ToArray(cls));
            }
        }
    }

    [SkippableTheory, MemberData(nameof(TestBackends.Names), MemberType = typeof(TestBackends))]
    public void BatchWithoutValidTokensHasNaNThresholdAndNoClasses(string backend)
    {
        var be = TestBackends.Get(backend);
        var tau = be.Allocate<float>(1).All; var cls = be.Upload<int>(new[] { 5, 5, 5 });
        be.ClassifyTokensBatch(be.Upload<float>(new[] { 1f, 2f, 3f }), be.Upload<float>(new float[3]), 3, 0.8, false, tau, cls);
        Assert.True(float.IsNaN(be.ToArray(tau)[0]));
        Assert.Equal(new int[3], be.ToArray(cls));
    }

    [SkippableFact]
    public void AgreesWithTheHostClassifierAndAcrossBackends()
    {
        var cpu = TestBackends.Get("cpu"); var sim = TestBackends.Get("ilgpu-cpu");
        const int R = 6, T = 40;
        var (h, m) = Rows(77, R, T);
        var hostTau = new float[R]; var hostCls = new byte[R * T];
        TokenClassifier.PerResponse(h, m, R, T, 0.8, hostTau, hostCls);
        foreach (var be in new[] { cpu, sim })
        {
            var tau = be.Allocate<float>(R).All; var cls = be.Allocate<int>(R * T).All;
            be.ClassifyTokensPerResponse(be.Upload<float>(h), be.Upload<float>(m), R, T, 0.8, true, tau, cls);
            // Same order statistics and the same PolicyMath interpolation: bit-identical to the host.
            Assert.Equal(hostTau, be.ToArray(tau));
            Assert.Equal(Array.ConvertAll(hostCls, c => (int)c), be.ToArray(cls));
        }
        var hostBatch = new byte[R * T];
        float hostBatchTau = TokenClassifier.BatchLevel(h, m, 0.8, hostBatch);
        foreach (var be in new[] { cpu, sim })
        {
            var tau = be.Allocate<float>(1).All; var cls = be.Allocate<int>(R * T).All;
            be.ClassifyTokensBatch(be.Upload<float>(h), be.Upload<float>(m), R * T, 0.8, false, tau, cls);
            Assert.Equal(hostBatchTau, be.ToArray(tau)[0]);
            Assert.Equal(Array.ConvertAll(hostBatch, c => (int)c), be.ToArray(cls));
        }
    }
}
