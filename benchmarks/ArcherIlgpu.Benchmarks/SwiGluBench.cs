using ArcherIlgpu.Kernels;

namespace ArcherIlgpu.Benchmarks;

/// <summary>SwiGLU over the fused [gate | up] projection, intermediate size I = 8/3 C rounded as Llama does.</summary>
public sealed class SwiGluBench : IOpBenchmark
{
    public string Name => "swiglu";

    public void Run(Backend backend)
    {
        foreach (var (N, C) in SmallOpShapes.Rows)
        {
            int I = (8 * C / 3 + 63) / 64 * 64;
            long n = (long)N * I;
            var gu = Bench.Random(backend, 2 * n, 1, 4f); var dy = Bench.Random(backend, n, 2);
            var y = backend.Allocate<float>(n).All; var dgu = backend.Allocate<float>(2 * n).All;
            // Read gate and up, write y.
            Bench.Report(backend, "swiglu forward", $"N={N} I={I}", 6.0 * n, 12.0 * n,
                () => backend.SwiGluForward(gu, N, I, y));
            // Read dy, gate and up, write dGate and dUp.
            Bench.Report(backend, "swiglu backward", $"N={N} I={I}", 12.0 * n, 20.0 * n,
                () => backend.SwiGluBackward(dy, gu, N, I, dgu));
        }
    }
}
