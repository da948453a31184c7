using System.Diagnostics;

namespace ArcherIlgpu.Kernels;

/// <summary>
/// A decorator that runs every op on an inner backend and times it: it waits for the device before
/// and after each call, so on a GPU the time is the kernel's own, and sums the times by op name.
/// The waits make a profiled step slower than a real one; use it to find the slowest op, not to
/// measure the step. Buffers belong to the inner backend.
/// </summary>
public sealed class ProfilingBackend(Backend inner) : Backend
{
    /// <summary>Calls and total time of one op.</summary>
    public sealed class OpStats
    {
        public long Calls;
        public long Ticks;
        public double Milliseconds => Ticks * 1000.0 / Stopwatch.Frequency;
    }

    readonly Dictionary<string, OpStats> stats = new();

    public Backend Inner { get; } = inner;
    /// <summary>While false, ops pass straight through (warm-up steps).</summary>
    public bool Enabled { get; set; } = true;
    public IReadOnlyDictionary<string, OpStats> Stats => stats;
    public void Reset() => stats.Clear();

    public override string Name => Inner.Name;
    public override string Description => Inner.Description + " (profiled)";
    public override bool BuffersInHostMemory => Inner.BuffersInHostMemory;
    public override long MemoryCapacity => Inner.MemoryCapacity;

    void Time(string op, Action run)
    {
        if (!Enabled) { run(); return; }
        Inner.Synchronize();
        long start = Stopwatch.GetTimestamp();
        run();
        Inner.Synchronize();
        long ticks = Stopwatch.GetTimestamp() - start;
        if (!stats.TryGetValue(op, out var s)) stats[op] = s = new OpStats();
        s.Calls++;
        s.Ticks += ticks;
    }

    // Each *Core override below calls the inner backend's PUBLIC op, so a profiled call checks its
    // arguments twice (here and in the inner op): harmless, and only while profiling.

    /// <summary>The "op shape" key: the same op at different sizes is listed apart (e.g. each matmul).</summary>
    static string Key(string op, string shape) => op + " " + shape;

    public override DeviceBuffer<T> Allocate<T>(long length) => Inner.Allocate<T>(length);
    public override void Upload<T>(Buf<T> dst, ReadOnlySpan<T> src) => Inner.Upload(dst, src);
    public override void Download<T>(Buf<T> src, Span<T> dst) => Inner.Download(src, dst);
    public override void Zero<T>(Buf<T> dst) => Time("Zero", () => Inner.Zero(dst));
    public override void Copy<T>(Buf<T> src, Buf<T> dst) => Time("Copy", () => Inner.Copy(src, dst));
    public override void Synchronize() => Inner.Synchronize();
    public override void Dispose() => Inner.Dispose();

    protected override void EmbeddingForwardCore(Buf<int> tokens, Buf<int> positions, Buf<float> wte, Buf<float> wpe, int N, int C, Buf<float> output)
        => Time("EmbeddingForward", () => Inner.EmbeddingForward(tokens, positions, wte, wpe, N, C, output));
    protected override void EmbeddingBackwardCore(Buf<float> dOutput, Buf<int> tokens, Buf<int> positions, int N, int C, Buf<float> dWte, Buf<float> dWpe)
        => Time("EmbeddingBackward", () => Inner.EmbeddingBackward(dOutput, tokens, positions, N, C, dWte, dWpe));

    protected override void LayerNormForwardCore(Buf<float> input, Buf<float> weight, Buf<float> bias, int N, int C, float eps, Buf<float> output, Buf<float> mean, Buf<float> rstd)
        => Time("LayerNormForward", () => Inner.LayerNormForward(input, weight, bias, N, C, eps, output, mean, rstd));
    protected override void LayerNormBackwardCore(Buf<float> dOutput, Buf<float> input, Buf<float> weight, Buf<float> mean, Buf<float> rstd, int N, int C, Buf<float> dInput, Buf<float> dWeight, Buf<float> dBias)
        => Time("LayerNormBackward", () => Inner.LayerNormBackward(dOutput, input, weight, mean, rstd, N, C, dInput, dWeight, dBias));

    protected override void MatMulForwardCore(Buf<float> input, Buf<float> weight, Buf<float> bias, int N, int K, int OC, Buf<float> output)
        => Time(Key("MatMulForward", $"{N}x{K}->{OC}"), () => Inner.MatMulForward(input, weight, bias, N, K, OC, output));
    protected override void MatMulBackwardCore(Buf<float> dOutput, Buf<float> input, Buf<float> weight, int N, int K, int OC, Buf<float> dInput, Buf<float> dWeight, Buf<float> dBias)
        => Time(Key("MatMulBackward", $"{N}x{K}->{OC}"), () => Inner.MatMulBackward(dOutput, input, weight, N, K, OC, dInput, dWeight, dBias));

    protected override void AttentionForwardCore(Buf<float> qkv, int B, int T, int H, int Hkv, int D, Buf<float> output, Buf<float> logSumExp)
        => Time("AttentionForward", () => Inner.AttentionForward(qkv, B, T, H, Hkv, D, output, logSumExp));
    protected override void AttentionBackwardCore(Buf<float> dOutput, Buf<float> qkv, Buf<float> output, Buf<float> logSumExp, int B, int T, int H, int Hkv, int D, Buf<float> dQkv)
        => Time("AttentionBackward", () => Inner.AttentionBackward(dOutput, qkv, output, logSumExp, B, T, H, Hkv, D, dQkv));
    protected override void KvCacheWriteCore(Buf<float> qkv, int B, int T, int H, int Hkv, int D, int maxT, Buf<float> kCache, Buf<float> vCache)
        => Time("KvCacheWrite", () => Inner.KvCacheWrite(qkv, B, T, H, Hkv, D, maxT, kCache, vCache));
    protected override void AttentionDecodeCore(Buf<float> qkv, Buf<int> positions, int B, int H, int Hkv, int D, int maxT, Buf<float> kCache, Buf<float> vCache, Buf<float> output)
        => Time("AttentionDecode", () => Inner.AttentionDecode(qkv, positions, B, H, Hkv, D, maxT, kCache, vCache, output));

    protected override void GeluForwardCore(Buf<float> input, int n, Buf<float> output)
        => Time("GeluForward", () => Inner.GeluForward(input, n, output));
    protected override void GeluBackwardCore(Buf<float> dOutput, Buf<float> input, int n, Buf<float> dInput)
        => Time("GeluBackward", () => Inner.GeluBackward(dOutput, input, n, dInput));
    protected override void ResidualForwardCore(Buf<float> a, Buf<float> b, int n, Buf<float> output)
        => Time("ResidualForward", () => Inner.ResidualForward(a, b, n, output));
    protected override void ResidualBackwardCore(Buf<float> dOutput, int n, Buf<float> dA, Buf<float> dB)
        => Time("ResidualBackward", () => Inner.ResidualBackward(dOutput, n, dA, dB));

    protected override void CrossEntropyForwardBackwardCore(Buf<float> logits, Buf<int> targets, Buf<float> weights, int N, int V, Buf<float> losses, Buf<float> dLogits)
        => Time("CrossEntropyForwardBackward", () => Inner.CrossEntropyForwardBackward(logits, targets, weights, N, V, losses, dLogits));
    protected override void TokenLogProbEntropyCore(Buf<float> logits, Buf<int> tokens, int N, int V, float temperature, Buf<float> logProbs, Buf<float> entropies)
        => Time("TokenLogProbEntropy", () => Inner.TokenLogProbEntropy(logits, tokens, N, V, temperature, logProbs, entropies));
    protected override void TokenLogProbBackwardCore(Buf<float> logits, Buf<int> tokens, Buf<float> dLogProbs, int N, int V, float temperature, Buf<float> dLogits)
        => Time("TokenLogProbBackward", () => Inner.TokenLogProbBackward(logits, tokens, dLogProbs, N, V, temperature, dLogits));

    protected override void SumOfSquaresCore(Buf<float> grads, Buf<float> normSquared)
        => Time("SumOfSquares", () => Inner.SumOfSquares(grads, normSquared));
    protected override void AdamWCore(Buf<float> parameters, Buf<float> grads, Buf<float> m, Buf<float> v, Buf<float> normSquared, float maxNorm, float lr, float beta1, float beta2, float eps, float weightDecay, int step)
        => Time("AdamW", () => Inner.AdamW(parameters, grads, m, v, normSquared, maxNorm, lr, beta1, beta2, eps, weightDecay, step));

    protected override void SampleCore(Buf<float> logits, Buf<int> rows, Buf<int> positions, int N, int V, float temperature, int topK, float topP, ulong seed, Buf<int> tokens, Buf<float> logProbs)
        => Time("Sample", () => Inner.Sample(logits, rows, positions, N, V, temperature, topK, topP, seed, tokens, logProbs));
    protected override void RecordSamplesCore(Buf<int> sampled, Buf<float> sampledLogProbs, int B, int maxNew, int maxT, int endToken,
        Buf<int> status, Buf<int> counts, Buf<int> lengths, Buf<int> outTokens, Buf<float> outLogProbs, Buf<int> nextTokens, Buf<int> nextPositions, Buf<int> samplePositions)
        => Time("RecordSamples", () => Inner.RecordSamples(sampled, sampledLogProbs, B, maxNew, maxT, endToken, status, counts, lengths, outTokens, outLogProbs, nextTokens, nextPositions, samplePositions));
    protected override void GroupAdvantagesCore(Buf<float> rewards, Buf<float> mask, int R, int T, int groupSize,
        PolicyAdvantageEstimator estimator, double epsilon, Buf<float> advantages)
        => Time("GroupAdvantages", () => Inner.GroupAdvantages(rewards, mask, R, T, groupSize, estimator, epsilon, advantages));
    protected override void ClassifyTokensPerResponseCore(Buf<float> entropies, Buf<float> mask, int R, int T, double rho,
        bool strictGreater, Buf<float> thresholds, Buf<int> classes)
        => Time("ClassifyTokensPerResponse", () => Inner.ClassifyTokensPerResponse(entropies, mask, R, T, rho, strictGreater, thresholds, classes));

    protected override void ClassifyTokensBatchCore(Buf<float> entropies, Buf<float> mask, int N, double rho,
        bool strictGreater, Buf<float> threshold, Buf<int> classes)
        => Time("ClassifyTokensBatch", () => Inner.ClassifyTokensBatch(entropies, mask, N, rho, strictGreater, threshold, classes));

    protected override void PolicyLossForwardBackwardCore(Buf<float> logProbs, Buf<float> oldLogProbs, Buf<float> refLogProbs,
        Buf<float> advantages, Buf<float> mask, Buf<int> classes, int R, int T, in PolicyLossParameters parameters,
        Buf<float> dLogProbs, Buf<float> stats)
    {
        var p = parameters;   // an `in` parameter cannot be captured by the lambda
        Time("PolicyLossForwardBackward", () => Inner.PolicyLossForwardBackward(logProbs, oldLogProbs, refLogProbs,
            advantages, mask, classes, R, T, in p, dLogProbs, stats));
    }

    // ---- the Llama / Qwen block
    protected override void TokenEmbeddingForwardCore(Buf<int> tokens, Buf<float> wte, int N, int C, Buf<float> output)
        => Time("TokenEmbeddingForward", () => Inner.TokenEmbeddingForward(tokens, wte, N, C, output));
    protected override void TokenEmbeddingBackwardCore(Buf<float> dOutput, Buf<int> tokens, int N, int C, Buf<float> dWte)
        => Time("TokenEmbeddingBackward", () => Inner.TokenEmbeddingBackward(dOutput, tokens, N, C, dWte));
    protected override void RmsNormForwardCore(Buf<float> input, Buf<float> weight, int N, int C, float eps, Buf<float> output, Buf<float> rstd)
        => Time("RmsNormForward", () => Inner.RmsNormForward(input, weight, N, C, eps, output, rstd));
    protected override void RmsNormBackwardCore(Buf<float> dOutput, Buf<float> input, Buf<float> weight, Buf<float> rstd, int N, int C, Buf<float> dInput, Buf<float> dWeight)
        => Time("RmsNormBackward", () => Inner.RmsNormBackward(dOutput, input, weight, rstd, N, C, dInput, dWeight));
    protected override void QkNormForwardCore(Buf<float> qkv, Buf<float> qWeight, Buf<float> kWeight, int N, int H, int Hkv, int D, float eps, Buf<float> output, Buf<float> rstd)
        => Time("QkNormForward", () => Inner.QkNormForward(qkv, qWeight, kWeight, N, H, Hkv, D, eps, output, rstd));
    protected override void QkNormBackwardCore(Buf<float> dOutput, Buf<float> qkv, Buf<float> qWeight, Buf<float> kWeight, Buf<float> rstd, int N, int H, int Hkv, int D, Buf<float> dQkv, Buf<float> dQWeight, Buf<float> dKWeight)
        => Time("QkNormBackward", () => Inner.QkNormBackward(dOutput, qkv, qWeight, kWeight, rstd, N, H, Hkv, D, dQkv, dQWeight, dKWeight));
    protected override void RopeForwardCore(Buf<float> qkv, Buf<int> positions, Buf<float> cos, Buf<float> sin, int N, int H, int Hkv, int D)
        => Time("RopeForward", () => Inner.RopeForward(qkv, positions, cos, sin, N, H, Hkv, D));
    protected override void RopeBackwardCore(Buf<float> dQkv, Buf<int> positions, Buf<float> cos, Buf<float> sin, int N, int H, int Hkv, int D)
        => Time("RopeBackward", () => Inner.RopeBackward(dQkv, positions, cos, sin, N, H, Hkv, D));
    protected override void SwiGluForwardCore(Buf<float> gateUp, int N, int I, Buf<float> output)
        => Time("SwiGluForward", () => Inner.SwiGluForward(gateUp, N, I, output));
    protected override void SwiGluBackwardCore(Buf<float> dOutput, Buf<float> gateUp, int N, int I, Buf<float> dGateUp)
        => Time("SwiGluBackward", () => Inner.SwiGluBackward(dOutput, gateUp, N, I, dGateUp));
}
