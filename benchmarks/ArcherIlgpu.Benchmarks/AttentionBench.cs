using ArcherIlgpu.Kernels;

namespace ArcherIlgpu.Benchmarks;

/// <summary>
/// Causal attention forward and backward at transformer shapes (B*T 1024..4096, C 256..768).
/// FLOPs count the two causal matmuls of the forward (Q·Kᵀ and P·V, half the T×T square each):
/// 4·B·H·T²·D/2; the backward does about 2.5 times that (recomputing Q·Kᵀ plus four more matmuls).
/// </summary>
public sealed class AttentionBench : IOpBenchmark
{
    public string Name => "attention";

    static readonly (int B, int T, int C, int H)[] Shapes =
    [
        (4, 256, 256, 4),
        (8, 256, 512, 8),
        (4, 512, 768, 12),
        (4, 1024, 768, 12),
    ];

    public void Run(Backend backend)
    {
        bool simulator = backend.Name == "ilgpu-cpu";
        foreach (var (B, T, C, H) in Shapes)
        {
            if (simulator && B * T > 1024) continue;   // the ILGPU CPU simulator needs minutes here
            int D = C / H;
            var qkv = Bench.Random(backend, (long)B * T * 3 * C, 1);
            var dOut = Bench.Random(backend, (long)B * T * C, 2);
            var output = backend.Allocate<float>((long)B * T * C).All;
            var lse = backend.Allocate<float>((long)B * H * T).All;
            var dQkv = backend.Allocate<float>((long)B * T * 3 * C).All;
            double flops = 4.0 * B * H * (double)T * T * D / 2;
            double bytes = 4.0 * ((long)B * T * 3 * C + (long)B * T * C + B * H * T);
            string shape = $"B{B} T{T} C{C} H{H} D{D}";
            double minSeconds = simulator ? 0 : 1;
            Bench.Report(backend, "attention forward", shape, flops, bytes,
                () => backend.AttentionForward(qkv, B, T, C, H, output, lse), minSeconds);
            Bench.Report(backend, "attention backward", shape, 2.5 * flops, 2 * bytes + 4.0 * B * T * 3 * C,
                () => backend.AttentionBackward(dOut, qkv, output, lse, B, T, C, H, dQkv), minSeconds);
            qkv.Buffer.Dispose(); dOut.Buffer.Dispose(); output.Buffer.Dispose(); lse.Buffer.Dispose(); dQkv.Buffer.Dispose();
        }
    }
}
