using ArcherIlgpu.Kernels;

namespace ArcherIlgpu.Benchmarks;

/// <summary>
/// RMSNorm at the Llama block's shapes and QK-norm over a fused qkv row (Qwen3-0.6B-like heads:
/// 16 query and 8 key/value heads of D = 128, and a small 4/2 x 64 one). GB/s counts the minimum traffic.
/// </summary>
public sealed class RmsNormBench : IOpBenchmark
{
    public string Name => "rmsnorm";

    static readonly (int H, int Hkv, int D)[] Heads = [(4, 2, 64), (16, 8, 128)];

    public void Run(Backend backend)
    {
        foreach (var (N, C) in SmallOpShapes.Rows)
        {
            var x = Bench.Random(backend, (long)N * C, 1); var w = Bench.Random(backend, C, 2);
            var y = backend.Allocate<float>((long)N * C).All; var rstd = backend.Allocate<float>(N).All;
            Bench.Report(backend, "rmsnorm forward", $"N={N} C={C}", 4.0 * N * C, 4.0 * N * C * 2,
                () => backend.RmsNormForward(x, w, N, C, 1e-6f, y, rstd));
            var dx = backend.Allocate<float>((long)N * C).All; var dw = backend.Allocate<float>(C).All;
            // Read dy and x, read and write dx.
            Bench.Report(backend, "rmsnorm backward", $"N={N} C={C}", 9.0 * N * C, 4.0 * N * C * 4,
                () => backend.RmsNormBackward(y, x, w, rstd, N, C, dx, dw));
        }
        foreach (int N in new[] { 1024, 4096 })
            foreach (var (H, Hkv, D) in Heads)
            {
                long W = (long)(H + 2 * Hkv) * D;
                var qkv = Bench.Random(backend, N * W, 3); var qw = Bench.Random(backend, D, 4); var kw = Bench.Random(backend, D, 5);
                var y = backend.Allocate<float>(N * W).All; var rstd = backend.Allocate<float>((long)N * (H + Hkv)).All;
                string shape = $"N={N} H={H} Hkv={Hkv} D={D}";
                Bench.Report(backend, "qknorm forward", shape, 4.0 * N * W, 4.0 * N * W * 2,
                    () => backend.QkNormForward(qkv, qw, kw, N, H, Hkv, D, 1e-6f, y, rstd));
                var dx = backend.Allocate<float>(N * W).All;
                var dqw = backend.Allocate<float>(D).All; var dkw = backend.Allocate<float>(D).All;
                // Read dy and x, write dx.
                Bench.Report(backend, "qknorm backward", shape, 9.0 * N * W, 4.0 * N * W * 3,
                    () => backend.QkNormBackward(y, qkv, qw, kw, rstd, N, H, Hkv, D, dx, dqw, dkw));
            }
    }
}
