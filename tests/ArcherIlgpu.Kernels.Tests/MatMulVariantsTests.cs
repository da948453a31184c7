using System.Text.RegularExpressions;
using ArcherIlgpu.Kernels.Tests.Reference;

namespace ArcherIlgpu.Kernels.Tests;

/// <summary>
/// The optional float32 GEMM strategies (<see cref="GemmVariants"/>): split-K and 128-bit global loads.
/// Each is forced on at tiny sizes on ilgpu-cpu (which runs the same kernel code as CUDA, view bounds
/// asserted) and compared with the float64 reference; the planning is checked as plain arithmetic at
/// the gpt2 shapes of an H100; the new kernels are compiled to sm_90 PTX.
/// </summary>
public class MatMulVariantsTests
{
    // Same float32 summation bound as MatMulTests: inputs in [-1, 1], a K-term sum errs by about
    // K·sqrt(K)·6e-8 for random signs; 2e-6·K covers it with margin and is far below a wrong index's O(1).
    static double Atol(int K) => 2e-6 * Math.Max(K, 1);
    const double Rtol = 1e-5;   // float32 rounding of the result itself, with headroom

    // ------------------------------------------------------------------ selection

    [Theory]
    [InlineData(null, null)]
    [InlineData("", null)]
    [InlineData(" Default ", null)]
    [InlineData("none", GemmVariants.None)]
    [InlineData("splitk", GemmVariants.SplitK)]
    [InlineData(" VEC4 ", GemmVariants.Vec4Loads)]
    [InlineData("splitk,vec4", GemmVariants.SplitK | GemmVariants.Vec4Loads)]
    public void ParseGemmVariants_AcceptsTheDocumentedNames(string? text, GemmVariants? expected) =>
        Assert.Equal(expected, IlgpuBackend.ParseGemmVariants(text));

    [Fact]
    public void Both_variants_are_the_default_on_cuda_only()
    {
        Assert.Equal(GemmVariants.SplitK | GemmVariants.Vec4Loads, IlgpuBackend.DefaultGemmVariants(ILGPU.Runtime.AcceleratorType.Cuda));
        Assert.Equal(GemmVariants.None, IlgpuBackend.DefaultGemmVariants(ILGPU.Runtime.AcceleratorType.CPU));
        Assert.Equal(GemmVariants.None, IlgpuBackend.DefaultGemmVariants(ILGPU.Runtime.AcceleratorType.OpenCL));
    }

    [Fact]
    public void ParseGemmVariants_RejectsUnknownNames() =>
        Assert.Throws<ArgumentException>(() => IlgpuBackend.ParseGemmVariants("splitk,fast"));

    static IlgpuBackend.GemmShape Shape(int M, int N, int K) => new() { M = M, N = N, K = K, ARow = K, ACol = 1, BRow = 1, BCol = K, Ldc = N };

    /// <summary>
    /// The gpt2 B16·T1024 products on an H100 (132 SMs, target 264 groups), worked out by hand:
    /// dWeight 768×2304 has 108 tiles: 3 slices make 324 groups = 2 rounds of K/3, 4 make 432 = 2
    /// rounds of K/4 (best), 5 make 3 rounds of K/5. dWeight 768×768 has 36 tiles: 14 slices are the
    /// most that fit 2 rounds (504 groups); 16384/14 rounds up to 1184 (a multiple of 16), still 14
    /// slices. dWeight 3072×768 has 144: 2 slices make 288 groups (2 rounds of K/2), 3 make 432 (2
    /// rounds of K/3), 4 make 576 (3 rounds of K/4); 16384/3 rounds up to 5472. The forward (16384
    /// rows) already has 2304 tiles; a 1000-deep product is too shallow.
    /// </summary>
    [Theory]
    [InlineData(768, 2304, 16384, 4, 4096)]
    [InlineData(768, 768, 16384, 14, 1184)]
    [InlineData(3072, 768, 16384, 3, 5472)]
    [InlineData(16384, 2304, 768, 1, 768)]
    [InlineData(768, 768, 1000, 1, 1000)]
    [InlineData(16, 3072, 768, 1, 768)]     // decoding: 48 thin tiles, but 768 < 2 × 512 deep
    public void PlanSplitK_OnAnH100(int M, int N, int K, int slices, int depth) =>
        Assert.Equal((slices, depth), IlgpuBackend.PlanSplitK(Shape(M, N, K), 132, 512, 0, false));

    [Fact]
    public void PlanSplitK_ForcedSlices_LastOneRagged()
    {
        // 65 deep in 3: depth ceil(65/3) = 22 -> 32 (multiple of 16), so 32 + 32 + 1.
        Assert.Equal((3, 32), IlgpuBackend.PlanSplitK(Shape(70, 129, 65), 1, 16, 3, false));
        // The minimum depth caps the slices: 100 / 40 = 2 slices at most.
        Assert.Equal((2, 64), IlgpuBackend.PlanSplitK(Shape(33, 7, 100), 1, 40, 5, false));
        Assert.Equal((1, 10), IlgpuBackend.PlanSplitK(Shape(33, 7, 10), 1, 16, 5, false));
    }

    [Theory]
    [InlineData(0, 0, 64, true)]
    [InlineData(4, 8, 64, true)]
    [InlineData(1, 0, 64, false)]    // A's view starts mid-quad
    [InlineData(0, 2, 64, false)]    // B's view starts mid-quad
    [InlineData(0, 0, 66, false)]    // rows of 66 floats: every other row starts mid-quad
    public void CanLoadQuads_NeedsAlignedOffsetsAndStrides(long aIndex, long bIndex, int K, bool expected) =>
        Assert.Equal(expected, IlgpuBackend.CanLoadQuads(aIndex, bIndex, Shape(70, 132, K)));

    // ------------------------------------------------------------------ results

    public static IEnumerable<object[]> Backends() => [["ilgpu-cpu"], ["cuda"]];

    /// <summary>One configuration of the variant switches, applied to a backend and undone after.</summary>
    sealed record Settings(GemmVariants Variants, int Slices = 0, int MinDepth = 16, bool ForceTiled = false, long PadMin = long.MaxValue)
    {
        public T Run<T>(IlgpuBackend backend, Func<T> body)
        {
            var (v, s, d, f, p) = (backend.GemmVariants, backend.SplitKSlices, backend.SplitKMinDepth, backend.ForceTiledGemm, backend.PadRowsMinElements);
            (backend.GemmVariants, backend.SplitKSlices, backend.SplitKMinDepth, backend.ForceTiledGemm, backend.PadRowsMinElements) = (Variants, Slices, MinDepth, ForceTiled, PadMin);
            try { return body(); }
            finally { (backend.GemmVariants, backend.SplitKSlices, backend.SplitKMinDepth, backend.ForceTiledGemm, backend.PadRowsMinElements) = (v, s, d, f, p); }
        }
    }

    static readonly Dictionary<string, Settings> Configurations = new()
    {
        ["splitk3"] = new(GemmVariants.SplitK, Slices: 3),
        ["splitk-auto"] = new(GemmVariants.SplitK),
        ["splitk3+vec4"] = new(GemmVariants.SplitK | GemmVariants.Vec4Loads, Slices: 3),
        ["vec4"] = new(GemmVariants.Vec4Loads, ForceTiled: true),
        ["vec4+pad"] = new(GemmVariants.Vec4Loads, ForceTiled: true, PadMin: 0),
        ["splitk3+vec4+pad"] = new(GemmVariants.SplitK | GemmVariants.Vec4Loads, Slices: 3, PadMin: 0),
    };

    /// <summary>
    /// Shapes (N, K, OC) and what each exercises, per product (forward M=N, N=OC, K=K; dInput M=N,
    /// N=K, K=OC; dWeight M=OC, N=K, K=N): 33×100×7 splits the forward on 64×64 tiles into 48+48+4
    /// and dWeight into 32+1; 70×65×129 splits all three on 128×128 tiles with ragged last slices
    /// and depths that are not multiples of 8; 70×68×132 has every stride a multiple of 4, so all
    /// three products run the vector kernels (split or not); 33×7×70 has odd strides, so vec4 falls
    /// back to scalar loads; 70×68×131 has dOut rows of an odd length, which the backward copies into
    /// rows of 132 (the padding must never be read) so that dInput and dWeight run the vector kernels.
    /// </summary>
    public static IEnumerable<object[]> Cases()
    {
        foreach (var backend in new[] { "ilgpu-cpu", "cuda" })
        {
            yield return [backend, "splitk3", 33, 100, 7];
            yield return [backend, "splitk3", 70, 65, 129];
            yield return [backend, "splitk-auto", 33, 100, 7];
            yield return [backend, "splitk3+vec4", 70, 68, 132];
            yield return [backend, "vec4", 70, 68, 132];
            yield return [backend, "vec4", 33, 7, 70];
            yield return [backend, "vec4+pad", 70, 68, 131];
            yield return [backend, "splitk3+vec4+pad", 70, 68, 131];
        }
    }

    [SkippableTheory]
    [MemberData(nameof(Cases))]
    public void ForwardAndBackward_MatchReference_AndAccumulateTwice(string backendName, string configuration, int N, int K, int OC)
    {
        var backend = (IlgpuBackend)TestBackends.Get(backendName);
        Configurations[configuration].Run(backend, () => { CheckForwardAndBackward(backend, N, K, OC, offset: 0); return 0; });
    }

    /// <summary>
    /// With every view one float into its buffer the vector kernel would read misaligned quads (on
    /// ilgpu-cpu, shifted ones: a wrong result), so the choice must fall back to scalar loads.
    /// </summary>
    [SkippableTheory]
    [MemberData(nameof(Backends))]
    public void Vec4_UnalignedViews_FallBackToScalarLoads(string backendName)
    {
        var backend = (IlgpuBackend)TestBackends.Get(backendName);
        new Settings(GemmVariants.Vec4Loads, ForceTiled: true).Run(backend, () => { CheckForwardAndBackward(backend, 70, 68, 132, offset: 1); return 0; });
    }

    /// <summary>
    /// Which kernels the cases above actually reach (so they cannot silently test the default path).
    /// </summary>
    [SkippableFact]
    public void Choices_ReachTheVariantKernels()
    {
        var backend = (IlgpuBackend)TestBackends.Get("ilgpu-cpu");
        using var x = backend.Allocate<float>(1000);
        var aligned = x.All.View;
        var shifted = x.All.Slice(1, 999).View;
        IlgpuBackend.GemmChoice Choose(string configuration, IlgpuBackend.GemmShape s, bool offset) =>
            Configurations[configuration].Run(backend, () => backend.ChooseGemm(offset ? shifted : aligned, aligned, s));

        var forward = Shape(33, 7, 100);
        Assert.Equal(new IlgpuBackend.GemmChoice(false, false, 3, 48), Choose("splitk3", forward, false));
        Assert.Equal(new IlgpuBackend.GemmChoice(false, false, 2, 64), Choose("splitk-auto", forward, false));
        Assert.Equal(new IlgpuBackend.GemmChoice(true, false, 3, 32), Choose("splitk3", Shape(70, 129, 65), false));
        Assert.Equal(new IlgpuBackend.GemmChoice(true, true, 3, 32), Choose("splitk3+vec4", Shape(70, 132, 68), false));
        Assert.Equal(new IlgpuBackend.GemmChoice(true, true, 1, 68), Choose("vec4", Shape(70, 132, 68), false));
        Assert.Equal(new IlgpuBackend.GemmChoice(true, false, 1, 68), Choose("vec4", Shape(70, 132, 68), true));
        Assert.Equal(new IlgpuBackend.GemmChoice(true, false, 1, 7), Choose("vec4", Shape(33, 70, 7), false));
        // dOut rows of 131 are padded to 132 only with vec4 on, above the size threshold, and when K
        // allows quads in the other operand.
        using var dOut = backend.Allocate<float>(70 * 131);
        int Stride(string configuration, int K, int OC) =>
            Configurations[configuration].Run(backend, () => backend.PaddedRows(dOut.All.View, 70, K, OC).Stride);
        Assert.Equal(132, Stride("vec4+pad", 68, 131));
        Assert.Equal(131, Stride("vec4", 68, 131));
        Assert.Equal(131, Stride("vec4+pad", 66, 131));
        Assert.Equal(131, Configurations["vec4+pad"].Run(backend, () => new Settings(GemmVariants.None, PadMin: 0).Run(backend, () => backend.PaddedRows(dOut.All.View, 70, 68, 131).Stride)));
        // Switched off: the plain kernel choice (the default, unless ARCHER_GEMM says otherwise).
        Assert.Equal(new IlgpuBackend.GemmChoice(false, false, 1, 100),
            new Settings(GemmVariants.None).Run(backend, () => backend.ChooseGemm(aligned, aligned, forward)));
    }

    /// <summary>
    /// The vector kernel on a raw strided product whose quads cross the edges: A has rows of 8 floats
    /// but K = 6 (the quad at depth 4 holds 2 real values), B has rows of 132 but N = 130 (the last
    /// quad of a row holds 2). Those quads must load element by element; the padding holds NaN, so
    /// any read of it shows. Also split into 2 slices of 16 over a 37-deep variant.
    /// </summary>
    [SkippableTheory]
    [InlineData(6, 1)]
    [InlineData(37, 2)]
    public void Vec4_QuadsAcrossTheEdges_LoadElementwise(int K, int slices)
    {
        var backend = (IlgpuBackend)TestBackends.Get("ilgpu-cpu");
        const int M = 70, N = 130, bPitch = 132;
        int aPitch = (K / 4 + 1) * 4;   // the next multiple of 4 above K: at least one padding float per row
        var a = TestData.Floats(1, (long)M * aPitch);
        var b = TestData.Floats(2, (long)K * bPitch);
        for (int i = 0; i < M; i++) for (int p = K; p < aPitch; p++) a[i * aPitch + p] = float.NaN;
        for (int p = 0; p < K; p++) for (int j = N; j < bPitch; j++) b[p * bPitch + j] = float.NaN;
        var expected = new double[M * N];
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++)
            {
                double sum = 0;
                for (int p = 0; p < K; p++) sum += (double)a[i * aPitch + p] * b[p * bPitch + j];
                expected[i * N + j] = sum;
            }
        var shape = new IlgpuBackend.GemmShape { M = M, N = N, K = K, ARow = aPitch, ACol = 1, BRow = bPitch, BCol = 1, Ldc = N };
        var A = backend.Upload<float>(a); var B = backend.Upload<float>(b);
        var C = backend.Allocate<float>((long)M * N).All;
        var settings = new Settings(slices > 1 ? GemmVariants.SplitK | GemmVariants.Vec4Loads : GemmVariants.Vec4Loads, Slices: slices, ForceTiled: true);
        settings.Run(backend, () =>
        {
            Assert.Equal(new IlgpuBackend.GemmChoice(true, true, slices, slices > 1 ? 32 : K), backend.ChooseGemm(A.View, B.View, shape));
            backend.LaunchGemm(A.View, B.View, C.View, C.View, shape);
            return 0;
        });
        Check.Close(expected, backend.ToArray(C), Atol(K), Rtol, "C");
    }

    /// <summary>
    /// Forward with bias, then backward twice from non-zero gradients: dInput is overwritten (starts
    /// NaN), dWeight and dBias hold start + 1x, then start + 2x. Split partials are summed in a fixed
    /// order, so a second forward gives the same bits.
    /// </summary>
    static void CheckForwardAndBackward(IlgpuBackend backend, int N, int K, int OC, int offset)
    {
        var x = TestData.Floats(N + K + OC, (long)N * K);
        var w = TestData.Floats(N + K + OC + 1, (long)OC * K);
        var bias = TestData.Floats(N + K + OC + 2, OC);
        var dOut = TestData.Floats(N + K + OC + 3, (long)N * OC);
        var dwStart = TestData.Floats(99, (long)OC * K);
        var dbStart = TestData.Floats(98, OC);
        var rOut = MatMulReference.Forward(TestData.ToDouble(x), TestData.ToDouble(w), TestData.ToDouble(bias), N, K, OC);
        var (rdx, rdw, rdb) = MatMulReference.Backward(TestData.ToDouble(dOut), TestData.ToDouble(x), TestData.ToDouble(w), N, K, OC);

        Buf<float> Up(float[] data) => UploadAt(backend, data, offset);
        var input = Up(x); var weight = Up(w); var b = Up(bias);
        var output = Up(Filled((long)N * OC, float.NaN));
        backend.MatMulForward(input, weight, b, N, K, OC, output);
        var first = backend.ToArray(output);
        Check.Close(rOut, first, Atol(K), Rtol, "out");
        backend.MatMulForward(input, weight, b, N, K, OC, output);
        Assert.Equal(first, backend.ToArray(output));

        var dOutput = Up(dOut); var dInput = Up(Filled((long)N * K, float.NaN));
        var dWeight = Up(dwStart); var dBias = Up(dbStart);
        for (int times = 1; times <= 2; times++)
        {
            backend.MatMulBackward(dOutput, input, weight, N, K, OC, dInput, dWeight, dBias);
            Check.Close(rdx, backend.ToArray(dInput), Atol(OC), Rtol, $"dInput after {times}");
            Check.Close(Plus(dwStart, rdw, times), backend.ToArray(dWeight), Atol(N) * times, Rtol, $"dWeight after {times}");
            Check.Close(Plus(dbStart, rdb, times), backend.ToArray(dBias), Atol(N) * times, Rtol, $"dBias after {times}");
        }
    }

    /// <summary>The data in a buffer <paramref name="offset"/> floats past its start (NaN before it).</summary>
    static Buf<float> UploadAt(Backend backend, float[] data, int offset)
    {
        if (offset == 0) return backend.Upload<float>(data);
        var padded = Filled(data.Length + offset, float.NaN);
        data.CopyTo(padded, offset);
        return backend.Upload<float>(padded).Slice(offset, data.Length);
    }

    static float[] Filled(long n, float value) { var x = new float[n]; Array.Fill(x, value); return x; }

    static double[] Plus(float[] start, double[] delta, int times)
    {
        var r = new double[start.Length];
        for (int i = 0; i < r.Length; i++) r[i] = start[i] + times * delta[i];
        return r;
    }

    // ------------------------------------------------------------------ PTX (sm_90, no GPU needed)

    [Theory]
    [InlineData("TiledGemmVec4Kernel")]
    [InlineData("SplitTiledGemmKernel")]
    [InlineData("SplitTiledGemmVec4Kernel")]
    [InlineData("SplitSmallGemmKernel")]
    [InlineData("SplitKReduceKernel")]
    [InlineData("PadRowsKernel")]
    public void NewKernels_CompileToPtx_WithoutCalls(string kernel)
    {
        var ptx = PtxCompile.KernelWithoutCalls(kernel);
        var dir = Environment.GetEnvironmentVariable("ARCHER_PTX_DIR");
        if (!string.IsNullOrEmpty(dir)) { Directory.CreateDirectory(dir); File.WriteAllText(Path.Combine(dir, kernel + ".ptx"), ptx); }
        int vectorLoads = Regex.Matches(ptx, @"ld\.global\.v4\.f32").Count;
        if (kernel.Contains("Vec4"))
        {
            // A and B quads, for the first slice and in the loop: 4 vector loads, and the tile-direction
            // quads stored to shared memory as vectors too.
            Assert.True(vectorLoads >= 4, $"expected 128-bit global loads, found {vectorLoads}");
            Assert.True(Regex.Matches(ptx, @"st\.shared\.v4\.f32").Count >= 2, "expected 128-bit shared stores");
        }
        else Assert.Equal(0, vectorLoads);
    }
}
