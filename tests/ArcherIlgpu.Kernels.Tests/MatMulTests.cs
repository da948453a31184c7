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
        // Past one 128×128 tile in both output dimensions of every product (forward, dInput, dWeight).
        [129, 70, 130],
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

    /// <summary>
    /// dBias over many rows goes through row chunks and a second pass over the chunks' partial sums
    /// (ColumnSumChunks: about 8 groups per SM). 40 columns (one whole and one partial block of 32) and
    /// 1,000 rows: several chunks, the last one short. Against the float64 column sums, accumulated twice.
    /// </summary>
    [Fact]
    public void Backward_BiasOverManyRows_SumsInChunks_AndMatchesReference()
    {
        var backend = (IlgpuBackend)TestBackends.Get("ilgpu-cpu");
        const int N = 1000, K = 3, OC = 40;
        Assert.True(IlgpuBackend.ColumnSumChunks(N, OC, multiprocessors: 2) > 1, "the case must take the chunked path");
        Assert.Equal(1, IlgpuBackend.ColumnSumChunks(N: 100, OC, multiprocessors: 2));   // under 2·64 rows: one pass
        var p = Problem.Random(N, K, OC, seed: 4242);
        var (_, _, rdb) = p.Backward();
        var dbStart = TestData.Floats(97, OC);
        var dBias = backend.Upload<float>(dbStart);
        var dOutput = backend.Upload<float>(p.DOutput);
        var input = backend.Upload<float>(p.Input);
        var weight = backend.Upload<float>(p.Weight);
        var dWeight = backend.Allocate<float>((long)OC * K).All;
        for (int times = 1; times <= 2; times++)
        {
            backend.MatMulBackward(dOutput, input, weight, N, K, OC, default, dWeight, dBias);
            Check.Close(Plus(dbStart, rdb, times), backend.ToArray(dBias), Atol(N) * times, Rtol, $"dBias after {times}");
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
    /// packed and parallel paths of the cpu GEMM, with each micro-kernel this machine can run. The
    /// last two go past one NC-wide column block (4096, a partial panel in the second): the forward's
    /// OC, then K, which is the column count of dInput and dWeight.
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
            foreach (var (N, K, OC) in new[] { (300, 257, 190), (190, 300, 257), (33, 600, 70), (12, 40, Gemm.NC + 37), (12, Gemm.NC + 37, 40) })
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

    // ------------------------------------------------------------ 128×128 and tensor-core kernels

    /// <summary>
    /// Thin shapes normally go to the 64×64 kernel; forcing them through the 128×128 one checks its
    /// edge handling where a tile is almost all padding (1 row, 1 deep, 1 column).
    /// </summary>
    [SkippableTheory]
    [InlineData(1, 7, 33)]
    [InlineData(33, 1, 7)]
    public void TiledKernel_ThinShapes_MatchReference(int N, int K, int OC)
    {
        var backend = (IlgpuBackend)TestBackends.Get("ilgpu-cpu");
        backend.ForceTiledGemm = true;
        try
        {
            var p = Problem.Random(N, K, OC, seed: 11 * N + K + OC);
            Check.Close(p.Forward(true), RunForward(backend, p, true), Atol(K), Rtol, "out");
            CheckBackward(backend, p, Atol);
        }
        finally { backend.ForceTiledGemm = false; }
    }

    /// <summary>
    /// The tensor-core kernel on ilgpu-cpu, with each mma.sync emulated by reading the operands from the
    /// lanes and registers the PTX ISA fragment layout assigns them (the emulation is slow there: small
    /// shapes only): the reference
    /// multiplies the same rounded operands (rounded here independently of the kernel), whose products
    /// are exact, so only float32 summation separates them and any fragment mix-up is an O(1) error.
    /// </summary>
    [SkippableTheory]
    [InlineData(MatMulPrecision.Tf32, 5, 17, 9)]
    [InlineData(MatMulPrecision.Bf16, 5, 17, 9)]
    [InlineData(MatMulPrecision.Tf32, 130, 9, 20)]   // two row tiles in forward and dInput, a 130-deep dWeight
    [InlineData(MatMulPrecision.Bf16, 130, 9, 20)]
    public void EmulatedTensorKernel_MatchesReferenceOnRoundedOperands(MatMulPrecision precision, int N, int K, int OC)
    {
        var backend = (IlgpuBackend)TestBackends.Get("ilgpu-cpu");
        var p = Problem.Random(N, K, OC, seed: 3 * N + K + OC);
        var q = new Problem(N, K, OC, Round(p.Input, precision), Round(p.Weight, precision), p.Bias, Round(p.DOutput, precision));
        backend.MatMulPrecision = precision;
        backend.EmulateTensorCores = true;
        try
        {
            Check.Close(q.Forward(true), RunForward(backend, p, true), Atol(K), Rtol, $"{precision} out");
            CheckBackward(backend, p, Atol, q);
        }
        finally
        {
            backend.EmulateTensorCores = false;
            backend.MatMulPrecision = MatMulPrecision.Float32;
        }
    }

    /// <summary>
    /// The same with ARCHER_GEMM=vec4: strides that are multiples of 4 take the 128-bit load kernels
    /// (both quad orientations: along depth in forward, along rows/columns in dInput and dWeight);
    /// K = 12 leaves a ragged 16-deep slice and N = 130 a ragged row tile, both loaded element-wise.
    /// </summary>
    [SkippableTheory]
    [InlineData(MatMulPrecision.Tf32)]
    [InlineData(MatMulPrecision.Bf16)]
    public void EmulatedTensorVec4Kernel_MatchesReferenceOnRoundedOperands(MatMulPrecision precision)
    {
        const int N = 130, K = 12, OC = 20;
        var backend = (IlgpuBackend)TestBackends.Get("ilgpu-cpu");
        var p = Problem.Random(N, K, OC, seed: 5);
        var q = new Problem(N, K, OC, Round(p.Input, precision), Round(p.Weight, precision), p.Bias, Round(p.DOutput, precision));
        (backend.MatMulPrecision, backend.EmulateTensorCores, backend.GemmVariants) = (precision, true, GemmVariants.Vec4Loads);
        try
        {
            using var probe = backend.Allocate<float>(4);
            var view = probe.All.View;   // aligned like the problem's buffers: the vec4 kernel must be the one that runs
            Assert.True(backend.TensorQuads(view, view, new IlgpuBackend.GemmShape { M = N, N = OC, K = K, ARow = K, ACol = 1, BRow = 1, BCol = K }));
            Assert.True(backend.TensorQuads(view, view, new IlgpuBackend.GemmShape { M = OC, N = K, K = N, ARow = 1, ACol = OC, BRow = K, BCol = 1 }));
            Check.Close(q.Forward(true), RunForward(backend, p, true), Atol(K), Rtol, $"{precision} vec4 out");
            CheckBackward(backend, p, Atol, q);
        }
        finally { (backend.MatMulPrecision, backend.EmulateTensorCores, backend.GemmVariants) = (MatMulPrecision.Float32, false, GemmVariants.None); }
    }

    /// <summary>
    /// Split-K on the tensor-core kernels (the default on CUDA for products with few tiles): 3 slices
    /// forced, the slice depth lowered to 16 so that these sizes split, with and without vec4. The
    /// depths (K = 100 in forward and dInput, N = 130 in dWeight) leave a ragged last slice; a slice
    /// summed twice or skipped is an O(1) error, far outside the rounded-operand reference's tolerance.
    /// </summary>
    [SkippableTheory]
    [InlineData(MatMulPrecision.Tf32, GemmVariants.SplitK)]
    [InlineData(MatMulPrecision.Bf16, GemmVariants.SplitK | GemmVariants.Vec4Loads)]
    public void EmulatedTensorSplitK_MatchesReferenceOnRoundedOperands(MatMulPrecision precision, GemmVariants variants)
    {
        const int N = 130, K = 100, OC = 20;
        var backend = (IlgpuBackend)TestBackends.Get("ilgpu-cpu");
        var p = Problem.Random(N, K, OC, seed: 11);
        var q = new Problem(N, K, OC, Round(p.Input, precision), Round(p.Weight, precision), p.Bias, Round(p.DOutput, precision));
        var saved = (backend.SplitKMinDepth, backend.SplitKSlices);
        (backend.MatMulPrecision, backend.EmulateTensorCores, backend.GemmVariants) = (precision, true, variants);
        (backend.SplitKMinDepth, backend.SplitKSlices) = (16, 3);
        try
        {
            Assert.Equal(3, backend.TensorSplit(new IlgpuBackend.GemmShape { M = N, N = OC, K = K }).Slices);
            Assert.Equal(3, backend.TensorSplit(new IlgpuBackend.GemmShape { M = OC, N = K, K = N }).Slices);
            Check.Close(q.Forward(true), RunForward(backend, p, true), Atol(K), Rtol, $"{precision} split out");
            CheckBackward(backend, p, Atol, q);
        }
        finally
        {
            (backend.MatMulPrecision, backend.EmulateTensorCores, backend.GemmVariants) = (MatMulPrecision.Float32, false, GemmVariants.None);
            (backend.SplitKMinDepth, backend.SplitKSlices) = saved;
        }
    }

    /// <summary>
    /// Off CUDA the switch must change nothing: with Tf32 requested, ilgpu-cpu still computes float32.
    /// TF32 rounding (relative 2^-11 per operand) would miss the float32 tolerance here by 10x or more.
    /// </summary>
    [SkippableFact]
    public void PrecisionSwitch_OnNonCudaBackend_GivesFloat32()
    {
        var backend = (IlgpuBackend)TestBackends.Get("ilgpu-cpu");
        const int N = 70, K = 65, OC = 129;
        var p = Problem.Random(N, K, OC, seed: 77);
        backend.MatMulPrecision = MatMulPrecision.Tf32;
        try
        {
            Check.Close(p.Forward(true), RunForward(backend, p, true), Atol(K), Rtol, "out with Tf32 requested");
        }
        finally { backend.MatMulPrecision = MatMulPrecision.Float32; }
    }

    [Theory]
    [InlineData(null, MatMulPrecision.Float32)]
    [InlineData("", MatMulPrecision.Float32)]
    [InlineData("fp32", MatMulPrecision.Float32)]
    [InlineData("TF32", MatMulPrecision.Tf32)]
    [InlineData(" bf16 ", MatMulPrecision.Bf16)]
    public void ParseMatMulPrecision_AcceptsTheDocumentedNames(string? text, MatMulPrecision expected) =>
        Assert.Equal(expected, IlgpuBackend.ParseMatMulPrecision(text));

    [Fact]
    public void ParseMatMulPrecision_RejectsUnknownNames() =>
        Assert.Throws<ArgumentException>(() => IlgpuBackend.ParseMatMulPrecision("fp16"));

    /// <summary>Backward once from zero gradients against the reference of <paramref name="reference"/> (default: p).</summary>
    static void CheckBackward(Backend backend, Problem p, Func<int, double> atol, Problem? reference = null)
    {
        var (rdx, rdw, _) = (reference ?? p).Backward();
        var dInput = backend.Upload<float>(Filled((long)p.N * p.K, float.NaN));
        var dWeight = backend.Allocate<float>((long)p.OC * p.K).All;
        var dBias = backend.Allocate<float>(p.OC).All;
        backend.MatMulBackward(backend.Upload<float>(p.DOutput), backend.Upload<float>(p.Input),
            backend.Upload<float>(p.Weight), p.N, p.K, p.OC, dInput, dWeight, dBias);
        Check.Close(rdx, backend.ToArray(dInput), atol(p.OC), Rtol, "dInput");
        Check.Close(rdw, backend.ToArray(dWeight), atol(p.N), Rtol, "dWeight");
        // dBias is a plain float32 column sum of dOutput in every precision.
        Check.Close(p.Backward().dBias, backend.ToArray(dBias), atol(p.N), Rtol, "dBias");
    }

    /// <summary>
    /// Rounds to the tensor-core operand format, written independently of the kernel's bit tricks:
    /// TF32 keeps 10 fraction bits, rounding half away from zero (cvt.rna.tf32.f32); BF16 keeps 7,
    /// rounding half to even. Scaling by a power of two is exact, so the rounding is Math.Round's.
    /// </summary>
    static float[] Round(float[] x, MatMulPrecision precision)
    {
        int bits = precision == MatMulPrecision.Tf32 ? 10 : 7;
        var mode = precision == MatMulPrecision.Tf32 ? MidpointRounding.AwayFromZero : MidpointRounding.ToEven;
        return Array.ConvertAll(x, v =>
        {
            if (v == 0 || !float.IsFinite(v)) return v;
            int exponent = Math.ILogB((double)v);   // v = m · 2^exponent with 1 <= |m| < 2
            double ulp = Math.ScaleB(1.0, exponent - bits);
            return (float)(Math.Round(v / ulp, mode) * ulp);
        });
    }
}
