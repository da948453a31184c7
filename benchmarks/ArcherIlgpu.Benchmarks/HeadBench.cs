using ArcherIlgpu.Kernels;

namespace ArcherIlgpu.Benchmarks;

/// <summary>
/// Classifier head (cross-entropy forward+backward, token log-prob + entropy, log-prob backward) at
/// training shapes, and the sampler at a decoding shape. All are memory-bound: GB/s counts the logits
/// read once and each gradient written once, the minimum traffic.
/// </summary>
public sealed class HeadBench : IOpBenchmark
{
    public string Name => "head";

    public void Run(Backend backend)
    {
        int[] rows = [1024, 4096];
        int[] vocabularies = [512, 8192, 50257];
        long largest = (long)rows.Max() * vocabularies.Max();
        var logitsAll = Bench.Random(backend, largest, 1, 4f);
        using var gradBuffer = backend.Allocate<float>(largest);
        foreach (int V in vocabularies)
            foreach (int N in rows)
            {
                long elements = (long)N * V;
                var logits = logitsAll.Slice(0, elements);
                var dLogits = gradBuffer.All.Slice(0, elements);
                var targets = backend.Upload<int>(Enumerable.Range(0, N).Select(n => n * 7919 % V).ToArray());
                var weights = backend.Upload<float>(Enumerable.Repeat(1f, N).ToArray());
                var perRow = backend.Allocate<float>(N).All;
                var perRow2 = backend.Allocate<float>(N).All;
                string shape = $"N={N} V={V}";
                double rowBytes = elements * 4.0;
                Bench.Report(backend, "cross-entropy fwd+bwd", shape, 0, 2 * rowBytes,
                    () => backend.CrossEntropyForwardBackward(logits, targets, weights, N, V, perRow, dLogits));
                Bench.Report(backend, "cross-entropy fwd (loss only)", shape, 0, rowBytes,
                    () => backend.CrossEntropyForwardBackward(logits, targets, weights, N, V, perRow, default));
                Bench.Report(backend, "token logprob+entropy T=0.7", shape, 0, rowBytes,
                    () => backend.TokenLogProbEntropy(logits, targets, N, V, 0.7f, perRow, perRow2));
                Bench.Report(backend, "token logprob bwd T=0.7", shape, 0, 2 * rowBytes,
                    () => backend.TokenLogProbBackward(logits, targets, weights, N, V, 0.7f, dLogits));
            }

        {
            const int N = 64, V = 50257;
            var logits = logitsAll.Slice(0, (long)N * V);
            var rowIds = backend.Upload<int>(Enumerable.Range(0, N).ToArray());
            var positions = backend.Upload<int>(Enumerable.Repeat(17, N).ToArray());
            var tokens = backend.Allocate<int>(N).All;
            var logProbs = backend.Allocate<float>(N).All;
            string shape = $"N={N} V={V}";
            double bytes = (double)N * V * 4;
            foreach (var (label, temperature, topK, topP) in new[]
                     { ("sample greedy", 0f, 0, 1f), ("sample T=1", 1f, 0, 1f), ("sample T=0.8 top-k 50", 0.8f, 50, 1f),
                       ("sample T=0.8 top-p 0.9", 0.8f, 0, 0.9f), ("sample T=0.8 k 50 p 0.9", 0.8f, 50, 0.9f) })
                Bench.Report(backend, label, shape, 0, bytes,
                    () => backend.Sample(logits, rowIds, positions, N, V, temperature, topK, topP, 5, tokens, logProbs));
        }
    }
}
