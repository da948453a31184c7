using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using ArcherIlgpu.Model.IO;

namespace ArcherIlgpu.Model.Gpt2;

/// <summary>
/// Shape of a GPT-2 style decoder: learned token and position embeddings, pre-LayerNorm blocks of
/// causal self-attention and a GELU MLP (4C hidden), a final LayerNorm and a head tied to the
/// token embedding.
/// </summary>
/// <param name="VocabSize">V, number of token ids.</param>
/// <param name="MaxT">Context length: positions 0 .. MaxT-1 have an embedding.</param>
/// <param name="Layers">L, transformer blocks.</param>
/// <param name="Heads">H, attention heads; Channels must be a multiple of it.</param>
/// <param name="Channels">C, width of the residual stream.</param>
/// <param name="LayerNormEps">epsilon inside every LayerNorm (GPT-2: 1e-5).</param>
/// <param name="InitStd">standard deviation of the normal initialisation (GPT-2: 0.02).</param>
public sealed record Gpt2Config(int VocabSize, int MaxT, int Layers, int Heads, int Channels,
    float LayerNormEps = 1e-5f, float InitStd = 0.02f) : IModelConfig
{
    public string ModelType => "gpt2";

    public IModelConfig WithVocabSize(int vocabSize) => this with { VocabSize = vocabSize };

    /// <summary>D, channels per head.</summary>
    public int HeadSize => Channels / Heads;

    /// <summary>Names accepted by <see cref="Preset"/>.</summary>
    public static readonly string[] PresetNames = ["tiny", "small", "bench-s", "bench-m", "gpt2", "gpt2-medium"];

    /// <summary>
    /// tiny: tests, seconds on CPU. small: samples. bench-s / bench-m: throughput benchmarks.
    /// gpt2: the 124M Hugging Face GPT-2. gpt2-medium: the 355M one (the benchmarks' 350M shape).
    /// </summary>
    public static Gpt2Config Preset(string name) => name.Trim().ToLowerInvariant() switch
    {
        "tiny" => new Gpt2Config(VocabSize: 64, MaxT: 64, Layers: 2, Heads: 2, Channels: 32),
        "small" => new Gpt2Config(VocabSize: 256, MaxT: 128, Layers: 4, Heads: 4, Channels: 128),
        "bench-s" => new Gpt2Config(VocabSize: 512, MaxT: 128, Layers: 4, Heads: 4, Channels: 256),
        "bench-m" => new Gpt2Config(VocabSize: 8192, MaxT: 256, Layers: 6, Heads: 6, Channels: 384),
        "gpt2" => new Gpt2Config(VocabSize: 50257, MaxT: 1024, Layers: 12, Heads: 12, Channels: 768),
        "gpt2-medium" => new Gpt2Config(VocabSize: 50257, MaxT: 1024, Layers: 24, Heads: 16, Channels: 1024),
        _ => throw new ArgumentException($"unknown GPT-2 preset '{name}'; valid presets: {string.Join(", ", PresetNames)}", nameof(name)),
    };

    /// <summary>Throws <see cref="ArgumentException"/> naming the first field that breaks a rule.</summary>
    public Gpt2Config Validate()
    {
        static void Require(bool ok, string message)
        {
            if (!ok) throw new ArgumentException($"invalid GPT-2 config: {message}");
        }
        static void RequireNoProblem(string? problem) => Require(problem is null, problem!);
        Require(VocabSize >= 2, $"VocabSize (vocab_size) must be at least 2, got {VocabSize}");
        Require(MaxT >= 1, $"MaxT (n_positions) must be at least 1, got {MaxT}");
        Require(Layers >= 1, $"Layers (n_layer) must be at least 1, got {Layers}");
        Require(Heads >= 1, $"Heads (n_head) must be at least 1, got {Heads}");
        Require(Channels >= 1, $"Channels (n_embd) must be at least 1, got {Channels}");
        Require(Channels % Heads == 0, $"Channels (n_embd = {Channels}) must be divisible by Heads (n_head = {Heads})");
        Require(float.IsFinite(LayerNormEps) && LayerNormEps > 0, $"LayerNormEps (layer_norm_epsilon) must be a positive finite number, got {LayerNormEps}");
        Require(float.IsFinite(InitStd) && InitStd > 0, $"InitStd (initializer_range) must be a positive finite number, got {InitStd}");
        RequireNoProblem(ConfigSizes.ContextTooLong("MaxT (n_positions)", MaxT));
        // Every weight, the logits of one position [V] and the flat parameter buffer index with int on the cpu backend.
        long c = Channels;
        RequireNoProblem(ConfigSizes.FirstTooLarge(
            ("VocabSize * Channels (vocab_size × n_embd, wte.weight)", ConfigSizes.Product(VocabSize, c)),
            ("MaxT * Channels (n_positions × n_embd, wpe.weight)", ConfigSizes.Product(MaxT, c)),
            ("4 * Channels * Channels (4 × n_embd × n_embd, mlp.c_fc.weight)", ConfigSizes.Product(4, c, c)),
            ("the parameters of vocab_size, n_positions, n_layer and n_embd", ParameterCount)));
        return this;
    }

    /// <summary>
    /// Number of parameters (the tied head once): the two embeddings, per layer 12C² + 13C (c_attn, c_proj, c_fc,
    /// mlp c_proj with their biases, two LayerNorms), and the final LayerNorm; saturates instead of overflowing.
    /// </summary>
    public long ParameterCount
    {
        get
        {
            long c = Channels;
            long perLayer = ConfigSizes.Sum(ConfigSizes.Product(12, c, c), 13 * c);
            return ConfigSizes.Sum(ConfigSizes.Product((long)VocabSize + MaxT, c), ConfigSizes.Product(Layers, perLayer), 2 * c);
        }
    }

    // ------------------------------------------------------------ Hugging Face config.json

    /// <summary>The Hugging Face GPT2Config JSON for this shape (what transformers' GPT2LMHeadModel reads).</summary>
    public string ToHuggingFaceJson()
    {
        var json = new JsonObject
        {
            ["model_type"] = "gpt2",
            ["architectures"] = new JsonArray("GPT2LMHeadModel"),
            ["vocab_size"] = VocabSize,
            ["n_positions"] = MaxT,
            ["n_ctx"] = MaxT,
            ["n_embd"] = Channels,
            ["n_layer"] = Layers,
            ["n_head"] = Heads,
            ["n_inner"] = null,
            ["activation_function"] = "gelu_new",
            ["layer_norm_epsilon"] = (double)(decimal)LayerNormEps,
            ["initializer_range"] = (double)(decimal)InitStd,
            ["resid_pdrop"] = 0.0,
            ["embd_pdrop"] = 0.0,
            ["attn_pdrop"] = 0.0,
            ["tie_word_embeddings"] = true,
        };
        return json.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    /// <summary>Reads a Hugging Face GPT-2 config.json; <paramref name="source"/> names the file in errors.</summary>
    public static Gpt2Config FromHuggingFaceJson(string json, string source = "config.json")
    {
        var obj = ConfigJson.ParseObject(json, source);

        var type = obj["model_type"]?.ToString();
        if (type is not null && type != "gpt2")
            throw new ModelFormatException($"{source}: model_type is '{type}', expected 'gpt2'");
        RejectUnsupportedFeatures(obj, source);
        if (obj["n_inner"] is JsonNode inner && inner.GetValueKind() != JsonValueKind.Null)
        {
            int nInner = Int(obj, "n_inner", source, 0);
            int embd = Int(obj, "n_embd", source, 768);
            if (nInner != 4L * embd) throw new ModelFormatException($"{source}: n_inner = {nInner} is not supported (only 4 * n_embd = {4L * embd})");
        }

        int maxT = obj.ContainsKey("n_positions") ? Int(obj, "n_positions", source, 1024) : Int(obj, "n_ctx", source, 1024);
        var config = new Gpt2Config(
            VocabSize: Int(obj, "vocab_size", source, 50257),
            MaxT: maxT,
            Layers: Int(obj, "n_layer", source, 12),
            Heads: Int(obj, "n_head", source, 12),
            Channels: Int(obj, "n_embd", source, 768),
            LayerNormEps: Float(obj, "layer_norm_epsilon", source, 1e-5f),
            InitStd: Float(obj, "initializer_range", source, 0.02f));
        try { return config.Validate(); }
        catch (ArgumentException e) { throw new ModelFormatException($"{source}: {e.Message}", e); }
    }

    /// <summary>
    /// The names transformers gives GELU's tanh form, the MLP's activation here: gelu_new (GPT-2's own),
    /// gelu_pytorch_tanh, gelu_fast and gelu_accurate all compute 0.5x(1 + tanh(sqrt(2/π)(x + 0.044715x³))).
    /// "gelu" is the exact erf form, a different function.
    /// </summary>
    public static readonly string[] GeluTanhNames = ["gelu_new", "gelu_pytorch_tanh", "gelu_fast", "gelu_accurate"];

    /// <summary>
    /// The keys of transformers' GPT2Config that change what the model computes, each held to the value this
    /// project implements. reorder_and_upcast_attn only changes the precision of fp16 attention (ours is float32)
    /// and the dropouts only training with dropout (ours has none), so they are accepted.
    /// </summary>
    static void RejectUnsupportedFeatures(JsonObject obj, string source)
    {
        var act = ConfigJson.OptionalString(obj, "activation_function", source) ?? "gelu_new";
        if (!GeluTanhNames.Contains(act, StringComparer.Ordinal))
            throw new ModelFormatException($"{source}: activation_function '{act}' is not supported (the MLP computes GELU's tanh form: {string.Join(", ", GeluTanhNames)})");
        ConfigJson.RejectFlag(obj, "scale_attn_weights", unsupported: false, source, "attention without the 1/sqrt(head size) scaling is not supported");
        ConfigJson.RejectFlag(obj, "scale_attn_by_inverse_layer_idx", unsupported: true, source, "attention scores divided by the layer index are not supported");
        ConfigJson.RejectFlag(obj, "add_cross_attention", unsupported: true, source, "cross-attention blocks (an encoder-decoder GPT-2) are not supported");
        ConfigJson.RejectFlag(obj, "tie_word_embeddings", unsupported: false, source, "only GPT-2 with the head tied to the token embedding (wte) is supported");
    }

    /// <summary>Reads <c>config.json</c> from a model folder.</summary>
    public static Gpt2Config Load(string modelDir)
    {
        var path = Path.Combine(modelDir, "config.json");
        if (!File.Exists(path)) throw new ModelFormatException($"{path}: file not found (a model folder needs config.json)");
        return FromHuggingFaceJson(File.ReadAllText(path), path);
    }

    /// <summary>Writes <c>config.json</c> into a model folder (atomically).</summary>
    public void Save(string modelDir)
    {
        Directory.CreateDirectory(modelDir);
        AtomicFile.WriteAllText(Path.Combine(modelDir, "config.json"), ToHuggingFaceJson());
    }

    static int Int(JsonObject obj, string field, string source, int fallback) => ConfigJson.OptionalInt(obj, field, source) ?? fallback;

    static float Float(JsonObject obj, string field, string source, float fallback)
        => (float)(ConfigJson.OptionalDouble(obj, field, source) ?? fallback);

    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"GPT-2 V={VocabSize} maxT={MaxT} L={Layers} H={Heads} C={Channels} eps={LayerNormEps} std={InitStd}");
}
