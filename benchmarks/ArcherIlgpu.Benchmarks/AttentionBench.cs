using ArcherIlgpu.Kernels;

namespace ArcherIlgpu.Benchmarks;

/// <summary>
/// Causal attention forward and backward at transformer shapes (B*T 1024..4096): GPT-2's multi-head
/// shapes (Hkv = H, C 256..768) and grouped-query ones (Qwen2.5-0.5B: H 14, Hkv 2, D 64; Qwen3-0.6B:
/// H 16, Hkv 8, D 128). FLOPs count the two causal matmuls of the forward (Q·Kᵀ and P·V, half the T×T
/// square each): 4·B·H·T²·D/2; the backward does about 2.5 times that (recomputing Q·Kᵀ plus four more).
/// </summary>
public sealed class AttentionBench : IOpBenchmark
{
    public string Name => "attention";

    static readonly (int B, int T, int H, int Hkv, int D)[] Shapes =
    [
        (4, 256, 4, 4, 64),
        (8, 256, 8, 8, 64),
        (4, 512, 12, 12, 64),
        (4, 1024, 12, 12, 64),
        (4, 512, 14, 2, 64),
        (4, 512, 16, 8, 128),
    ];

    public void Run(Backend backend)
    {
        bool simulator = backend.Name == "ilgpu-cpu";
        foreach (var (B, T, H, Hkv, D) in Shapes)
        {
            if (simulator && B * T > 1024) continue;   // the ILGPU CPU simulator needs minutes here
            long W = (long)(H + 2 * Hkv) * D, HD = (long)H * D;
            using var buffers = AttentionBuffers.Create(backend, B, T, H, Hkv, D);
            var (qkv, dOut, output, lse, dQkv) = buffers;
            double flops = 4.0 * B * H * (double)T * T * D / 2;
            double bytes = 4.0 * (B * T * W + B * T * HD + B * H * T);
            string shape = $"B{B} T{T} H{H} Hkv{Hkv} D{D}";
            double minSeconds = simulator ? 0 : 1;
            Bench.Report(backend, "attention forward", shape, flops, bytes,
                () => backend.AttentionForward(qkv, B, T, H, Hkv, D, output, lse), minSeconds);
            Bench.Report(backend, "attention backward", shape, 2.5 * flops, 2 * bytes + 4.0 * B * T * W,
                () => backend.AttentionBackward(dOut, qkv, output, lse, B, T, H, Hkv, D, dQkv), minSeconds);
        }
    }
}

/// <summary>
/// The ILGPU attention kernels side by side (<see cref="AttentionKernel"/>: the warp kernels, the
/// default, and the flash ones) at the training shapes: gpt2 (B16 T1024 H12 D64), Qwen2.5-0.5B
/// (B4 T1024 H14 Hkv2 D64) and a D128 grouped-query shape (Qwen3-0.6B: H16 Hkv8) for the wide kernels.
/// Forward, backward and both, in ms and TFLOP/s (FLOPs as in <see cref="AttentionBench"/>), for
/// grouped-query shapes the flash backward with its dK/dV split over query heads forced off and on,
/// then the largest difference between the two kernels' output, logSumExp and dQkv relative to the
/// output scale. Short timings (about 0.2 s each, well under 30 s in all on a GPU):
///   ArcherIlgpu.Benchmarks --device cuda --op attention-variants
/// </summary>
public sealed class AttentionVariantsBench : IOpBenchmark
{
    public string Name => "attention-variants";

    static readonly (int B, int T, int H, int Hkv, int D)[] Shapes = [(16, 1024, 12, 12, 64), (4, 1024, 14, 2, 64), (4, 1024, 16, 8, 128)];

    public void Run(Backend backend)
    {
        if (backend is not IlgpuBackend gpu) { Console.WriteLine("attention-variants: ILGPU backends only"); return; }
        bool simulator = gpu.BuffersInHostMemory;
        var saved = gpu.AttentionKernel;
        try
        {
            if (simulator) RunShape(gpu, 1, 70, 2, 1, 16, 0);   // ilgpu-cpu: a smoke run of the same code (seconds)
            else foreach (var (B, T, H, Hkv, D) in Shapes) RunShape(gpu, B, T, H, Hkv, D, 0.2);
        }
        finally { gpu.AttentionKernel = saved; }
    }

    static void RunShape(IlgpuBackend gpu, int B, int T, int H, int Hkv, int D, double minSeconds)
    {
        using var buffers = AttentionBuffers.Create(gpu, B, T, H, Hkv, D);
        var (qkv, dOut, output, lse, dQkv) = buffers;
        double flops = 4.0 * B * H * (double)T * T * D / 2;
        string shape = $"B{B} T{T} H{H} Hkv{Hkv} D{D}";
        var results = new Dictionary<AttentionKernel, (double Forward, double Backward, double Both, float[][] Outputs)>();
        foreach (var kernel in new[] { AttentionKernel.Warp, AttentionKernel.Flash })
        {
            gpu.AttentionKernel = kernel;
            string tag = kernel.ToString().ToLowerInvariant();
            void Forward() => gpu.AttentionForward(qkv, B, T, H, Hkv, D, output, lse);
            void Backward() => gpu.AttentionBackward(dOut, qkv, output, lse, B, T, H, Hkv, D, dQkv);
            double f = Bench.Report(gpu, $"attention forward {tag}", shape, flops, 0, Forward, minSeconds);
            double b = Bench.Report(gpu, $"attention backward {tag}", shape, 2.5 * flops, 0, Backward, minSeconds);
            double both = Bench.Report(gpu, $"attention fwd+bwd {tag}", shape, 3.5 * flops, 0, () => { Forward(); Backward(); }, minSeconds);
            results[kernel] = (f, b, both, [gpu.ToArray(output), gpu.ToArray(lse), gpu.ToArray(dQkv)]);
        }
        if (H > Hkv) TimeUnsplitBackward(gpu, buffers, B, T, H, Hkv, D, shape, 2.5 * flops, minSeconds);
        var (warp, flash) = (results[AttentionKernel.Warp], results[AttentionKernel.Flash]);
        Console.WriteLine($"  {shape}: flash TFLOP/s forward {flops / flash.Forward / 1e9:F2}, backward {2.5 * flops / flash.Backward / 1e9:F2}, " +
            $"both {3.5 * flops / flash.Both / 1e9:F2}; speed-up over warp: forward {warp.Forward / flash.Forward:F2}x, " +
            $"backward {warp.Backward / flash.Backward:F2}x, both {warp.Both / flash.Both:F2}x");
        Console.WriteLine($"  {shape}: flash vs warp max relative difference: output {RelativeDifference(warp.Outputs[0], flash.Outputs[0]):E1}, " +
            $"logSumExp {RelativeDifference(warp.Outputs[1], flash.Outputs[1]):E1}, dQkv {RelativeDifference(warp.Outputs[2], flash.Outputs[2]):E1}");
    }

    /// <summary>
    /// The flash backward with the grouped-query dK/dV split forced off and on, to check the automatic
    /// choice (split below 4 groups per SM; the line above used it).
    /// </summary>
    static void TimeUnsplitBackward(IlgpuBackend gpu, AttentionBuffers buffers, int B, int T, int H, int Hkv, int D,
        string shape, double flops, double minSeconds)
    {
        var (qkv, dOut, output, lse, dQkv) = buffers;
        var saved = gpu.FlashSplitBelow;
        gpu.AttentionKernel = AttentionKernel.Flash;
        try
        {
            foreach (var (tag, splitBelow) in new[] { ("unsplit", 0), ("split", int.MaxValue) })
            {
                gpu.FlashSplitBelow = splitBelow;
                Bench.Report(gpu, $"attention backward flash {tag}", shape, flops, 0,
                    () => gpu.AttentionBackward(dOut, qkv, output, lse, B, T, H, Hkv, D, dQkv), minSeconds);
            }
        }
        finally { gpu.FlashSplitBelow = saved; }
    }

    /// <summary>max |a − b| / max(1, max |a|), as selfcheck measures errors.</summary>
    static double RelativeDifference(float[] a, float[] b)
    {
        double scale = 1, diff = 0;
        for (int i = 0; i < a.Length; i++)
        {
            scale = Math.Max(scale, Math.Abs(a[i]));
            double d = Math.Abs((double)a[i] - b[i]);
            diff = double.IsNaN(d) ? double.PositiveInfinity : Math.Max(diff, d);
        }
        return diff / scale;
    }
}

/// <summary>One attention shape's buffers: random qkv [B, T, (H + 2Hkv)·D] and dOutput [B, T, H·D]; output, logSumExp and dQkv.</summary>
sealed record AttentionBuffers(Buf<float> Qkv, Buf<float> DOutput, Buf<float> Output, Buf<float> LogSumExp, Buf<float> DQkv) : IDisposable
{
    public static AttentionBuffers Create(Backend backend, int B, int T, int H, int Hkv, int D)
    {
        long W = (long)(H + 2 * Hkv) * D, HD = (long)H * D;
        return new AttentionBuffers(Bench.Random(backend, B * T * W, 1), Bench.Random(backend, B * T * HD, 2),
            backend.Allocate<float>(B * T * HD).All, backend.Allocate<float>((long)B * H * T).All, backend.Allocate<float>(B * T * W).All);
    }

    public void Dispose()
    {
        foreach (var b in new[] { Qkv, DOutput, Output, LogSumExp, DQkv }) b.Buffer.Dispose();
    }
}
