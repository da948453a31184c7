using ArcherIlgpu.Kernels;
using ArcherIlgpu.Model.Generation;

namespace ArcherIlgpu.Model.Gpt2;

/// <summary>The weights of one block as views into the flat parameter (or gradient) buffer.</summary>
public sealed record BlockWeights(
    Buf<float> Ln1W, Buf<float> Ln1B, Buf<float> AttnW, Buf<float> AttnB, Buf<float> AttnProjW, Buf<float> AttnProjB,
    Buf<float> Ln2W, Buf<float> Ln2B, Buf<float> FcW, Buf<float> FcB, Buf<float> FcProjW, Buf<float> FcProjB);

/// <summary>Views of every GPT-2 tensor in one flat buffer, by role.</summary>
public sealed record ModelWeights(Buf<float> Wte, Buf<float> Wpe, BlockWeights[] Blocks, Buf<float> LnFW, Buf<float> LnFB)
{
    public static ModelWeights Carve(ParameterLayout layout, DeviceBuffer<float> flat)
    {
        Buf<float> V(string name) { var s = layout[name]; return flat.All.Slice(s.Offset, s.Length); }
        var blocks = new BlockWeights[layout.Config.Layers];
        for (int l = 0; l < blocks.Length; l++)
        {
            string p = $"h.{l}.";
            blocks[l] = new BlockWeights(V(p + "ln_1.weight"), V(p + "ln_1.bias"),
                V(p + "attn.c_attn.weight"), V(p + "attn.c_attn.bias"), V(p + "attn.c_proj.weight"), V(p + "attn.c_proj.bias"),
                V(p + "ln_2.weight"), V(p + "ln_2.bias"),
                V(p + "mlp.c_fc.weight"), V(p + "mlp.c_fc.bias"), V(p + "mlp.c_proj.weight"), V(p + "mlp.c_proj.bias"));
        }
        return new ModelWeights(V("wte.weight"), V("wpe.weight"), blocks, V("ln_f.weight"), V("ln_f.bias"));
    }
}

/// <summary>
/// GPT-2 on one backend: learned position embeddings, pre-LayerNorm blocks of multi-head attention and
/// a GELU MLP, a head tied to the token embedding. <see cref="Weights"/> and <see cref="Grads"/> are
/// named views into the flat buffers. The forward pass is an explicit list of op calls; the backward
/// pass is the same list reversed.
/// </summary>
public sealed class Gpt2Model : CausalLm
{
    public new Gpt2Config Config { get; }
    public new ParameterLayout Layout { get; }
    public ModelWeights Weights { get; }
    public ModelWeights Grads => grads ??= ModelWeights.Carve(Layout, Gradients);   // first use allocates the gradients
    ModelWeights? grads;

    /// <summary>A model with GPT-2 initialisation from <paramref name="seed"/>.</summary>
    public Gpt2Model(Backend backend, Gpt2Config config, int seed = 1337)
        : this(backend, config, new ParameterLayout(config).Initialize(seed)) { }

    /// <summary>A model with the given flat parameters (in <see cref="ParameterLayout"/> order).</summary>
    public Gpt2Model(Backend backend, Gpt2Config config, float[] parameters)
        : this(backend, new ParameterLayout(config), parameters) { }

    Gpt2Model(Backend backend, ParameterLayout layout, float[] parameters)
        : base(backend, layout.Config, layout, parameters)
    {
        Config = layout.Config;
        Layout = layout;
        Weights = ModelWeights.Carve(Layout, Parameters);
    }

    public override Activations CreateActivations(int B, int T, bool withGradients, ActivationArena? arena = null)
        => new Gpt2Activations(Backend, Config, B, T, withGradients, arena);

    public override KvCache CreateKvCache(int B) => new(Backend, Config.Layers, B, Config.MaxT, Config.Channels);

    // ================================================================ forward

    public override void ForwardToFinalNorm(Activations activations, KvCache? decode = null)
    {
        var a = (Gpt2Activations)activations;
        var be = Backend; int N = a.N, C = Config.Channels;
        be.EmbeddingForward(a.Tokens, a.Positions, Weights.Wte, Weights.Wpe, N, C, a.Encoded);
        var x = a.Encoded;
        for (int l = 0; l < Config.Layers; l++)
        {
            BlockForward(l, x, a.Layers[l], a.B, a.T, decode, decode is null ? default : a.Positions);
            x = a.Layers[l].Residual3;
        }
        be.LayerNormForward(x, Weights.LnFW, Weights.LnFB, N, C, Config.LayerNormEps, a.FinalNorm, a.LnFMean, a.LnFRstd);
    }

    public override void WriteKvCache(Activations prefill, KvCache cache)
    {
        var a = (Gpt2Activations)prefill;
        for (int l = 0; l < Config.Layers; l++)
            Backend.KvCacheWrite(a.Layers[l].Qkv, a.B, a.T, Config.Heads, Config.Heads, Config.HeadSize, Config.MaxT, cache.K[l], cache.V[l]);
    }

    /// <summary>The tied head: logits [N, V] = lnf [N, C] · wteᵀ.</summary>
    public override void Head(Buf<float> lnf, int N, Buf<float> logits)
        => Backend.MatMulForward(lnf, Weights.Wte, default, N, Config.Channels, Config.VocabSize, logits);

    /// <summary>
    /// One pre-LN block: x + attn(ln_1(x)), then + mlp(ln_2(.)). With <paramref name="cache"/> the
    /// attention is one decoding step per row (T = 1) against the KV cache instead of causal attention.
    /// </summary>
    void BlockForward(int l, Buf<float> input, LayerActivations s, int B, int T, KvCache? cache, Buf<int> decodePositions)
    {
        var be = Backend; var w = Weights.Blocks[l];
        int N = B * T, C = Config.Channels, H = Config.Heads; float eps = Config.LayerNormEps;
        be.LayerNormForward(input, w.Ln1W, w.Ln1B, N, C, eps, s.Ln1, s.Ln1Mean, s.Ln1Rstd);
        be.MatMulForward(s.Ln1, w.AttnW, w.AttnB, N, C, 3 * C, s.Qkv);
        if (cache is null) be.AttentionForward(s.Qkv, B, T, H, H, C / H, s.Att, s.AttLogSumExp);
        else be.AttentionDecode(s.Qkv, decodePositions, B, H, H, C / H, cache.MaxT, cache.K[l], cache.V[l], s.Att);
        be.MatMulForward(s.Att, w.AttnProjW, w.AttnProjB, N, C, C, s.AttProj);
        be.ResidualForward(input, s.AttProj, N * C, s.Residual2);
        be.LayerNormForward(s.Residual2, w.Ln2W, w.Ln2B, N, C, eps, s.Ln2, s.Ln2Mean, s.Ln2Rstd);
        be.MatMulForward(s.Ln2, w.FcW, w.FcB, N, C, 4 * C, s.Fc);
        be.GeluForward(s.Fc, 4 * N * C, s.FcGelu);
        be.MatMulForward(s.FcGelu, w.FcProjW, w.FcProjB, N, 4 * C, C, s.FcProj);
        be.ResidualForward(s.Residual2, s.FcProj, N * C, s.Residual3);
    }

    // ================================================================ backward

    public override void Backward(Activations activations)
    {
        var a = (Gpt2Activations)activations;
        if (!a.HasGradients) throw new InvalidOperationException("these activations were allocated without gradient buffers");
        var be = Backend; int N = a.N, C = Config.Channels;

        // LayerNormBackward accumulates into the residual stream's gradient, so it starts at zero.
        be.Zero(a.DResidual);
        be.MatMulBackward(a.Logits, a.FinalNorm, Weights.Wte, N, C, Config.VocabSize, a.DLn, Grads.Wte, default);
        be.LayerNormBackward(a.DLn, a.LastResidual, Weights.LnFW, a.LnFMean, a.LnFRstd, N, C, a.DResidual, Grads.LnFW, Grads.LnFB);
        for (int l = Config.Layers - 1; l >= 0; l--)
            BlockBackward(l, l == 0 ? a.Encoded : a.Layers[l - 1].Residual3, a.Layers[l], a);
        be.EmbeddingBackward(a.DResidual, a.Tokens, a.Positions, N, C, Grads.Wte, Grads.Wpe);
    }

    /// <summary>
    /// The reverse of <see cref="BlockForward"/>. A residual add passes its output gradient unchanged to
    /// both inputs, so a.DResidual serves as the stream's gradient and as the branch's output gradient;
    /// the branch is read before its LayerNorm backward accumulates into the stream, and no
    /// ResidualBackward call (which would add the stream to itself) is needed.
    /// </summary>
    void BlockBackward(int l, Buf<float> input, LayerActivations s, Gpt2Activations a)
    {
        var be = Backend; var w = Weights.Blocks[l]; var g = Grads.Blocks[l];
        int N = a.N, C = Config.Channels, H = Config.Heads;
        // MLP branch: dResidual3 -> c_proj -> gelu -> c_fc -> ln_2 (adds into dResidual2 = dResidual3 + ...)
        be.MatMulBackward(a.DResidual, s.FcGelu, w.FcProjW, N, 4 * C, C, a.DFcGelu, g.FcProjW, g.FcProjB);
        be.GeluBackward(a.DFcGelu, s.Fc, 4 * N * C, a.DFc);
        be.MatMulBackward(a.DFc, s.Ln2, w.FcW, N, C, 4 * C, a.DLn, g.FcW, g.FcB);
        be.LayerNormBackward(a.DLn, s.Residual2, w.Ln2W, s.Ln2Mean, s.Ln2Rstd, N, C, a.DResidual, g.Ln2W, g.Ln2B);
        // attention branch: dResidual2 -> c_proj -> attention -> c_attn -> ln_1 (adds into dInput)
        be.MatMulBackward(a.DResidual, s.Att, w.AttnProjW, N, C, C, a.DAtt, g.AttnProjW, g.AttnProjB);
        be.AttentionBackward(a.DAtt, s.Qkv, s.Att, s.AttLogSumExp, a.B, a.T, H, H, C / H, a.DQkv);
        be.MatMulBackward(a.DQkv, s.Ln1, w.AttnW, N, C, 3 * C, a.DLn, g.AttnW, g.AttnB);
        be.LayerNormBackward(a.DLn, input, w.Ln1W, s.Ln1Mean, s.Ln1Rstd, N, C, a.DResidual, g.Ln1W, g.Ln1B);
    }
}
