using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using ArcherIlgpu.Kernels;

namespace ArcherIlgpu.Benchmarks;

/// <summary>
/// MatMul forward, dInput and dWeight at transformer shapes (N rows = B*T, K in, OC out), and on the
/// cpu backend each as a fraction of the machine's measured FMA peak.
/// </summary>
public sealed class MatMulBench : IOpBenchmark
{
    public string Name => "matmul";

    static readonly (int N, int K, int OC)[] Shapes =
        [(1024, 768, 768), (1024, 768, 3072), (1024, 3072, 768), (4096, 768, 768)];

    public void Run(Backend backend)
    {
        double peak = backend.Name == "cpu" ? FmaPeak.Measure() : double.NaN;
        double corePeak = backend.Name == "cpu" ? FmaPeak.PerCpuSecond() : double.NaN;
        if (!double.IsNaN(peak))
        {
            Console.WriteLine($"{"fma peak (register-only, all cores)",-40} {Environment.ProcessorCount + " threads",-28} {"",9} {peak,9:F1}");
            Console.WriteLine($"{"fma peak per CPU-second (one core)",-40} {"",-28} {"",9} {corePeak,9:F1}");
        }
        foreach (var (N, K, OC) in Shapes)
        {
            var input = Bench.Random(backend, (long)N * K, 1);
            var weight = Bench.Random(backend, (long)OC * K, 2, 0.05f);
            var bias = Bench.Random(backend, OC, 3);
            var output = backend.Allocate<float>((long)N * OC).All;
            var dOutput = Bench.Random(backend, (long)N * OC, 4);
            var dInput = backend.Allocate<float>((long)N * K).All;
            var dWeight = backend.Allocate<float>((long)OC * K).All;
            string shape = $"{N}x{K}x{OC}";
            double flops = 2.0 * N * K * OC;
            double Bytes(long a, long b, long c) => 4.0 * (a + b + c);

            double ms = Bench.Report(backend, "matmul forward (in·Wᵀ+b)", shape, flops, Bytes((long)N * K, (long)OC * K, (long)N * OC),
                () => backend.MatMulForward(input, weight, bias, N, K, OC, output));
            PrintFraction(peak, flops, ms);
            PrintCpuTimeEfficiency(corePeak, flops, () => backend.MatMulForward(input, weight, bias, N, K, OC, output));
            // The contract has no dInput-only call: time backward with and without dInput and take the difference.
            double bothMs = Bench.Report(backend, "matmul backward (dInput + dWeight)", shape, 2 * flops,
                Bytes((long)N * OC, (long)OC * K + (long)N * K, (long)N * K + (long)OC * K),
                () => backend.MatMulBackward(dOutput, input, weight, N, K, OC, dInput, dWeight, default));
            PrintFraction(peak, 2 * flops, bothMs);
            PrintCpuTimeEfficiency(corePeak, 2 * flops, () => backend.MatMulBackward(dOutput, input, weight, N, K, OC, dInput, dWeight, default));
            double dwMs = Bench.Report(backend, "matmul dWeight (dOutᵀ·in)", shape, flops, Bytes((long)N * OC, (long)N * K, (long)OC * K),
                () => backend.MatMulBackward(dOutput, input, weight, N, K, OC, default, dWeight, default));
            PrintFraction(peak, flops, dwMs);
            PrintCpuTimeEfficiency(corePeak, flops, () => backend.MatMulBackward(dOutput, input, weight, N, K, OC, default, dWeight, default));
            double dxMs = bothMs - dwMs;
            Console.WriteLine($"{"matmul dInput (dOut·W), by difference",-40} {shape,-28} {dxMs,9:F3} {flops / dxMs / 1e6,9:F1}");
            PrintFraction(peak, flops, dxMs);
            // Tensor cores (CUDA only): the same products with TF32 and BF16 operands.
            if (backend is IlgpuBackend gpu && gpu.Name == "cuda")
            {
                var saved = gpu.MatMulPrecision;
                foreach (var precision in new[] { MatMulPrecision.Tf32, MatMulPrecision.Bf16 })
                {
                    gpu.MatMulPrecision = precision;
                    string tag = precision.ToString().ToLowerInvariant();
                    Bench.Report(backend, $"matmul forward {tag}", shape, flops, Bytes((long)N * K, (long)OC * K, (long)N * OC),
                        () => backend.MatMulForward(input, weight, bias, N, K, OC, output));
                    Bench.Report(backend, $"matmul backward {tag} (dInput + dWeight)", shape, 2 * flops,
                        Bytes((long)N * OC, (long)OC * K + (long)N * K, (long)N * K + (long)OC * K),
                        () => backend.MatMulBackward(dOutput, input, weight, N, K, OC, dInput, dWeight, default));
                }
                gpu.MatMulPrecision = saved;
            }
            foreach (var b in new[] { input, weight, bias, output, dOutput, dInput, dWeight }) b.Buffer.Dispose();
        }
        // Decoding: a few rows against a large weight (memory-bound: GB/s is the figure to watch).
        foreach (var (N, K, OC) in new[] { (4, 768, 3072), (8, 768, 3072), (16, 768, 3072), (32, 768, 3072) })
        {
            var input = Bench.Random(backend, (long)N * K, 1);
            var weight = Bench.Random(backend, (long)OC * K, 2, 0.05f);
            var bias = Bench.Random(backend, OC, 3);
            var output = backend.Allocate<float>((long)N * OC).All;
            Bench.Report(backend, "matmul forward, decoding", $"{N}x{K}x{OC}", 2.0 * N * K * OC,
                4.0 * ((long)N * K + (long)OC * K + (long)N * OC), () => backend.MatMulForward(input, weight, bias, N, K, OC, output));
            foreach (var b in new[] { input, weight, bias, output }) b.Buffer.Dispose();
        }
    }

    static void PrintFraction(double peak, double flops, double ms)
    {
        if (!double.IsNaN(peak)) Console.WriteLine($"{"",-40} {"",-28} {"",9} {100 * flops / ms / 1e6 / peak,8:F0}% of FMA peak (wall clock)");
    }

    /// <summary>
    /// Work per CPU-second of the whole process (worker threads and their spinning included), against
    /// one core's FMA peak per CPU-second: on a shared machine this stays meaningful when wall-clock
    /// figures do not, and on an idle one wall-clock GFLOP/s ≈ this × cores × parallel efficiency.
    /// </summary>
    static void PrintCpuTimeEfficiency(double corePeak, double flops, Action run, double minCpuSeconds = 0.5)
    {
        if (double.IsNaN(corePeak)) return;
        var process = Process.GetCurrentProcess();
        process.Refresh();
        var start = process.TotalProcessorTime;
        int runs = 0;
        double cpuSeconds;
        do
        {
            run(); runs++;
            process.Refresh();
            cpuSeconds = (process.TotalProcessorTime - start).TotalSeconds;
        } while (cpuSeconds < minCpuSeconds);
        double perCpuSecond = flops * runs / cpuSeconds / 1e9;
        Console.WriteLine($"{"",-40} {"",-28} {"",9} {perCpuSecond,9:F1} GFLOP per CPU-second = {100 * perCpuSecond / corePeak:F0}% of one core's FMA peak");
    }
}

/// <summary>
/// The FMA roof: every core runs independent register-only FMA chains (12 accumulators, more than
/// latency × issue width) for a fixed time; no loads, so this is the compute ceiling of a GEMM.
/// </summary>
static class FmaPeak
{
    /// <summary>One thread's FMA rate per second of its own CPU time: immune to other processes' load.</summary>
    public static double PerCpuSecond()
    {
        double best = 0;
        for (int r = 0; r < 5; r++)
        {
            var t0 = ProcessCpuTime();
            float sink = Vector512.IsHardwareAccelerated ? Chains512(1 << 23) : Chains256(1 << 23);
            double seconds = (ProcessCpuTime() - t0).TotalSeconds;
            int lanes = Vector512.IsHardwareAccelerated ? 16 : 8;
            best = Math.Max(best, (1 << 23) * 12.0 * lanes * 2 / seconds / 1e9 + (sink == 12345 ? 1e-9 : 0));
        }
        return best;
    }

    /// <summary>The process's CPU time: this loop's own while no other thread of ours is busy.</summary>
    static TimeSpan ProcessCpuTime()
    {
        using var process = Process.GetCurrentProcess();
        return process.TotalProcessorTime;
    }

    public static double Measure(double seconds = 0.5)
    {
        int threads = Environment.ProcessorCount;
        var flops = new double[threads];
        var sw = Stopwatch.StartNew();
        Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t =>
        {
            long iterations = 0;
            float sink = 0;
            var run = Stopwatch.StartNew();
            while (run.Elapsed.TotalSeconds < seconds)
            {
                sink += Vector512.IsHardwareAccelerated ? Chains512(1 << 16) : Chains256(1 << 16);
                iterations += 1 << 16;
            }
            int lanes = Vector512.IsHardwareAccelerated ? 16 : 8;
            flops[t] = iterations * 12.0 * lanes * 2 / run.Elapsed.TotalSeconds + (sink == 12345 ? 1 : 0);
        });
        return flops.Sum() / 1e9;
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static float Chains512(int n)
    {
        var m = Vector512.Create(0.9999f); var a = Vector512.Create(1e-7f);
        Vector512<float> x0 = Vector512.Create(1f), x1 = x0, x2 = x0, x3 = x0, x4 = x0, x5 = x0, x6 = x0, x7 = x0, x8 = x0, x9 = x0, x10 = x0, x11 = x0;
        for (int i = 0; i < n; i++)
        {
            x0 = Vector512.FusedMultiplyAdd(x0, m, a); x1 = Vector512.FusedMultiplyAdd(x1, m, a);
            x2 = Vector512.FusedMultiplyAdd(x2, m, a); x3 = Vector512.FusedMultiplyAdd(x3, m, a);
            x4 = Vector512.FusedMultiplyAdd(x4, m, a); x5 = Vector512.FusedMultiplyAdd(x5, m, a);
            x6 = Vector512.FusedMultiplyAdd(x6, m, a); x7 = Vector512.FusedMultiplyAdd(x7, m, a);
            x8 = Vector512.FusedMultiplyAdd(x8, m, a); x9 = Vector512.FusedMultiplyAdd(x9, m, a);
            x10 = Vector512.FusedMultiplyAdd(x10, m, a); x11 = Vector512.FusedMultiplyAdd(x11, m, a);
        }
        return Vector512.Sum(x0 + x1 + x2 + x3 + x4 + x5 + x6 + x7 + x8 + x9 + x10 + x11);
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static float Chains256(int n)
    {
        var m = Vector256.Create(0.9999f); var a = Vector256.Create(1e-7f);
        Vector256<float> x0 = Vector256.Create(1f), x1 = x0, x2 = x0, x3 = x0, x4 = x0, x5 = x0, x6 = x0, x7 = x0, x8 = x0, x9 = x0, x10 = x0, x11 = x0;
        for (int i = 0; i < n; i++)
        {
            x0 = Vector256.FusedMultiplyAdd(x0, m, a); x1 = Vector256.FusedMultiplyAdd(x1, m, a);
            x2 = Vector256.FusedMultiplyAdd(x2, m, a); x3 = Vector256.FusedMultiplyAdd(x3, m, a);
            x4 = Vector256.FusedMultiplyAdd(x4, m, a); x5 = Vector256.FusedMultiplyAdd(x5, m, a);
            x6 = Vector256.FusedMultiplyAdd(x6, m, a); x7 = Vector256.FusedMultiplyAdd(x7, m, a);
            x8 = Vector256.FusedMultiplyAdd(x8, m, a); x9 = Vector256.FusedMultiplyAdd(x9, m, a);
            x10 = Vector256.FusedMultiplyAdd(x10, m, a); x11 = Vector256.FusedMultiplyAdd(x11, m, a);
        }
        return Vector256.Sum(x0 + x1 + x2 + x3 + x4 + x5 + x6 + x7 + x8 + x9 + x10 + x11);
    }
}

/// <summary>
/// The optional GEMM strategies of the ILGPU backend (<see cref="GemmVariants"/>: split-K, 128-bit
/// loads) side by side at the gpt2 B16·T1024 products, each product timed alone: forward, dInput and
/// dWeight of the qkv (768→2304), fc (768→3072), attention projection (768→768) and MLP projection
/// (3072→768) layers, in float32 and on the TF32/BF16 tensor cores (ARCHER_MATMUL), each with and
/// without 128-bit loads; then dWeight with forced slice counts, to tune the automatic choice. The shape
/// column adds how the product ran: 128×128 or 64×64 tiles, slices × depth, vector loads. Short
/// timings (about 0.1 s each) so the GPU script can afford it:
///   ArcherIlgpu.Benchmarks --device cuda --op gemm-variants
/// </summary>
public sealed class GemmVariantsBench : IOpBenchmark
{
    public string Name => "gemm-variants";

    // The four layer products, then the LM head (V = 50257: its dInput and dWeight read rows of an odd
    // length, so no 128-bit loads there).
    static readonly (int N, int K, int OC)[] Shapes = [(16384, 768, 2304), (16384, 768, 3072), (16384, 768, 768), (16384, 3072, 768), (16384, 768, 50257)];

    static readonly (string Tag, GemmVariants Variants, MatMulPrecision Precision)[] Configurations =
    [
        ("default", GemmVariants.None, MatMulPrecision.Float32), ("splitk", GemmVariants.SplitK, MatMulPrecision.Float32),
        ("vec4", GemmVariants.Vec4Loads, MatMulPrecision.Float32), ("splitk+vec4", GemmVariants.SplitK | GemmVariants.Vec4Loads, MatMulPrecision.Float32),
        // The tensor-core kernels (ARCHER_MATMUL=tf32|bf16), with scalar and with 128-bit global loads.
        ("tf32", GemmVariants.None, MatMulPrecision.Tf32), ("tf32+vec4", GemmVariants.Vec4Loads, MatMulPrecision.Tf32),
        ("bf16", GemmVariants.None, MatMulPrecision.Bf16), ("bf16+vec4", GemmVariants.Vec4Loads, MatMulPrecision.Bf16),
        ("tf32+splitk+vec4", GemmVariants.SplitK | GemmVariants.Vec4Loads, MatMulPrecision.Tf32),
        ("bf16+splitk+vec4", GemmVariants.SplitK | GemmVariants.Vec4Loads, MatMulPrecision.Bf16),
    ];

    public void Run(Backend backend)
    {
        if (backend is not IlgpuBackend gpu) { Console.WriteLine("gemm-variants: ILGPU backends only"); return; }
        var (savedVariants, savedSlices, savedPrecision) = (gpu.GemmVariants, gpu.SplitKSlices, gpu.MatMulPrecision);
        try
        {
            foreach (var (N, K, OC) in Shapes) RunShape(gpu, N, K, OC);
        }
        finally { (gpu.GemmVariants, gpu.SplitKSlices, gpu.MatMulPrecision) = (savedVariants, savedSlices, savedPrecision); }
    }

    static string TensorSlices((int Slices, int Depth) split) => split.Slices > 1 ? $" S{split.Slices}x{split.Depth}" : "";

    static void RunShape(IlgpuBackend gpu, int N, int K, int OC)
    {
        var input = Bench.Random(gpu, (long)N * K, 1);
        var weight = Bench.Random(gpu, (long)OC * K, 2, 0.05f);
        var bias = Bench.Random(gpu, OC, 3);
        var output = gpu.Allocate<float>((long)N * OC).All;
        var dOutput = Bench.Random(gpu, (long)N * OC, 4);
        var dInput = gpu.Allocate<float>((long)N * K).All;
        var dWeight = gpu.Allocate<float>((long)OC * K).All;
        double flops = 2.0 * N * K * OC;
        // The dInput product exactly as MatMulBackward issues it (the contract has no dInput-only call).
        var dInputShape = new IlgpuBackend.GemmShape { M = N, N = K, K = OC, ARow = OC, ACol = 1, BRow = K, BCol = 1, Ldc = K };
        var forwardShape = new IlgpuBackend.GemmShape { M = N, N = OC, K = K, ARow = K, ACol = 1, BRow = 1, BCol = K, Ldc = OC };
        var dWeightShape = new IlgpuBackend.GemmShape { M = OC, N = K, K = N, ARow = 1, ACol = OC, BRow = K, BCol = 1, Ldc = K };
        string Shape(ArrayViewPair views, IlgpuBackend.GemmShape s) => gpu.MatMulPrecision == MatMulPrecision.Float32
            ? $"{N}x{K}x{OC} {Describe(gpu.ChooseGemm(views.A, views.B, s))}"
            : $"{N}x{K}x{OC} 128 mma{TensorSlices(gpu.TensorSplit(s))}{(gpu.TensorQuads(views.A, views.B, s) ? " v4" : "")}";
        var forwardViews = new ArrayViewPair(input.View, weight.View);
        var dInputViews = new ArrayViewPair(dOutput.View, weight.View);
        var dWeightViews = new ArrayViewPair(dOutput.View, input.View);

        foreach (var (tag, variants, precision) in Configurations)
        {
            gpu.GemmVariants = variants;
            gpu.MatMulPrecision = precision;
            gpu.SplitKSlices = 0;
            Bench.Report(gpu, $"gemm forward {tag}", Shape(forwardViews, forwardShape), flops, 0,
                () => gpu.MatMulForward(input, weight, bias, N, K, OC, output), minSeconds: 0.1);
            Bench.Report(gpu, $"gemm dInput {tag}", Shape(dInputViews, dInputShape), flops, 0,
                () => gpu.LaunchGemm(dOutput.View, weight.View, dInput.View, dInput.View, dInputShape), minSeconds: 0.1);
            Bench.Report(gpu, $"gemm dWeight {tag}", Shape(dWeightViews, dWeightShape), flops, 0,
                () => gpu.MatMulBackward(dOutput, input, weight, N, K, OC, default, dWeight, default), minSeconds: 0.1);
        }
        gpu.GemmVariants = GemmVariants.SplitK;
        gpu.MatMulPrecision = MatMulPrecision.Float32;
        foreach (int slices in new[] { 2, 4, 8, 16 })
        {
            gpu.SplitKSlices = slices;
            Bench.Report(gpu, $"gemm dWeight splitk forced {slices}", Shape(dWeightViews, dWeightShape), flops, 0,
                () => gpu.MatMulBackward(dOutput, input, weight, N, K, OC, default, dWeight, default), minSeconds: 0.1);
        }
        foreach (var b in new[] { input, weight, bias, output, dOutput, dInput, dWeight }) b.Buffer.Dispose();
    }

    readonly record struct ArrayViewPair(ILGPU.ArrayView<float> A, ILGPU.ArrayView<float> B);

    static string Describe(IlgpuBackend.GemmChoice c) =>
        $"{(c.Big ? "128" : "64")}{(c.Slices > 1 ? $" S{c.Slices}x{c.SliceDepth}" : "")}{(c.Quads ? " v4" : "")}";
}

/// <summary>
/// The decode step's products: M = batch rows (64, 256) against the gpt2 layer and LM-head weights.
/// With the default plan a product this short never splits (K = 768 or 3072 is under the minimum split
/// depth of 512 per slice), so a 64×768×768 product runs on 6 groups of 132 SMs: generation at batch 64
/// spent ~6 ms per decode step on an H200 where reading the weights once takes ~0.1 ms. Here each product
/// runs with the default plan and with split-K down to slices of 256, 128 and 64 depths, in fp32 and bf16;
/// the GB/s column is the weight bytes read per second (the bound a decode step can reach). Usage:
///   ArcherIlgpu.Benchmarks --device cuda --op decode-gemm
/// </summary>
public sealed class DecodeGemmBench : IOpBenchmark
{
    public string Name => "decode-gemm";

    static readonly (int K, int OC)[] Weights = [(768, 2304), (768, 768), (768, 3072), (3072, 768), (768, 50257)];

    public void Run(Backend backend)
    {
        if (backend is not IlgpuBackend gpu) { Console.WriteLine("decode-gemm: ILGPU backends only"); return; }
        var (savedVariants, savedDepth, savedPrecision) = (gpu.GemmVariants, gpu.SplitKMinDepth, gpu.MatMulPrecision);
        try
        {
            foreach (int rows in new[] { 64, 256 })
                foreach (var (K, OC) in Weights)
                    RunProduct(gpu, rows, K, OC);
        }
        finally { (gpu.GemmVariants, gpu.SplitKMinDepth, gpu.MatMulPrecision) = (savedVariants, savedDepth, savedPrecision); }
    }

    static void RunProduct(IlgpuBackend gpu, int rows, int K, int OC)
    {
        var input = Bench.Random(gpu, (long)rows * K, 1);
        var weight = Bench.Random(gpu, (long)OC * K, 2, 0.05f);
        var bias = Bench.Random(gpu, OC, 3);
        var output = gpu.Allocate<float>((long)rows * OC).All;
        var shape = new IlgpuBackend.GemmShape { M = rows, N = OC, K = K, ARow = K, ACol = 1, BRow = 1, BCol = K, Ldc = OC };
        foreach (var precision in new[] { MatMulPrecision.Float32, MatMulPrecision.Bf16 })
            foreach (int minDepth in new[] { 512, 256, 128, 64 })
            {
                gpu.MatMulPrecision = precision;
                gpu.GemmVariants = GemmVariants.SplitK | GemmVariants.Vec4Loads;
                gpu.SplitKMinDepth = minDepth;
                var (slices, depth) = precision == MatMulPrecision.Float32 ? (gpu.ChooseGemm(input.View, weight.View, shape).Slices, 0) : gpu.TensorSplit(shape);
                Bench.Report(gpu, $"decode {Devices.PrecisionName(precision)} min depth {minDepth}", $"{rows}x{K}x{OC} S{slices}{(depth > 0 ? $"x{depth}" : "")}",
                    2.0 * rows * K * OC, 4.0 * OC * K, () => gpu.MatMulForward(input, weight, bias, rows, K, OC, output), minSeconds: 0.05);
            }
        foreach (var b in new[] { input, weight, bias, output }) b.Buffer.Dispose();
    }
}
