using ArcherIlgpu.Kernels;

namespace ArcherIlgpu.Benchmarks;

/// <summary>
/// RoPE forward and backward in place on the fused qkv rows (N = B·T 1024..4096). Memory-bound: each
/// rotated pair reads and writes two floats and reads a cos and a sin (6 floats moved per 6 flops).
/// </summary>
public sealed class RopeBench : IOpBenchmark
{
    public string Name => "rope";

    static readonly (int N, int H, int Hkv, int D)[] Shapes =
    [
        (1024, 14, 2, 64),    // Qwen2.5-0.5B
        (4096, 14, 2, 64),
        (4096, 16, 8, 128),   // Qwen3-0.6B
    ];

    public void Run(Backend backend)
    {
        bool simulator = backend.Name == "ilgpu-cpu";
        const int maxT = 4096;
        foreach (var (N, H, Hkv, D) in Shapes)
        {
            if (simulator && N > 1024) continue;
            var (cosTable, sinTable) = RopeTable.Create(maxT, D, 1e6);
            var cos = backend.Upload<float>(cosTable); var sin = backend.Upload<float>(sinTable);
            var positions = backend.Upload<int>(Enumerable.Range(0, N).Select(n => n % maxT).ToArray());
            var qkv = Bench.Random(backend, (long)N * (H + 2 * Hkv) * D, 3);
            long pairs = (long)N * (H + Hkv) * D / 2;
            string shape = $"N{N} H{H} Hkv{Hkv} D{D}";
            double minSeconds = simulator ? 0 : 1;
            Bench.Report(backend, "rope forward", shape, 6.0 * pairs, 4.0 * 6 * pairs,
                () => backend.RopeForward(qkv, positions, cos, sin, N, H, Hkv, D), minSeconds);
            Bench.Report(backend, "rope backward", shape, 6.0 * pairs, 4.0 * 6 * pairs,
                () => backend.RopeBackward(qkv, positions, cos, sin, N, H, Hkv, D), minSeconds);
            qkv.Buffer.Dispose(); cos.Buffer.Dispose(); sin.Buffer.Dispose(); positions.Buffer.Dispose();
        }
    }
}
