using ArcherIlgpu.Kernels;
using ArcherIlgpu.Model.Generation;

namespace ArcherIlgpu.Model.Llama;

/// <summary>The weights of one block as views into the flat parameter (or gradient) buffer.</summary>
/// <param name="Qkv">[W, C]: q_proj, k_proj and v_proj stacked (adjacent in the flat buffer).</param>
/// <param name="QkvBias">[W] (Qwen2) or empty.</param>
/// <param name="GateUp">[2I, C]: gate_proj and up_proj stacked.</param>
public sealed record LlamaBlockWeights(Buf<float> InputNorm, Buf<float> Qkv, Buf<float> QkvBias, Buf<float> QNorm, Buf<float> KNorm,
    Buf<float> O, Buf<float> PostAttentionNorm, Buf<float> GateUp, Buf<float> Down);

/// <summary>Views of every tensor in one flat buffer, by role. Head is the embedding when the head is tied.</summary>
public sealed record LlamaWeights(Buf<float> Embed, LlamaBlockWeights[] Blocks, Buf<float> Norm, Buf<float> Head)
{
    public static LlamaWeights Carve(LlamaLayout layout, DeviceBuffer<float> flat)
    {
        var c = layout.Config;
        Buf<float> V(string name) { var s = layout[name]; return flat.All.Slice(s.Offset, s.Length); }
        Buf<float> Fused(params string[] names) { var (o, n) = layout.Fused(names); return flat.All.Slice(o, n); }
        var blocks = new LlamaBlockWeights[c.Layers];
        for (int l = 0; l < c.Layers; l++)
        {
            string p = LlamaLayout.Prefix(l) + "self_attn.", m = LlamaLayout.Prefix(l) + "mlp.";
            blocks[l] = new LlamaBlockWeights(
                InputNorm: V(LlamaLayout.Prefix(l) + "input_layernorm.weight"),
                Qkv: Fused(p + "q_proj.weight", p + "k_proj.weight", p + "v_proj.weight"),
                QkvBias: c.QkvBias ? Fused(p + "q_proj.bias", p + "k_proj.bias", p + "v_proj.bias") : default,
                QNorm: c.QkNorm ? V(p + "q_norm.weight") : default,
                KNorm: c.QkNorm ? V(p + "k_norm.weight") : default,
                O: V(p + "o_proj.weight"),
                PostAttentionNorm: V(LlamaLayout.Prefix(l) + "post_attention_layernorm.weight"),
                GateUp: Fused(m + "gate_proj.weight", m + "up_proj.weight"),
                Down: V(m + "down_proj.weight"));
        }
        var embed = V("model.embed_tokens.weight");
        return new LlamaWeights(embed, blocks, V("model.norm.weight"), c.TiedHead ? embed : V("lm_head.weight"));
    }
}

/// <summary>
/// The Llama-family decoder (Llama 3, Qwen2, Qwen3, SmolLM) on one backend: token embedding only,
/// pre-RMSNorm blocks of grouped-query attention with rotary positions (optional q/k/v biases, optional
/// per-head q/k RMSNorm) and a SwiGLU MLP, a final RMSNorm and a tied or separate head. The forward pass
/// is an explicit list of op calls; the backward pass is the same list reversed.
/// </summary>
public sealed class LlamaModel : CausalLm
{
    public new LlamaConfig Config { get; }
    public new LlamaLayout Layout { get; }
    public LlamaWeights Weights { get; }
    public LlamaWeights Grads => grads ??= LlamaWeights.Carve(Layout, Gradients);   // first use allocates the gradients
    LlamaWeights? grads;

    // RoPE's cos / sin tables [MaxT, D/2], computed once on the host so every backend uses the same angles.
    readonly DeviceBuffer<float> ropeCos, ropeSin;

    /// <summary>A model with Hugging Face's initialisation from <paramref name="seed"/>.</summary>
    public LlamaModel(Backend backend, LlamaConfig config, int seed = 1337)
        : this(backend, config, new LlamaLayout(config).Initialize(seed)) { }

    /// <summary>A model with the given flat parameters (in <see cref="LlamaLayout"/> order).</summary>
    public LlamaModel(Backend backend, LlamaConfig config, float[] parameters)
        : this(backend, new LlamaLayout(config), parameters) { }

    LlamaModel(Backend backend, LlamaLayout layout, float[] parameters)
        : base(backend, layout.Config, layout, parameters)
    {
        Config = layout.Config;
        Layout = layout;
        Weights = LlamaWeights.Carve(layout, Parameters);
        var (cos, sin) = RopeTable.Create(Config.MaxT, Config.HeadSize, Config.RopeTheta, Config.RopeScaling);
        ropeCos = backend.Allocate<float>(cos.Length); ropeSin = backend.Allocate<float>(sin.Length);
        backend.Upload(ropeCos.All, cos); backend.Upload(ropeSin.All, sin);
    }

    public override Activations CreateActivations(int B, int T, bool withGradients, ActivationArena? arena = null)
        => new LlamaActivations(Backend, Config, B, T, withGradients, arena);

    public override KvCache CreateKvCache(int B) => new(Backend, Config.Layers, B, Config.MaxT, Config.KvHeads * Config.HeadSize);

    // ================================================================ forward

    public override void ForwardToFinalNorm(Activations activations, KvCache? decode = null)
    {
        var a = (LlamaActivations)activations;
        var be = Backend; int N = a.N, C = Config.Channels;
        be.TokenEmbeddingForward(a.Tokens, Weights.Embed, N, C, a.Embedded);
        var x = a.Embedded;
        for (int l = 0; l < Config.Layers; l++)
        {
            BlockForward(l, x, a.Layers[l], a, decode);
            x = a.Layers[l].Residual3;
        }
        be.RmsNormForward(x, Weights.Norm, N, C, Config.RmsNormEps, a.FinalNorm, a.FinalRstd);
    }

    public override void WriteKvCache(Activations prefill, KvCache cache)
    {
        var a = (LlamaActivations)prefill;
        var c = Config;
        for (int l = 0; l < c.Layers; l++)
            Backend.KvCacheWrite(a.Layers[l].Qkv, a.B, a.T, c.Heads, c.KvHeads, c.HeadSize, c.MaxT, cache.K[l], cache.V[l]);
    }

    /// <summary>logits [N, V] = finalNorm [N, C] · headᵀ (the embedding when tied).</summary>
    public override void Head(Buf<float> finalNorm, int N, Buf<float> logits)
        => Backend.MatMulForward(finalNorm, Weights.Head, default, N, Config.Channels, Config.VocabSize, logits);

    /// <summary>
    /// One block: x + o(attention(rope(qknorm(qkv(rmsnorm(x)))))), then + down(silu(gate) · up)(rmsnorm(.)).
    /// RoPE rotates q and k in place at a.Positions (0..T-1 per row, or each row's decoding position), so
    /// the keys written to the KV cache are already rotated. With <paramref name="cache"/> the attention is
    /// one decoding step per row against the cache.
    /// </summary>
    void BlockForward(int l, Buf<float> input, LlamaLayerActivations s, LlamaActivations a, KvCache? cache)
    {
        var be = Backend; var w = Weights.Blocks[l]; var c = Config;
        int N = a.N, C = c.Channels, H = c.Heads, Hkv = c.KvHeads, D = c.HeadSize, W = c.QkvWidth, I = c.Intermediate;
        float eps = c.RmsNormEps;
        be.RmsNormForward(input, w.InputNorm, N, C, eps, s.Ln1, s.Ln1Rstd);
        be.MatMulForward(s.Ln1, w.Qkv, w.QkvBias, N, C, W, s.QkvRaw);
        if (c.QkNorm) be.QkNormForward(s.QkvRaw, w.QNorm, w.KNorm, N, H, Hkv, D, eps, s.Qkv, s.QkRstd);
        be.RopeForward(s.Qkv, a.Positions, ropeCos.All, ropeSin.All, N, H, Hkv, D);
        if (cache is null) be.AttentionForward(s.Qkv, a.B, a.T, H, Hkv, D, s.Att, s.AttLogSumExp);
        else be.AttentionDecode(s.Qkv, a.Positions, a.B, H, Hkv, D, cache.MaxT, cache.K[l], cache.V[l], s.Att);
        be.MatMulForward(s.Att, w.O, default, N, H * D, C, s.AttProj);
        be.ResidualForward(input, s.AttProj, N * C, s.Residual2);
        be.RmsNormForward(s.Residual2, w.PostAttentionNorm, N, C, eps, s.Ln2, s.Ln2Rstd);
        be.MatMulForward(s.Ln2, w.GateUp, default, N, C, 2 * I, s.GateUp);
        be.SwiGluForward(s.GateUp, N, I, s.Act);
        be.MatMulForward(s.Act, w.Down, default, N, I, C, s.Down);
        be.ResidualForward(s.Residual2, s.Down, N * C, s.Residual3);
    }

    // ================================================================ backward

    public override void Backward(Activations activations)
    {
        var a = (LlamaActivations)activations;
        if (!a.HasGradients) throw new InvalidOperationException("these activations were allocated without gradient buffers");
        var be = Backend; int N = a.N, C = Config.Channels;

        // RmsNormBackward accumulates into the residual stream's gradient, so it starts at zero.
        be.Zero(a.DResidual);
        be.MatMulBackward(a.Logits, a.FinalNorm, Weights.Head, N, C, Config.VocabSize, a.DLn, Grads.Head, default);
        be.RmsNormBackward(a.DLn, a.LastResidual, Weights.Norm, a.FinalRstd, N, C, a.DResidual, Grads.Norm);
        for (int l = Config.Layers - 1; l >= 0; l--)
            BlockBackward(l, l == 0 ? a.Embedded : a.Layers[l - 1].Residual3, a.Layers[l], a);
        be.TokenEmbeddingBackward(a.DResidual, a.Tokens, N, C, Grads.Embed);
    }

    /// <summary>
    /// The reverse of <see cref="BlockForward"/>. As in GPT-2, a.DResidual is both the stream's gradient
    /// and each branch's output gradient: the branch is read before its RMSNorm backward adds into the stream.
    /// RoPE's backward rotates dQkv back in place.
    /// </summary>
    void BlockBackward(int l, Buf<float> input, LlamaLayerActivations s, LlamaActivations a)
    {
        var be = Backend; var w = Weights.Blocks[l]; var g = Grads.Blocks[l]; var c = Config;
        int N = a.N, C = c.Channels, H = c.Heads, Hkv = c.KvHeads, D = c.HeadSize, W = c.QkvWidth, I = c.Intermediate;
        // MLP branch: dResidual3 -> down -> swiglu -> gate|up -> post_attention_layernorm (adds into dResidual2)
        be.MatMulBackward(a.DResidual, s.Act, w.Down, N, I, C, a.DAct, g.Down, default);
        be.SwiGluBackward(a.DAct, s.GateUp, N, I, a.DGateUp);
        be.MatMulBackward(a.DGateUp, s.Ln2, w.GateUp, N, C, 2 * I, a.DLn, g.GateUp, default);
        be.RmsNormBackward(a.DLn, s.Residual2, w.PostAttentionNorm, s.Ln2Rstd, N, C, a.DResidual, g.PostAttentionNorm);
        // attention branch: dResidual2 -> o -> attention -> rope -> q/k norm -> qkv -> input_layernorm (adds into dInput)
        be.MatMulBackward(a.DResidual, s.Att, w.O, N, H * D, C, a.DAtt, g.O, default);
        be.AttentionBackward(a.DAtt, s.Qkv, s.Att, s.AttLogSumExp, a.B, a.T, H, Hkv, D, a.DQkv);
        be.RopeBackward(a.DQkv, a.Positions, ropeCos.All, ropeSin.All, N, H, Hkv, D);
        if (c.QkNorm) be.QkNormBackward(a.DQkv, s.QkvRaw, w.QNorm, w.KNorm, s.QkRstd, N, H, Hkv, D, a.DQkvRaw, g.QNorm, g.KNorm);
        be.MatMulBackward(a.DQkvRaw, s.Ln1, w.Qkv, N, C, W, a.DLn, g.Qkv, g.QkvBias);
        be.RmsNormBackward(a.DLn, input, w.InputNorm, s.Ln1Rstd, N, C, a.DResidual, g.InputNorm);
    }

    public override void Dispose()
    {
        ropeCos.Dispose();
        ropeSin.Dispose();
        base.Dispose();
    }
}
