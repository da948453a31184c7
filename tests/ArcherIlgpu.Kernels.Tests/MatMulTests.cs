using ArcherIlgpu.Kernels.Tests.Reference;

namespace ArcherIlgpu.Kernels.Tests;

public class MatMulTests
{
    // Tolerances. Inputs are uniform in [-1, 1], so every product is at most 1 and a float32 partial
    // sum of K products rounds by at most 2^-24 * K per addition: worst case K^2 * 6e-8, about
    // K * sqrt(K) * 6e-8 for random signs. atol = 2e-6 * K covers the random-sign case with a wide
    // margin for K up to a few hundred and is still far below the O(1) error of a wrong index.
    static double Atol(int K) => 2e-6 * Math.Max(K, 1);
    const double Rtol = 1e-5;   // float32 rounding of the result itself (2^-24) with headroom

    /// <summary>Every combination of the awkward sizes on cpu (and cuda), plus one size that fits no tile.</summary>
    public static IEnumerable<object[]> FullShapes()
    {
        foreach (int n in Awkward.Sizes)
            foreach (int k in Awkward.Sizes)
                foreach (int oc in Awkward.Sizes)
                    yield return [n, k, oc];
        yield return [70, 65, 129];
    }

    /// <summary>
    /// The ILGPU CPU accelerator runs each group as 256 OS threads meeting at barriers, so it gets a
    /// subset: every awkward size in every position at least once, plus the size that fits no tile.
    /// </summary>
    public static IEnumerable<object[]> SimulatorShapes() =>
    [
        [1, 7, 33], [7, 33, 127], [33, 127, 1], [127, 1, 7], [33, 33, 33], [70, 65, 129],
    ];

    public static IEnumerable<object[]> ForwardCases()
    {
        foreach (var backend in new[] { "cpu", "ilgpu-cpu", "cuda" })
            foreach (var shape in backend == "ilgpu-cpu" ? SimulatorShapes() : FullShapes())
                foreach (bool bias in new[] { true, false })
                    yield return [backend, shape[0], shape[1], shape[2], bias];
    }

    public static IEnumerable<object[]> BackwardCases()
    {
        foreach (var backend in new[] { "cpu", "ilgpu-cpu", "cuda" })
            foreach (var shape in backend == "ilgpu-cpu" ? SimulatorShapes() : FullShapes())
                yield return [backend, shape[0], shape[1], shape[2]];
    }

    sealed record Problem(int N, int K, int OC, float[] Input, float[] Weight, float[] Bias, float[] DOutput)
    {
        public static Problem Random(int N, int K, int OC, int seed) => new(N, K, OC,
            TestData.Floats(seed, (long)N * K), TestData.Floats(seed + 1, (long)OC * K),
            TestData.Floats(seed + 2, OC), TestData.Floats(seed + 3, (long)N * OC));

        public double[] Forward(bool withBias) => MatMulReference.Forward(TestData.ToDouble(Input),
            TestData.ToDouble(Weight), withBias ? TestData.ToDouble(Bias) : null, N, K, OC);

        public (double[] dInput, double[] dWeight, double[] dBias) Backward() => MatMulReference.Backward(
            TestData.ToDouble(DOutput), TestData.ToDouble(Input), TestData.ToDouble(Weight), N, K, OC);
    }

    static float[] RunForward(Backend backend, Problem p, bool withBias)
    {
        var input = backend.Upload<float>(p.Input);
        var weight = backend.Upload<float>(p.Weight);
        var bias = withBias ? backend.Upload<float>(p.Bias) : default;
        var output = backend.Upload<float>(Filled((long)p.N * p.OC, float.NaN));   // must be overwritten
        backend.MatMulForward(input, weight, bias, p.N, p.K, p.OC, output);
        return backend.ToArray(output);
    }

    static float[] Filled(long n, float value) { var x = new float[n]; Array.Fill(x, value); return x; }

    [SkippableTheory]
    [MemberData(nameof(ForwardCases))]
    public void Forward_MatchesReference(string backendName, int N, int K, int OC, bool withBias)
    {
        var backend = TestBackends.Get(backendName);
        var p = Problem.Random(N, K, OC, seed: N * 10007 + K * 101 + OC);
        Check.Close(p.Forward(withBias), RunForward(backend, p, withBias), Atol(K), Rtol, $"{backendName} out");
    }

    [Fact]
    public void ReferenceBackward_MatchesFiniteDifferences()
    {
        const int N = 3, K = 4, OC = 5;
        var p = Problem.Random(N, K, OC, seed: 42);
        double[] x = TestData.ToDouble(p.Input), w = TestData.ToDouble(p.Weight), b = TestData.ToDouble(p.Bias);
        double[] g = TestData.ToDouble(p.DOutput);
        var (dx, dw, db) = p.Backward();
        // The loss sum(g ⊙ out) is bilinear, so central differences are exact up to cancellation:
        // about 1e-16 / 1e-5 = 1e-11 per entry; 1e-8 leaves room and still catches any wrong term.
        const double tol = 1e-8;
        Check.Close(FiniteDifference.Gradient(v => FiniteDifference.Dot(g, MatMulReference.Forward(v, w, b, N, K, OC)), x), dx, tol, 0, "dInput");
        Check.Close(FiniteDifference.Gradient(v => FiniteDifference.Dot(g, MatMulReference.Forward(x, v, b, N, K, OC)), w), dw, tol, 0, "dWeight");
        Check.Close(FiniteDifference.Gradient(v => FiniteDifference.Dot(g, MatMulReference.Forward(x, w, v, N, K, OC)), b), db, tol, 0, "dBias");
    }

    /// <summary>
    /// Backward twice from non-zero starting gradients: dInput holds one gradient each time (it is
    /// overwritten, and starts as NaN so a read of it shows), dWeight and dBias hold start + 1x, then
    /// start + 2x.
    /// </summary>
    [SkippableTheory]
    [MemberData(nameof(BackwardCases))]
    public void Backward_MatchesReference_AndAccumulatesTwice(string backendName, int N, int K, int OC)
    {
        var backend = TestBackends.Get(backendName);
        var p = Problem.Random(N, K, OC, seed: N * 7919 + K * 31 + OC);
        var (rdx, rdw, rdb) = p.Backward();
        var dwStart = TestData.Floats(99, (long)OC * K);
        var dbStart = TestData.Floats(98, OC);

        var dOutput = backend.Upload<float>(p.DOutput);
        var input = backend.Upload<float>(p.Input);
        var weight = backend.Upload<float>(p.Weight);
        var dInput = backend.Upload<float>(Filled((long)N * K, float.NaN));
        var dWeight = backend.Upload<float>(dwStart);
        var dBias = backend.Upload<float>(dbStart);

        // dInput sums OC products, dWeight and dBias sum N: the same float32 summation bound as the forward.
        for (int times = 1; times <= 2; times++)
        {
            backend.MatMulBackward(dOutput, input, weight, N, K, OC, dInput, dWeight, dBias);
            Check.Close(rdx, backend.ToArray(dInput), Atol(OC), Rtol, $"{backendName} dInput after {times}");
            Check.Close(Plus(dwStart, rdw, times), backend.ToArray(dWeight), Atol(N) * times, Rtol, $"{backendName} dWeight after {times}");
            Check.Close(Plus(dbStart, rdb, times), backend.ToArray(dBias), Atol(N) * times, Rtol, $"{backendName} dBias after {times}");
        }
    }

    static double[] Plus(float[] start, double[] delta, int times)
    {
        var r = new double[start.Length];
        for (int i = 0; i < r.Length; i++) r[i] = start[i] + times * delta[i];
        return r;
    }

    [SkippableTheory]
    [MemberData(nameof(TestBackends.Names), MemberType = typeof(TestBackends))]
    public void Backward_AcceptsEmptyDInputAndDBias(string backendName)
    {
        var backend = TestBackends.Get(backendName);
        const int N = 7, K = 33, OC = 9;
        var p = Problem.Random(N, K, OC, seed: 5);
        var (_, rdw, _) = p.Backward();
        var dWeight = backend.Allocate<float>((long)OC * K).All;
        backend.MatMulBackward(backend.Upload<float>(p.DOutput), backend.Upload<float>(p.Input),
            backend.Upload<float>(p.Weight), N, K, OC, default, dWeight, default);
        Check.Close(rdw, backend.ToArray(dWeight), Atol(N), Rtol, $"{backendName} dWeight");
    }

    /// <summary>
    /// Sizes past one K slice (256), several row and column tiles and every edge: the blocked,
    /// packed and parallel paths of the cpu GEMM, with each micro-kernel this machine can run.
    /// </summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Cpu_LargeShapes_MatchReference(bool vector512)
    {
        if (vector512 && !System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated) return;
        var backend = TestBackends.Get("cpu");
        bool saved = Gemm.UseVector512;
        Gemm.UseVector512 = vector512;
        try
        {
            foreach (var (N, K, OC) in new[] { (300, 257, 190), (190, 300, 257), (33, 600, 70) })
            {
                var p = Problem.Random(N, K, OC, seed: N + K + OC);
                Check.Close(p.Forward(true), RunForward(backend, p, true), Atol(K), Rtol, $"out {N}x{K}x{OC}");
                var (rdx, rdw, rdb) = p.Backward();
                var dInput = backend.Allocate<float>((long)N * K).All;
                var dWeight = backend.Allocate<float>((long)OC * K).All;
                var dBias = backend.Allocate<float>(OC).All;
                backend.MatMulBackward(backend.Upload<float>(p.DOutput), backend.Upload<float>(p.Input),
                    backend.Upload<float>(p.Weight), N, K, OC, dInput, dWeight, dBias);
                Check.Close(rdx, backend.ToArray(dInput), Atol(OC), Rtol, $"dInput {N}x{K}x{OC}");
                Check.Close(rdw, backend.ToArray(dWeight), Atol(N), Rtol, $"dWeight {N}x{K}x{OC}");
                Check.Close(rdb, backend.ToArray(dBias), Atol(N), Rtol, $"dBias {N}x{K}x{OC}");
            }
        }
        finally { Gemm.UseVector512 = saved; }
    }
}
