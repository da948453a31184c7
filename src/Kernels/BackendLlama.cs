using static ArcherIlgpu.Kernels.BufChecks;

namespace ArcherIlgpu.Kernels;

// ------------------------------------------- the Llama / Qwen block (RmsNorm.cs, Rope.cs, SwiGlu.cs, Embedding.cs)
//
// The ops that the Llama-family decoder (Llama 3, Qwen2, Qwen3, SmolLM) adds to GPT-2's. Shapes follow
// Hugging Face's modeling_llama / modeling_qwen3. The attention projections are one fused matmul whose
// output row is [q (H·D) | k (Hkv·D) | v (Hkv·D)] ("qkv", width W = (H + 2·Hkv)·D): q, k and v weights
// sit next to each other in the flat parameter buffer, so they form one [W, C] matrix.
public abstract partial class Backend
{
    // ------------------------------------------------------- token embedding (Embedding.cs)

    /// <summary>out[n, :] = wte[tokens[n], :] (no position embedding: rotary models encode position in attention).</summary>
    /// <param name="tokens">[N] in [0, V)</param> <param name="wte">[V, C]</param> <param name="output">[N, C]</param>
    public void TokenEmbeddingForward(Buf<int> tokens, Buf<float> wte, int N, int C, Buf<float> output)
    {
        RequireElements(tokens, N); RequireElements(output, (long)N * C);
        TokenEmbeddingForwardCore(tokens, wte, N, C, output);
    }

    protected abstract void TokenEmbeddingForwardCore(Buf<int> tokens, Buf<float> wte, int N, int C, Buf<float> output);

    /// <summary>dWte[tokens[n], :] += dOutput[n, :] (ACCUMULATES; repeated tokens sum).</summary>
    public void TokenEmbeddingBackward(Buf<float> dOutput, Buf<int> tokens, int N, int C, Buf<float> dWte)
    {
        RequireElements(tokens, N); RequireElements(dOutput, (long)N * C);
        TokenEmbeddingBackwardCore(dOutput, tokens, N, C, dWte);
    }

    protected abstract void TokenEmbeddingBackwardCore(Buf<float> dOutput, Buf<int> tokens, int N, int C, Buf<float> dWte);

    // ------------------------------------------------------- RMSNorm (RmsNorm.cs)

    /// <summary>
    /// out = x · rstd · weight with rstd = 1 / sqrt(mean_c(x²) + eps), per row, in float32 (Hugging Face's
    /// LlamaRMSNorm: the statistic in float32, then the product with the weight).
    /// </summary>
    /// <param name="input">[N, C]</param> <param name="weight">[C]</param>
    /// <param name="output">[N, C]</param> <param name="rstd">[N] saved for backward</param>
    public void RmsNormForward(Buf<float> input, Buf<float> weight, int N, int C, float eps,
        Buf<float> output, Buf<float> rstd)
    {
        RequireElements(input, (long)N * C); RequireElements(output, (long)N * C);
        RequireElements(weight, C); RequireElements(rstd, N);
        RmsNormForwardCore(input, weight, N, C, eps, output, rstd);
    }

    protected abstract void RmsNormForwardCore(Buf<float> input, Buf<float> weight, int N, int C, float eps,
        Buf<float> output, Buf<float> rstd);

    /// <summary>dInput ACCUMULATES (it is the residual stream, as in LayerNormBackward); dWeight accumulates.</summary>
    public void RmsNormBackward(Buf<float> dOutput, Buf<float> input, Buf<float> weight, Buf<float> rstd,
        int N, int C, Buf<float> dInput, Buf<float> dWeight)
    {
        RequireElements(dOutput, (long)N * C); RequireElements(input, (long)N * C); RequireElements(dInput, (long)N * C);
        RequireElements(weight, C); RequireElements(rstd, N); RequireElements(dWeight, C);
        RmsNormBackwardCore(dOutput, input, weight, rstd, N, C, dInput, dWeight);
    }

    protected abstract void RmsNormBackwardCore(Buf<float> dOutput, Buf<float> input, Buf<float> weight, Buf<float> rstd,
        int N, int C, Buf<float> dInput, Buf<float> dWeight);

    /// <summary>
    /// Qwen3's per-head q/k RMSNorm on the fused projection: in each row of qkv [N, W], the H query heads
    /// (D each) are RMS-normalised with qWeight [D], the next Hkv key heads with kWeight [D], and the Hkv
    /// value heads are copied unchanged. rstd [N, H + Hkv] is saved for backward.
    /// </summary>
    public void QkNormForward(Buf<float> qkv, Buf<float> qWeight, Buf<float> kWeight, int N, int H, int Hkv, int D,
        float eps, Buf<float> output, Buf<float> rstd)
    {
        long rows = (long)N * (H + 2 * Hkv) * D;
        RequireElements(qkv, rows); RequireElements(output, rows);
        RequireElements(qWeight, D); RequireElements(kWeight, D); RequireElements(rstd, (long)N * (H + Hkv));
        QkNormForwardCore(qkv, qWeight, kWeight, N, H, Hkv, D, eps, output, rstd);
    }

    protected abstract void QkNormForwardCore(Buf<float> qkv, Buf<float> qWeight, Buf<float> kWeight, int N, int H, int Hkv, int D,
        float eps, Buf<float> output, Buf<float> rstd);

    /// <summary>dQkv [N, W] is OVERWRITTEN (value heads: dOutput copied); dQWeight and dKWeight ACCUMULATE.</summary>
    public void QkNormBackward(Buf<float> dOutput, Buf<float> qkv, Buf<float> qWeight, Buf<float> kWeight,
        Buf<float> rstd, int N, int H, int Hkv, int D, Buf<float> dQkv, Buf<float> dQWeight, Buf<float> dKWeight)
    {
        long rows = (long)N * (H + 2 * Hkv) * D;
        RequireElements(dOutput, rows); RequireElements(qkv, rows); RequireElements(dQkv, rows);
        RequireElements(qWeight, D); RequireElements(kWeight, D); RequireElements(rstd, (long)N * (H + Hkv));
        RequireElements(dQWeight, D); RequireElements(dKWeight, D);
        QkNormBackwardCore(dOutput, qkv, qWeight, kWeight, rstd, N, H, Hkv, D, dQkv, dQWeight, dKWeight);
    }

    protected abstract void QkNormBackwardCore(Buf<float> dOutput, Buf<float> qkv, Buf<float> qWeight, Buf<float> kWeight,
        Buf<float> rstd, int N, int H, int Hkv, int D, Buf<float> dQkv, Buf<float> dQWeight, Buf<float> dKWeight);

    // ------------------------------------------------------- rotary position embedding (Rope.cs)

    /// <summary>
    /// Rotates the H query heads and Hkv key heads of every row of qkv [N, W] IN PLACE, Hugging Face's
    /// rotate-half layout: with p = positions[n], half = D / 2 and i &lt; half,
    /// x'[i] = x[i]·cos[p, i] − x[i + half]·sin[p, i] and x'[i + half] = x[i + half]·cos[p, i] + x[i]·sin[p, i].
    /// Value heads are untouched. The tables come from the model (RopeTable), so every backend uses the
    /// same angles.
    /// </summary>
    /// <param name="positions">[N]</param> <param name="cos">[maxT, D/2]</param> <param name="sin">[maxT, D/2]</param>
    public void RopeForward(Buf<float> qkv, Buf<int> positions, Buf<float> cos, Buf<float> sin,
        int N, int H, int Hkv, int D)
    {
        RopeShape.Check(nameof(RopeForward), qkv, positions, cos, sin, N, H, Hkv, D);
        RopeForwardCore(qkv, positions, cos, sin, N, H, Hkv, D);
    }

    protected abstract void RopeForwardCore(Buf<float> qkv, Buf<int> positions, Buf<float> cos, Buf<float> sin,
        int N, int H, int Hkv, int D);

    /// <summary>
    /// The backward of <see cref="RopeForward"/>, IN PLACE on dQkv [N, W]: a rotation's gradient is the
    /// inverse rotation (by −angle) of the output gradient; value heads are untouched.
    /// </summary>
    public void RopeBackward(Buf<float> dQkv, Buf<int> positions, Buf<float> cos, Buf<float> sin,
        int N, int H, int Hkv, int D)
    {
        RopeShape.Check(nameof(RopeBackward), dQkv, positions, cos, sin, N, H, Hkv, D);
        RopeBackwardCore(dQkv, positions, cos, sin, N, H, Hkv, D);
    }

    protected abstract void RopeBackwardCore(Buf<float> dQkv, Buf<int> positions, Buf<float> cos, Buf<float> sin,
        int N, int H, int Hkv, int D);

    // ------------------------------------------------------- SwiGLU (SwiGlu.cs)

    /// <summary>
    /// out[n, i] = silu(g) · u with g = gateUp[n, i], u = gateUp[n, I + i], silu(g) = g / (1 + exp(−g)):
    /// the gate and up projections are one fused matmul whose row is [gate (I) | up (I)].
    /// </summary>
    /// <param name="gateUp">[N, 2I]</param> <param name="output">[N, I]</param>
    public void SwiGluForward(Buf<float> gateUp, int N, int I, Buf<float> output)
    {
        RequireElements(gateUp, (long)N * 2 * I); RequireElements(output, (long)N * I);
        SwiGluForwardCore(gateUp, N, I, output);
    }

    protected abstract void SwiGluForwardCore(Buf<float> gateUp, int N, int I, Buf<float> output);

    /// <summary>dGateUp [N, 2I] is OVERWRITTEN.</summary>
    public void SwiGluBackward(Buf<float> dOutput, Buf<float> gateUp, int N, int I, Buf<float> dGateUp)
    {
        RequireElements(dOutput, (long)N * I); RequireElements(gateUp, (long)N * 2 * I); RequireElements(dGateUp, (long)N * 2 * I);
        SwiGluBackwardCore(dOutput, gateUp, N, I, dGateUp);
    }

    protected abstract void SwiGluBackwardCore(Buf<float> dOutput, Buf<float> gateUp, int N, int I, Buf<float> dGateUp);
}
