using ArcherIlgpu.Kernels;

namespace ArcherIlgpu.Benchmarks;

/// <summary>Shapes shared by the small-op benchmarks: N = B*T rows by C channels.</summary>
static class SmallOpShapes
{
    public static readonly (int N, int C)[] Rows = [(1024, 256), (2048, 512), (4096, 768)];
    public const int Vocab = 50257, MaxT = 1024;
}

/// <summary>Token + position embedding. GB/s counts every float read or written once.</summary>
public sealed class EmbeddingBench : IOpBenchmark
{
    public string Name => "embedding";

    public void Run(Backend backend)
    {
        foreach (var (N, C) in SmallOpShapes.Rows)
        {
            var rng = new Random(1);
            var tokens = backend.Upload<int>(Enumerable.Range(0, N).Select(_ => rng.Next(SmallOpShapes.Vocab)).ToArray());
            var positions = backend.Upload<int>(Enumerable.Range(0, N).Select(n => n % SmallOpShapes.MaxT).ToArray());
            var wte = Bench.Random(backend, (long)SmallOpShapes.Vocab * C, 2);
            var wpe = Bench.Random(backend, (long)SmallOpShapes.MaxT * C, 3);
            var output = backend.Allocate<float>((long)N * C).All;
            double bytes = 4.0 * N * C * 3;   // two table rows read, one output row written
            Bench.Report(backend, "embedding forward", $"N={N} C={C}", N * C, bytes,
                () => backend.EmbeddingForward(tokens, positions, wte, wpe, N, C, output));
            var dWte = backend.Allocate<float>((long)SmallOpShapes.Vocab * C).All;
            var dWpe = backend.Allocate<float>((long)SmallOpShapes.MaxT * C).All;
            Bench.Report(backend, "embedding backward", $"N={N} C={C}", 2.0 * N * C, 4.0 * N * C * 5,
                () => backend.EmbeddingBackward(output, tokens, positions, N, C, dWte, dWpe));
        }
    }
}

/// <summary>Token embedding alone (rotary models): a gather and the deterministic scatter.</summary>
public sealed class TokenEmbeddingBench : IOpBenchmark
{
    public string Name => "token-embedding";

    public void Run(Backend backend)
    {
        foreach (var (N, C) in SmallOpShapes.Rows)
        {
            var rng = new Random(1);
            var tokens = backend.Upload<int>(Enumerable.Range(0, N).Select(_ => rng.Next(SmallOpShapes.Vocab)).ToArray());
            var wte = Bench.Random(backend, (long)SmallOpShapes.Vocab * C, 2);
            var output = backend.Allocate<float>((long)N * C).All;
            Bench.Report(backend, "token embedding forward", $"N={N} C={C}", 0, 4.0 * N * C * 2,
                () => backend.TokenEmbeddingForward(tokens, wte, N, C, output));
            var dWte = backend.Allocate<float>((long)SmallOpShapes.Vocab * C).All;
            Bench.Report(backend, "token embedding backward", $"N={N} C={C}", N * C, 4.0 * N * C * 3,
                () => backend.TokenEmbeddingBackward(output, tokens, N, C, dWte));
        }
    }
}

public sealed class LayerNormBench : IOpBenchmark
{
    public string Name => "layernorm";

    public void Run(Backend backend)
    {
        foreach (var (N, C) in SmallOpShapes.Rows)
        {
            var x = Bench.Random(backend, (long)N * C, 1); var w = Bench.Random(backend, C, 2); var b = Bench.Random(backend, C, 3);
            var y = backend.Allocate<float>((long)N * C).All;
            var mean = backend.Allocate<float>(N).All; var rstd = backend.Allocate<float>(N).All;
            Bench.Report(backend, "layernorm forward", $"N={N} C={C}", 7.0 * N * C, 4.0 * N * C * 2,
                () => backend.LayerNormForward(x, w, b, N, C, 1e-5f, y, mean, rstd));
            var dx = backend.Allocate<float>((long)N * C).All;
            var dw = backend.Allocate<float>(C).All; var db = backend.Allocate<float>(C).All;
            // Minimum traffic: read dy and x, read and write dx.
            Bench.Report(backend, "layernorm backward", $"N={N} C={C}", 14.0 * N * C, 4.0 * N * C * 4,
                () => backend.LayerNormBackward(y, x, w, mean, rstd, N, C, dx, dw, db));
        }
    }
}

public sealed class ElementwiseBench : IOpBenchmark
{
    public string Name => "elementwise";

    public void Run(Backend backend)
    {
        foreach (var (N, C) in SmallOpShapes.Rows)
        {
            int n = N * 4 * C;   // the MLP's hidden activation, 4C wide
            var x = Bench.Random(backend, n, 1, 4f); var dy = Bench.Random(backend, n, 2);
            var y = backend.Allocate<float>(n).All; var dx = backend.Allocate<float>(n).All;
            Bench.Report(backend, "gelu forward", $"N={N} 4C={4 * C}", 12.0 * n, 8.0 * n,
                () => backend.GeluForward(x, n, y));
            Bench.Report(backend, "gelu backward", $"N={N} 4C={4 * C}", 18.0 * n, 12.0 * n,
                () => backend.GeluBackward(dy, x, n, dx));
            int r = N * C;
            var a = x.Slice(0, r); var bb = dy.Slice(0, r); var o = y.Slice(0, r);
            Bench.Report(backend, "residual forward", $"N={N} C={C}", r, 12.0 * r,
                () => backend.ResidualForward(a, bb, r, o));
            Bench.Report(backend, "residual backward", $"N={N} C={C}", 2.0 * r, 20.0 * r,
                () => backend.ResidualBackward(bb, r, a, dx.Slice(0, r)));
        }
    }
}

/// <summary>Gradient norm and AdamW over a GPT-2-small-sized flat buffer (124M floats).</summary>
public sealed class OptimizerBench : IOpBenchmark
{
    public string Name => "optimizer";

    public void Run(Backend backend)
    {
        const int n = 124_439_808;   // GPT-2 small parameter count
        var p = Bench.Random(backend, n, 1); var g = Bench.Random(backend, n, 2, 1e-3f);
        var m = backend.Allocate<float>(n).All; var v = backend.Allocate<float>(n).All;
        var norm = backend.Allocate<float>(1).All;
        Bench.Report(backend, "sum of squares", $"n={n}", 2.0 * n, 4.0 * n, () => backend.SumOfSquares(g, norm));
        int step = 0;
        // Reads p, g, m, v and writes p, m, v: 28 bytes per element.
        Bench.Report(backend, "adamw (clip 1.0)", $"n={n}", 18.0 * n, 28.0 * n,
            () => backend.AdamW(p, g, m, v, norm, 1f, 3e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, ++step));
    }
}
