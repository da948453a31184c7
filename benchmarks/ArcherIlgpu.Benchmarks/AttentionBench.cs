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
            var qkv = Bench.Random(backend, B * T * W, 1);
            var dOut = Bench.Random(backend, B * T * HD, 2);
            var output = backend.Allocate<float>(B * T * HD).All;
            var lse = backend.Allocate<float>((long)B * H * T).All;
            var dQkv = backend.Allocate<float>(B * T * W).All;
            double flops = 4.0 * B * H * (double)T * T * D / 2;
            double bytes = 4.0 * (B * T * W + B * T * HD + B * H * T);
            string shape = $"B{B} T{T} H{H} Hkv{Hkv} D{D}";
            double minSeconds = simulator ? 0 : 1;
            Bench.Report(backend, "attention forward", shape, flops, bytes,
                () => backend.AttentionForward(qkv, B, T, H, Hkv, D, output, lse), minSeconds);
            Bench.Report(backend, "attention backward", shape, 2.5 * flops, 2 * bytes + 4.0 * B * T * W,
                () => backend.AttentionBackward(dOut, qkv, output, lse, B, T, H, Hkv, D, dQkv), minSeconds);
            qkv.Buffer.Dispose(); dOut.Buffer.Dispose(); output.Buffer.Dispose(); lse.Buffer.Dispose(); dQkv.Buffer.Dispose();
        }
    }
}
