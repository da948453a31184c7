using static ArcherIlgpu.Kernels.BufChecks;

namespace ArcherIlgpu.Kernels;

/// <summary>
/// One compute device and every op of the transformer on it, forward and backward.
///
/// Conventions (see DESIGN.md):
/// - Arguments go inputs, then sizes, then outputs. Shapes are row-major and documented per argument.
///   B batch, T time, C channels, V vocabulary, H heads, D = C / H head size, N rows (often B*T).
/// - Backward ops ADD into parameter gradients (dWeight, dBias, dWte, ...) so that gradients of
///   shared weights and of accumulated micro-batches sum; they OVERWRITE activation gradients,
///   except where an argument says it accumulates (the residual stream).
/// - Each compute op is a public method that checks its arguments once (sizes, buffer lengths, shape
///   rules; BufChecks, AttentionShape, RopeShape) and then calls the backend's protected <c>OpCore</c>,
///   which may take them as valid. A backend adds only what its device cannot do (a head size its
///   kernels do not support, a token id the cpu reads out of range).
/// - Ops are asynchronous on GPU backends: nothing waits for the device until
///   <see cref="Synchronize"/> or <see cref="Download{T}"/>. No op allocates after its first call
///   at a given size, and none synchronises with the host.
/// </summary>
public abstract partial class Backend : IDisposable
{
    /// <summary>Device name as accepted by <see cref="Devices.Create"/>: cpu, ilgpu-cpu, cuda, opencl.</summary>
    public abstract string Name { get; }

    /// <summary>A human description of the device (model, memory).</summary>
    public abstract string Description { get; }

    /// <summary>
    /// The operand precision the matmuls run in: float32 on the cpu backend; on ILGPU backends what
    /// <see cref="Devices.Create"/> set. Everything else (accumulation, softmax,
    /// norms, loss, log-probs, the optimizer and the master weights) is float32 in every precision.
    /// </summary>
    public virtual MatMulPrecision Precision => MatMulPrecision.Float32;

    // ---------------------------------------------------------------- memory

    /// <summary>A new zero-filled buffer of <paramref name="length"/> elements.</summary>
    public abstract DeviceBuffer<T> Allocate<T>(long length) where T : unmanaged;

    /// <summary>Copies host data into <paramref name="dst"/> (lengths must match).</summary>
    public abstract void Upload<T>(Buf<T> dst, ReadOnlySpan<T> src) where T : unmanaged;

    /// <summary>Copies <paramref name="src"/> to the host, waiting for pending work first.</summary>
    public abstract void Download<T>(Buf<T> src, Span<T> dst) where T : unmanaged;

    /// <summary>Sets every element of <paramref name="dst"/> to zero.</summary>
    public abstract void Zero<T>(Buf<T> dst) where T : unmanaged;

    /// <summary>Device-to-device copy (lengths must match).</summary>
    public abstract void Copy<T>(Buf<T> src, Buf<T> dst) where T : unmanaged;

    /// <summary>Waits until all queued work on the device has finished.</summary>
    public abstract void Synchronize();

    public virtual void Dispose() { }

    // ------------------------------------------------------------ embedding
    // Embedding.cs: out[n, :] = wte[tokens[n], :] + wpe[positions[n], :]

    /// <param name="tokens">[N] token ids in [0, V)</param>
    /// <param name="positions">[N] positions in [0, maxT)</param>
    /// <param name="wte">[V, C]</param> <param name="wpe">[maxT, C]</param>
    /// <param name="output">[N, C]</param>
    public void EmbeddingForward(Buf<int> tokens, Buf<int> positions, Buf<float> wte, Buf<float> wpe,
        int N, int C, Buf<float> output)
    {
        RequireElements(tokens, N); RequireElements(positions, N); RequireElements(output, (long)N * C);
        EmbeddingForwardCore(tokens, positions, wte, wpe, N, C, output);
    }

    protected abstract void EmbeddingForwardCore(Buf<int> tokens, Buf<int> positions, Buf<float> wte, Buf<float> wpe,
        int N, int C, Buf<float> output);

    /// <summary>Scatters dOutput rows into dWte[tokens[n]] and dWpe[positions[n]] (both accumulate).</summary>
    public void EmbeddingBackward(Buf<float> dOutput, Buf<int> tokens, Buf<int> positions,
        int N, int C, Buf<float> dWte, Buf<float> dWpe)
    {
        RequireElements(tokens, N); RequireElements(positions, N); RequireElements(dOutput, (long)N * C);
        EmbeddingBackwardCore(dOutput, tokens, positions, N, C, dWte, dWpe);
    }

    protected abstract void EmbeddingBackwardCore(Buf<float> dOutput, Buf<int> tokens, Buf<int> positions,
        int N, int C, Buf<float> dWte, Buf<float> dWpe);

    // ------------------------------------------------------------ layernorm
    // LayerNorm.cs: out = (x - mean) * rstd * weight + bias, rstd = 1/sqrt(var + eps), biased var.

    /// <param name="input">[N, C]</param> <param name="weight">[C]</param> <param name="bias">[C]</param>
    /// <param name="output">[N, C]</param> <param name="mean">[N] saved for backward</param>
    /// <param name="rstd">[N] saved for backward</param>
    public void LayerNormForward(Buf<float> input, Buf<float> weight, Buf<float> bias,
        int N, int C, float eps, Buf<float> output, Buf<float> mean, Buf<float> rstd)
    {
        RequireElements(input, (long)N * C); RequireElements(output, (long)N * C);
        RequireElements(weight, C); RequireElements(bias, C); RequireElements(mean, N); RequireElements(rstd, N);
        LayerNormForwardCore(input, weight, bias, N, C, eps, output, mean, rstd);
    }

    protected abstract void LayerNormForwardCore(Buf<float> input, Buf<float> weight, Buf<float> bias,
        int N, int C, float eps, Buf<float> output, Buf<float> mean, Buf<float> rstd);

    /// <summary>dInput ACCUMULATES (in a pre-LN transformer it is the residual stream); dWeight, dBias accumulate.</summary>
    public void LayerNormBackward(Buf<float> dOutput, Buf<float> input, Buf<float> weight,
        Buf<float> mean, Buf<float> rstd, int N, int C,
        Buf<float> dInput, Buf<float> dWeight, Buf<float> dBias)
    {
        RequireElements(dOutput, (long)N * C); RequireElements(input, (long)N * C); RequireElements(dInput, (long)N * C);
        RequireElements(weight, C); RequireElements(mean, N); RequireElements(rstd, N);
        RequireElements(dWeight, C); RequireElements(dBias, C);
        LayerNormBackwardCore(dOutput, input, weight, mean, rstd, N, C, dInput, dWeight, dBias);
    }

    protected abstract void LayerNormBackwardCore(Buf<float> dOutput, Buf<float> input, Buf<float> weight,
        Buf<float> mean, Buf<float> rstd, int N, int C,
        Buf<float> dInput, Buf<float> dWeight, Buf<float> dBias);

    // --------------------------------------------------------------- matmul
    // MatMul.cs: out[n, o] = sum_k in[n, k] * W[o, k] + b[o]   (out = in · Wᵀ + b)

    /// <param name="input">[N, K]</param> <param name="weight">[OC, K]</param>
    /// <param name="bias">[OC], or default(Buf) for none</param> <param name="output">[N, OC]</param>
    public void MatMulForward(Buf<float> input, Buf<float> weight, Buf<float> bias,
        int N, int K, int OC, Buf<float> output)
    {
        CheckMatMulShapes(input, weight, N, K, OC);
        CheckMatMulLength(output, (long)N * OC, nameof(output));
        if (!bias.IsEmpty) CheckMatMulLength(bias, OC, nameof(bias));
        MatMulForwardCore(input, weight, bias, N, K, OC, output);
    }

    protected abstract void MatMulForwardCore(Buf<float> input, Buf<float> weight, Buf<float> bias,
        int N, int K, int OC, Buf<float> output);

    /// <summary>dInput [N, K] is OVERWRITTEN; dWeight [OC, K] and dBias [OC] (optional) ACCUMULATE.</summary>
    public void MatMulBackward(Buf<float> dOutput, Buf<float> input, Buf<float> weight,
        int N, int K, int OC, Buf<float> dInput, Buf<float> dWeight, Buf<float> dBias)
    {
        CheckMatMulShapes(input, weight, N, K, OC);
        CheckMatMulLength(dOutput, (long)N * OC, nameof(dOutput));
        CheckMatMulLength(dWeight, (long)OC * K, nameof(dWeight));
        if (!dInput.IsEmpty) CheckMatMulLength(dInput, (long)N * K, nameof(dInput));
        if (!dBias.IsEmpty) CheckMatMulLength(dBias, OC, nameof(dBias));
        MatMulBackwardCore(dOutput, input, weight, N, K, OC, dInput, dWeight, dBias);
    }

    protected abstract void MatMulBackwardCore(Buf<float> dOutput, Buf<float> input, Buf<float> weight,
        int N, int K, int OC, Buf<float> dInput, Buf<float> dWeight, Buf<float> dBias);

    // ------------------------------------------------------------ attention
    // Attention.cs: causal grouped-query self-attention over a fused QKV input.
    // qkv[b, t, :] = [q (H·D) | k (Hkv·D) | v (Hkv·D)] (width W = (H + 2·Hkv)·D); query head h uses
    // channels h·D .. h·D+D-1 of q and key/value head h / (H / Hkv) (Hugging Face's repeat_kv), so
    // H % Hkv == 0 is required. GPT-2 is the case Hkv = H, D = C / H; D need not be C / H (Qwen3).
    // att = softmax(q·kᵀ / sqrt(D)) over keys s <= t; out[b, t, h·D + d] = sum_s att[t, s] · v[s, d].

    /// <param name="qkv">[B, T, (H + 2Hkv)·D]</param> <param name="output">[B, T, H·D]</param>
    /// <param name="logSumExp">[B, H, T] per query row, log sum_s exp(score) of the scaled scores; saved for backward</param>
    public void AttentionForward(Buf<float> qkv, int B, int T, int H, int Hkv, int D,
        Buf<float> output, Buf<float> logSumExp)
    {
        AttentionShape.CheckForward(qkv, B, T, H, Hkv, D, output, logSumExp);
        AttentionForwardCore(qkv, B, T, H, Hkv, D, output, logSumExp);
    }

    protected abstract void AttentionForwardCore(Buf<float> qkv, int B, int T, int H, int Hkv, int D,
        Buf<float> output, Buf<float> logSumExp);

    /// <summary>
    /// dQkv [B, T, (H + 2Hkv)·D] is OVERWRITTEN; dK and dV of a shared key/value head sum over the query
    /// heads of its group. Recomputes the probabilities from qkv and logSumExp.
    /// </summary>
    public void AttentionBackward(Buf<float> dOutput, Buf<float> qkv, Buf<float> output,
        Buf<float> logSumExp, int B, int T, int H, int Hkv, int D, Buf<float> dQkv)
    {
        AttentionShape.CheckBackward(dOutput, qkv, output, logSumExp, B, T, H, Hkv, D, dQkv);
        AttentionBackwardCore(dOutput, qkv, output, logSumExp, B, T, H, Hkv, D, dQkv);
    }

    protected abstract void AttentionBackwardCore(Buf<float> dOutput, Buf<float> qkv, Buf<float> output,
        Buf<float> logSumExp, int B, int T, int H, int Hkv, int D, Buf<float> dQkv);

    /// <summary>
    /// Writes keys and values of qkv [B, T, (H + 2Hkv)·D] into the caches kCache, vCache [B, Hkv, maxT, D]
    /// at positions 0..T-1 (prefill). Rows shorter than T are right-padded by the caller; the causal
    /// mask keeps padding out of every real position.
    /// </summary>
    public void KvCacheWrite(Buf<float> qkv, int B, int T, int H, int Hkv, int D, int maxT,
        Buf<float> kCache, Buf<float> vCache)
    {
        AttentionShape.CheckKvCacheWrite(qkv, B, T, H, Hkv, D, maxT, kCache, vCache);
        KvCacheWriteCore(qkv, B, T, H, Hkv, D, maxT, kCache, vCache);
    }

    protected abstract void KvCacheWriteCore(Buf<float> qkv, int B, int T, int H, int Hkv, int D, int maxT,
        Buf<float> kCache, Buf<float> vCache);

    /// <summary>
    /// One decoding step: row b's new token sits at position positions[b]. Writes its key and value
    /// into the caches at that position, then attends over cache positions 0..positions[b].
    /// </summary>
    /// <param name="qkv">[B, (H + 2Hkv)·D]</param> <param name="positions">[B]</param>
    /// <param name="kCache">[B, Hkv, maxT, D]</param> <param name="vCache">[B, Hkv, maxT, D]</param>
    /// <param name="output">[B, H·D]</param>
    public void AttentionDecode(Buf<float> qkv, Buf<int> positions, int B, int H, int Hkv, int D, int maxT,
        Buf<float> kCache, Buf<float> vCache, Buf<float> output)
    {
        AttentionShape.CheckDecode(qkv, positions, B, H, Hkv, D, maxT, kCache, vCache, output);
        AttentionDecodeCore(qkv, positions, B, H, Hkv, D, maxT, kCache, vCache, output);
    }

    protected abstract void AttentionDecodeCore(Buf<float> qkv, Buf<int> positions, int B, int H, int Hkv, int D, int maxT,
        Buf<float> kCache, Buf<float> vCache, Buf<float> output);

    // ---------------------------------------------------- elementwise (Gelu.cs, Residual.cs)

    /// <summary>GELU, tanh form as in GPT-2: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x³))). [n] -> [n]</summary>
    public void GeluForward(Buf<float> input, int n, Buf<float> output)
    {
        RequireElements(input, n); RequireElements(output, n);
        GeluForwardCore(input, n, output);
    }

    protected abstract void GeluForwardCore(Buf<float> input, int n, Buf<float> output);

    /// <summary>dInput [n] is OVERWRITTEN.</summary>
    public void GeluBackward(Buf<float> dOutput, Buf<float> input, int n, Buf<float> dInput)
    {
        RequireElements(dOutput, n); RequireElements(input, n); RequireElements(dInput, n);
        GeluBackwardCore(dOutput, input, n, dInput);
    }

    protected abstract void GeluBackwardCore(Buf<float> dOutput, Buf<float> input, int n, Buf<float> dInput);

    /// <summary>output = a + b, all [n].</summary>
    public void ResidualForward(Buf<float> a, Buf<float> b, int n, Buf<float> output)
    {
        RequireElements(a, n); RequireElements(b, n); RequireElements(output, n);
        ResidualForwardCore(a, b, n, output);
    }

    protected abstract void ResidualForwardCore(Buf<float> a, Buf<float> b, int n, Buf<float> output);

    /// <summary>dA += dOutput and dB += dOutput (both ACCUMULATE: they are the residual stream).</summary>
    public void ResidualBackward(Buf<float> dOutput, int n, Buf<float> dA, Buf<float> dB)
    {
        RequireElements(dOutput, n); RequireElements(dA, n); RequireElements(dB, n);
        ResidualBackwardCore(dOutput, n, dA, dB);
    }

    protected abstract void ResidualBackwardCore(Buf<float> dOutput, int n, Buf<float> dA, Buf<float> dB);

    // ------------------------------------------------------ classifier head (ClassifierHead.cs)

    /// <summary>
    /// Fused softmax cross-entropy per position. losses[n] = weights[n] * (logsumexp(z_n) - z_n[targets[n]]);
    /// a position whose weight is 0 is ignored (loss 0, zero gradient, its target is not read).
    /// If dLogits is not empty it is OVERWRITTEN with weights[n] * (softmax(z_n) - onehot(targets[n])).
    /// dLogits may be the same slice as logits (in place).
    /// </summary>
    /// <param name="logits">[N, V]</param> <param name="targets">[N]</param> <param name="weights">[N]</param>
    /// <param name="losses">[N]</param> <param name="dLogits">[N, V] or default</param>
    public void CrossEntropyForwardBackward(Buf<float> logits, Buf<int> targets, Buf<float> weights,
        int N, int V, Buf<float> losses, Buf<float> dLogits)
        => CrossEntropyForwardBackwardCore(logits, targets, weights, N, V, losses, dLogits);

    protected abstract void CrossEntropyForwardBackwardCore(Buf<float> logits, Buf<int> targets, Buf<float> weights,
        int N, int V, Buf<float> losses, Buf<float> dLogits);

    /// <summary>
    /// Per position, with p = softmax(z_n / temperature): logProbs[n] = log p[tokens[n]] and
    /// entropies[n] = -sum_v p_v log p_v (nats), computed in float32 or better.
    /// </summary>
    /// <param name="logits">[N, V]</param> <param name="tokens">[N]</param>
    /// <param name="logProbs">[N]</param> <param name="entropies">[N]</param>
    public void TokenLogProbEntropy(Buf<float> logits, Buf<int> tokens, int N, int V, float temperature,
        Buf<float> logProbs, Buf<float> entropies)
    {
        CheckTemperature(temperature);
        TokenLogProbEntropyCore(logits, tokens, N, V, temperature, logProbs, entropies);
    }

    protected abstract void TokenLogProbEntropyCore(Buf<float> logits, Buf<int> tokens, int N, int V, float temperature,
        Buf<float> logProbs, Buf<float> entropies);

    /// <summary>
    /// Backward of sum_n dLogProbs[n] * logProbs[n] into the logits:
    /// dLogits[n, v] = dLogProbs[n] * (onehot(tokens[n])_v - p_v) / temperature. OVERWRITTEN;
    /// may be the same slice as logits.
    /// </summary>
    public void TokenLogProbBackward(Buf<float> logits, Buf<int> tokens, Buf<float> dLogProbs,
        int N, int V, float temperature, Buf<float> dLogits)
    {
        CheckTemperature(temperature);
        TokenLogProbBackwardCore(logits, tokens, dLogProbs, N, V, temperature, dLogits);
    }

    protected abstract void TokenLogProbBackwardCore(Buf<float> logits, Buf<int> tokens, Buf<float> dLogProbs,
        int N, int V, float temperature, Buf<float> dLogits);

    // ------------------------------------------------------------- optimizer (Optimizer.cs)

    /// <summary>normSquared[0] = sum of squares of grads (float32 accumulation in float64 or pairwise).</summary>
    public void SumOfSquares(Buf<float> grads, Buf<float> normSquared)
    {
        RequireElements(normSquared, 1); RequireElements(grads, 0);
        if (grads.Length > int.MaxValue) throw new ArgumentException($"SumOfSquares supports up to {int.MaxValue} elements, got {grads.Length}");
        SumOfSquaresCore(grads, normSquared);
    }

    protected abstract void SumOfSquaresCore(Buf<float> grads, Buf<float> normSquared);

    /// <summary>
    /// AdamW step over a flat slice. The gradient is scaled by clip = min(1, maxNorm / (sqrt(normSquared[0]) + 1e-6))
    /// (maxNorm &lt;= 0 disables clipping). If normSquared[0] is not finite, nothing is changed.
    /// m = b1 m + (1-b1) g; v = b2 v + (1-b2) g²; p -= lr (m/(1-b1^step) / (sqrt(v/(1-b2^step)) + eps) + wd p).
    /// </summary>
    /// <param name="step">1-based step count for bias correction</param>
    public void AdamW(Buf<float> parameters, Buf<float> grads, Buf<float> m, Buf<float> v,
        Buf<float> normSquared, float maxNorm, float lr, float beta1, float beta2, float eps,
        float weightDecay, int step)
    {
        long n = parameters.Length;
        RequireElements(grads, n); RequireElements(m, n); RequireElements(v, n); RequireElements(normSquared, 1);
        if (step < 1) throw new ArgumentOutOfRangeException(nameof(step), $"step is 1-based, got {step}");
        if (n > int.MaxValue) throw new ArgumentException($"AdamW supports up to {int.MaxValue} elements, got {n}");
        AdamWCore(parameters, grads, m, v, normSquared, maxNorm, lr, beta1, beta2, eps, weightDecay, step);
    }

    protected abstract void AdamWCore(Buf<float> parameters, Buf<float> grads, Buf<float> m, Buf<float> v,
        Buf<float> normSquared, float maxNorm, float lr, float beta1, float beta2, float eps,
        float weightDecay, int step);

    // -------------------------------------------------------------- sampling (Sampling.cs)

    /// <summary>
    /// Samples one token per row from softmax(logits[n] / temperature) restricted to the top-k tokens
    /// (topK &lt;= 0: all) and then the smallest top set with mass >= topP (topP >= 1: all).
    /// temperature == 0 means greedy (argmax, lowest id on ties). The draw depends only on
    /// (seed, rows[n], positions[n]) through <see cref="CounterRng"/>, so every backend draws the same token.
    /// logProbs[n] = log softmax(logits[n] / max(temperature, tiny))[token] over the full vocabulary
    /// (temperature 0: temperature 1), which is what the training forward recomputes.
    /// </summary>
    /// <param name="logits">[N, V]</param> <param name="rows">[N] stream ids (e.g. sequence index)</param>
    /// <param name="positions">[N] positions (the counter)</param>
    /// <param name="tokens">[N] out</param> <param name="logProbs">[N] out</param>
    public void Sample(Buf<float> logits, Buf<int> rows, Buf<int> positions, int N, int V,
        float temperature, int topK, float topP, ulong seed, Buf<int> tokens, Buf<float> logProbs)
    {
        CheckTemperature(temperature);
        SampleCore(logits, rows, positions, N, V, temperature, topK, topP, seed, tokens, logProbs);
    }

    protected abstract void SampleCore(Buf<float> logits, Buf<int> rows, Buf<int> positions, int N, int V,
        float temperature, int topK, float topP, ulong seed, Buf<int> tokens, Buf<float> logProbs);
}
