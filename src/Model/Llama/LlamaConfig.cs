using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using ArcherIlgpu.Kernels;
using ArcherIlgpu.Model.IO;

namespace ArcherIlgpu.Model.Llama;

/// <summary>
/// Shape of a Llama-family decoder (Llama 3, SmolLM2, Qwen2 / Qwen2.5, Qwen3): a token embedding, pre-RMSNorm
/// blocks of grouped-query causal attention with rotary position embeddings and a SwiGLU MLP, a final RMSNorm
/// and a head that is tied to the embedding or separate. The three model types differ only in two flags:
/// Qwen2 has biases on the q, k and v projections; Qwen3 RMS-normalises every query and key head before RoPE.
/// </summary>
/// <param name="ModelType">Hugging Face <c>model_type</c>: "llama", "qwen2" or "qwen3".</param>
/// <param name="VocabSize">V, number of token ids (vocab_size).</param>
/// <param name="MaxT">Context length: the RoPE table covers positions 0 .. MaxT-1 (max_position_embeddings).</param>
/// <param name="Layers">L, transformer blocks (num_hidden_layers).</param>
/// <param name="Heads">H, query heads (num_attention_heads).</param>
/// <param name="KvHeads">Hkv, key/value heads (num_key_value_heads); each serves H / Hkv query heads.</param>
/// <param name="HeadSize">D, channels per head (head_dim). Not necessarily Channels / Heads: Qwen3-0.6B has
/// C 1024 and H·D = 2048.</param>
/// <param name="Channels">C, width of the residual stream (hidden_size).</param>
/// <param name="Intermediate">I, hidden width of the SwiGLU MLP (intermediate_size).</param>
/// <param name="RmsNormEps">epsilon inside every RMSNorm (rms_norm_eps).</param>
/// <param name="RopeTheta">RoPE base: the frequency of pair i is RopeTheta^(-2i/D) (rope_theta).</param>
/// <param name="TiedHead">the output head reuses the token embedding (tie_word_embeddings).</param>
/// <param name="QkvBias">the q, k and v projections have biases (Qwen2 always; never o_proj).</param>
/// <param name="QkNorm">per-head RMSNorm of queries and keys before RoPE (Qwen3).</param>
/// <param name="InitStd">standard deviation of the normal initialisation (initializer_range).</param>
/// <param name="RopeScaling">frequency scaling of RoPE (rope_scaling), null for the plain table: Llama 3.1 / 3.2
/// checkpoints carry rope_type "llama3" and were trained with it at every context length.</param>
public sealed record LlamaConfig(string ModelType, int VocabSize, int MaxT, int Layers, int Heads, int KvHeads,
    int HeadSize, int Channels, int Intermediate, float RmsNormEps = 1e-6f, double RopeTheta = 10000,
    bool TiedHead = true, bool QkvBias = false, bool QkNorm = false, float InitStd = 0.02f,
    RopeScaling? RopeScaling = null) : IModelConfig
{
    public IModelConfig WithVocabSize(int vocabSize) => this with { VocabSize = vocabSize };

    /// <summary>The <c>model_type</c> values this record describes.</summary>
    public static readonly string[] ModelTypes = ["llama", "qwen2", "qwen3"];

    /// <summary>Names accepted by <see cref="Preset"/>.</summary>
    public static readonly string[] PresetNames = ["llama-tiny", "qwen2-tiny", "qwen3-tiny", "qwen2-small", "qwen2.5-0.5b", "countdown-3m", "countdown-17m"];

    /// <summary>Width of the query projection, H·D.</summary>
    public int QWidth => Heads * HeadSize;

    /// <summary>Width of the key projection and of the value projection, Hkv·D.</summary>
    public int KvWidth => KvHeads * HeadSize;

    /// <summary>Width of the fused q|k|v projection row, (H + 2·Hkv)·D.</summary>
    public int QkvWidth => QWidth + 2 * KvWidth;

    /// <summary>Query heads per key/value head, H / Hkv.</summary>
    public int GroupSize => Heads / KvHeads;

    /// <summary>
    /// The *-tiny presets: tests, seconds on CPU (llama-tiny has an untied head so that path is covered too).
    /// qwen2-small: samples. qwen2.5-0.5b: the shape of Qwen/Qwen2.5-0.5B (config.json of the Hugging Face hub).
    /// countdown-3m and countdown-17m: the Qwen shapes that Qin et al. 2025 ("To Backtrack or Not to Backtrack",
    /// arXiv 2504.07052) train from scratch on Countdown, from KempnerInstitute/Backtrack
    /// countdown/configs/sft-mix-4-cd-{3M,17M}-qwen.conf: hidden 256, 6 layers, FFN 512 (3M) and hidden 512,
    /// 8 layers, FFN 1024 (17M), both 4 heads and 1 key/value head. Ours differ in two ways, for our data: the
    /// vocabulary is the char tokenizer's (57; they use their own Countdown tokenizer), and the context is 128,
    /// not 4,096 (their responses are search traces; a step-form prompt and answer fit in about 45 tokens).
    /// </summary>
    public static LlamaConfig Preset(string name) => name.Trim().ToLowerInvariant() switch
    {
        "llama-tiny" => new LlamaConfig("llama", VocabSize: 64, MaxT: 64, Layers: 2, Heads: 4, KvHeads: 2, HeadSize: 8,
            Channels: 32, Intermediate: 64, RmsNormEps: 1e-5f, RopeTheta: 10000, TiedHead: false),
        "qwen2-tiny" => new LlamaConfig("qwen2", VocabSize: 64, MaxT: 64, Layers: 2, Heads: 4, KvHeads: 2, HeadSize: 8,
            Channels: 32, Intermediate: 64, RopeTheta: 1e6, QkvBias: true),
        "qwen3-tiny" => new LlamaConfig("qwen3", VocabSize: 64, MaxT: 64, Layers: 2, Heads: 4, KvHeads: 2, HeadSize: 16,
            Channels: 32, Intermediate: 64, RopeTheta: 1e6, QkNorm: true),
        "qwen2-small" => new LlamaConfig("qwen2", VocabSize: 256, MaxT: 128, Layers: 4, Heads: 4, KvHeads: 2, HeadSize: 32,
            Channels: 128, Intermediate: 384, RopeTheta: 1e6, QkvBias: true),
        "countdown-3m" => new LlamaConfig("qwen2", VocabSize: 57, MaxT: 128, Layers: 6, Heads: 4, KvHeads: 1, HeadSize: 64,
            Channels: 256, Intermediate: 512, RopeTheta: 1e6, QkvBias: true),
        "countdown-17m" => new LlamaConfig("qwen2", VocabSize: 57, MaxT: 128, Layers: 8, Heads: 4, KvHeads: 1, HeadSize: 128,
            Channels: 512, Intermediate: 1024, RopeTheta: 1e6, QkvBias: true),
        "qwen2.5-0.5b" => new LlamaConfig("qwen2", VocabSize: 151936, MaxT: 32768, Layers: 24, Heads: 14, KvHeads: 2, HeadSize: 64,
            Channels: 896, Intermediate: 4864, RmsNormEps: 1e-6f, RopeTheta: 1e6, TiedHead: true, QkvBias: true),
        _ => throw new ArgumentException($"unknown Llama-family preset '{name}'; valid presets: {string.Join(", ", PresetNames)}", nameof(name)),
    };

    /// <summary>
    /// Number of parameters as transformers counts them (the tied head once): embedding, per layer two RMSNorm
    /// weights, q/k/v/o (+ q/k/v biases, + q/k norm weights), gate/up/down, then the final norm and an untied head.
    /// </summary>
    public long ParameterCount
    {
        get
        {
            // In long, saturating: Validate calls this on configs whose int widths (QWidth ...) may overflow.
            long c = Channels, d = HeadSize, q = (long)Heads * d, kv = (long)KvHeads * d;
            long attention = ConfigSizes.Sum(ConfigSizes.Product(2, c, q), ConfigSizes.Product(2, c, kv),
                QkvBias ? q + 2 * kv : 0, QkNorm ? 2 * d : 0);
            long mlp = ConfigSizes.Product(3, c, Intermediate);
            long perLayer = ConfigSizes.Sum(attention, mlp, 2 * c);
            long embedding = ConfigSizes.Product(VocabSize, c);
            return ConfigSizes.Sum(embedding, ConfigSizes.Product(Layers, perLayer), c, TiedHead ? 0 : embedding);
        }
    }

    /// <summary>Throws <see cref="ArgumentException"/> naming the first field (and its Hugging Face key) that breaks a rule.</summary>
    public LlamaConfig Validate()
    {
        static void Require(bool ok, string message)
        {
            if (!ok) throw new ArgumentException($"invalid Llama-family config: {message}");
        }
        static void RequireNoProblem(string? problem) => Require(problem is null, problem!);
        Require(ModelTypes.Contains(ModelType, StringComparer.Ordinal),
            $"ModelType (model_type) must be one of {string.Join(", ", ModelTypes)}, got '{ModelType}'");
        Require(VocabSize >= 2, $"VocabSize (vocab_size) must be at least 2, got {VocabSize}");
        Require(MaxT >= 1, $"MaxT (max_position_embeddings) must be at least 1, got {MaxT}");
        Require(Layers >= 1, $"Layers (num_hidden_layers) must be at least 1, got {Layers}");
        Require(Heads >= 1, $"Heads (num_attention_heads) must be at least 1, got {Heads}");
        Require(KvHeads >= 1, $"KvHeads (num_key_value_heads) must be at least 1, got {KvHeads}");
        Require(Heads % KvHeads == 0, $"Heads (num_attention_heads = {Heads}) must be a multiple of KvHeads (num_key_value_heads = {KvHeads})");
        // Rotate-half RoPE pairs channel i with channel i + D/2.
        Require(HeadSize >= 2 && HeadSize % 2 == 0, $"HeadSize (head_dim) must be even and at least 2 (rotary embeddings rotate pairs), got {HeadSize}");
        Require(Channels >= 1, $"Channels (hidden_size) must be at least 1, got {Channels}");
        Require(Intermediate >= 1, $"Intermediate (intermediate_size) must be at least 1, got {Intermediate}");
        Require(float.IsFinite(RmsNormEps) && RmsNormEps > 0, $"RmsNormEps (rms_norm_eps) must be a positive finite number, got {RmsNormEps}");
        Require(double.IsFinite(RopeTheta) && RopeTheta > 0, $"RopeTheta (rope_theta) must be a positive finite number, got {RopeTheta}");
        RequireNoProblem(RopeScaling?.Problem());
        Require(float.IsFinite(InitStd) && InitStd > 0, $"InitStd (initializer_range) must be a positive finite number, got {InitStd}");
        // The flags follow from the model type, so that config.json (which has no key for them) round-trips.
        bool bias = ModelType == "qwen2", qkNorm = ModelType == "qwen3";
        Require(QkvBias == bias, $"QkvBias must be {bias.ToString().ToLowerInvariant()} for model_type '{ModelType}' (only Qwen2 has q/k/v biases)");
        Require(QkNorm == qkNorm, $"QkNorm must be {qkNorm.ToString().ToLowerInvariant()} for model_type '{ModelType}' (only Qwen3 normalises q and k per head)");
        RequireNoProblem(ConfigSizes.ContextTooLong("MaxT (max_position_embeddings)", MaxT));
        // Every weight, the RoPE tables, one sequence's keys of a layer and the flat parameter buffer index with int on the cpu backend.
        long c = Channels, d = HeadSize;
        RequireNoProblem(ConfigSizes.FirstTooLarge(
            ("VocabSize * Channels (vocab_size × hidden_size, model.embed_tokens.weight)", ConfigSizes.Product(VocabSize, c)),
            ("(Heads + 2 * KvHeads) * HeadSize * Channels ((num_attention_heads + 2 × num_key_value_heads) × head_dim × hidden_size, q/k/v_proj)",
                ConfigSizes.Product((long)Heads + 2L * KvHeads, d, c)),
            ("2 * Intermediate * Channels (2 × intermediate_size × hidden_size, gate_proj and up_proj)", ConfigSizes.Product(2, Intermediate, c)),
            ("MaxT * HeadSize / 2 (max_position_embeddings × head_dim / 2, the RoPE tables)", ConfigSizes.Product(MaxT, d / 2)),
            ("MaxT * KvHeads * HeadSize (max_position_embeddings × num_key_value_heads × head_dim, a layer's cached keys)", ConfigSizes.Product(MaxT, KvHeads, d)),
            ("the parameters of vocab_size, num_hidden_layers, hidden_size, intermediate_size and the heads", ParameterCount)));
        return this;
    }

    // ------------------------------------------------------------ Hugging Face config.json

    /// <summary>The config.json that transformers' LlamaForCausalLM / Qwen2ForCausalLM / Qwen3ForCausalLM reads for this shape.</summary>
    public string ToHuggingFaceJson()
    {
        var json = new JsonObject
        {
            ["model_type"] = ModelType,
            ["architectures"] = new JsonArray(ModelType switch { "qwen2" => "Qwen2ForCausalLM", "qwen3" => "Qwen3ForCausalLM", _ => "LlamaForCausalLM" }),
            ["vocab_size"] = VocabSize,
            ["max_position_embeddings"] = MaxT,
            ["hidden_size"] = Channels,
            ["intermediate_size"] = Intermediate,
            ["num_hidden_layers"] = Layers,
            ["num_attention_heads"] = Heads,
            ["num_key_value_heads"] = KvHeads,
            ["head_dim"] = HeadSize,
            ["hidden_act"] = "silu",
            ["rms_norm_eps"] = (double)(decimal)RmsNormEps,
            ["rope_theta"] = RopeTheta,
            ["rope_scaling"] = RopeScalingJson(RopeScaling),
            ["tie_word_embeddings"] = TiedHead,
            ["initializer_range"] = (double)(decimal)InitStd,
            ["attention_dropout"] = 0.0,
            ["use_cache"] = true,
        };
        if (ModelType == "llama")
        {
            json["attention_bias"] = false;
            json["mlp_bias"] = false;
        }
        else
        {
            if (ModelType == "qwen3") json["attention_bias"] = false;
            json["use_sliding_window"] = false;
            json["sliding_window"] = null;
            json["max_window_layers"] = Layers;
        }
        return json.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    /// <summary>rope_scaling as transformers 4.x saves it: keys sorted, the factors as floats ("32.0"), the context an int.</summary>
    static JsonObject? RopeScalingJson(RopeScaling? scaling) => scaling is null ? null : new JsonObject
    {
        ["factor"] = PythonFloat(scaling.Factor),
        ["high_freq_factor"] = PythonFloat(scaling.HighFreqFactor),
        ["low_freq_factor"] = PythonFloat(scaling.LowFreqFactor),
        ["original_max_position_embeddings"] = scaling.OriginalMaxT,
        ["rope_type"] = scaling.Type,
    };

    /// <summary>
    /// A double written the way Python's json writes a float: whole numbers keep ".0", so transformers'
    /// check that factor and the freq factors are floats (it warns on an int) passes.
    /// </summary>
    static JsonNode PythonFloat(double value)
    {
        var text = value.ToString("R", CultureInfo.InvariantCulture);
        if (!text.Contains('.') && !text.Contains('E')) text += ".0";
        return JsonNode.Parse(text)!;
    }

    /// <summary>
    /// Reads a Hugging Face Llama / Qwen2 / Qwen3 config.json; <paramref name="source"/> names the file in errors.
    /// Absent optional fields take transformers' defaults for that model type. Everything this project cannot
    /// compute exactly (RoPE scaling other than llama3, sliding windows, o_proj or MLP biases, other activations) is a
    /// <see cref="ModelFormatException"/> naming the field, never silently ignored.
    /// </summary>
    public static LlamaConfig FromHuggingFaceJson(string json, string source = ModelFiles.ConfigFile)
    {
        var obj = ConfigJson.ParseObject(json, source);
        string type = ReadModelType(obj, source);
        RejectUnsupportedFeatures(obj, type, source);

        int channels = ConfigJson.RequiredInt(obj, "hidden_size", source);
        int heads = ConfigJson.RequiredInt(obj, "num_attention_heads", source);
        var config = new LlamaConfig(
            ModelType: type,
            VocabSize: ConfigJson.RequiredInt(obj, "vocab_size", source),
            MaxT: ConfigJson.RequiredInt(obj, "max_position_embeddings", source),
            Layers: ConfigJson.RequiredInt(obj, "num_hidden_layers", source),
            Heads: heads,
            KvHeads: ConfigJson.OptionalInt(obj, "num_key_value_heads", source) ?? heads,
            HeadSize: ReadHeadSize(obj, type, channels, heads, source),
            Channels: channels,
            Intermediate: ConfigJson.RequiredInt(obj, "intermediate_size", source),
            RmsNormEps: (float)(ConfigJson.OptionalDouble(obj, "rms_norm_eps", source) ?? 1e-6),
            RopeTheta: ReadRopeTheta(obj, source),
            // transformers' LlamaConfig, Qwen2Config and Qwen3Config all default to an untied head.
            TiedHead: ConfigJson.OptionalBool(obj, "tie_word_embeddings", source) ?? false,
            QkvBias: type == "qwen2",
            QkNorm: type == "qwen3",
            InitStd: (float)(ConfigJson.OptionalDouble(obj, "initializer_range", source) ?? 0.02),
            RopeScaling: ReadRopeScaling(obj, source));
        try { return config.Validate(); }
        catch (ArgumentException e) { throw new ModelFormatException($"{source}: {e.Message}", e); }
    }

    /// <summary>Reads <c>config.json</c> from a model folder.</summary>
    public static LlamaConfig Load(string modelDir)
    {
        var path = Path.Combine(modelDir, ModelFiles.ConfigFile);
        if (!File.Exists(path)) throw new ModelFormatException($"{path}: file not found (a model folder needs {ModelFiles.ConfigFile})");
        return FromHuggingFaceJson(File.ReadAllText(path), path);
    }

    /// <summary>Writes <c>config.json</c> into a model folder (atomically).</summary>
    public void Save(string modelDir)
    {
        Directory.CreateDirectory(modelDir);
        AtomicFile.WriteAllText(Path.Combine(modelDir, ModelFiles.ConfigFile), ToHuggingFaceJson());
    }

    static string ReadModelType(JsonObject obj, string source)
    {
        string expected = string.Join(", ", ModelTypes);
        var type = ConfigJson.OptionalString(obj, "model_type", source)
            ?? throw new ModelFormatException($"{source}: field 'model_type' is missing; expected one of {expected}");
        if (!ModelTypes.Contains(type, StringComparer.Ordinal))
            throw new ModelFormatException($"{source}: model_type is '{type}', expected one of {expected}"
                + (type == "gpt2" ? " (GPT-2 folders load with Gpt2Config)" : ""));
        return type;
    }

    static void RejectUnsupportedFeatures(JsonObject obj, string type, string source)
    {
        var act = ConfigJson.OptionalString(obj, "hidden_act", source) ?? "silu";
        // transformers maps "swish" to the same SiLU module.
        if (act is not ("silu" or "swish"))
            throw new ModelFormatException($"{source}: hidden_act '{act}' is not supported (the SwiGLU MLP needs 'silu')");

        // Qwen2's q/k/v biases are unconditional and it has no attention_bias key; in Llama and Qwen3 the key
        // puts a bias on o_proj as well, which the fused attention block does not have.
        if (type != "qwen2")
            ConfigJson.RejectFlag(obj, "attention_bias", unsupported: true, source, $"{type} then has biases on q_proj, k_proj, v_proj AND o_proj; "
                + "only q/k/v biases (model_type qwen2) are supported");
        if (type == "llama")
            ConfigJson.RejectFlag(obj, "mlp_bias", unsupported: true, source, "biases on gate_proj, up_proj and down_proj are not supported");
        ConfigJson.RejectFlag(obj, "use_sliding_window", unsupported: true, source, "sliding-window attention is not supported (only full causal attention)");
        if (obj["layer_types"] is JsonArray layerTypes)
            foreach (var layer in layerTypes)
                if (layer?.GetValueKind() != JsonValueKind.String || layer.GetValue<string>() != "full_attention")
                    throw new ModelFormatException($"{source}: layer_types contains {layer?.ToJsonString() ?? "null"}: only 'full_attention' layers are supported");
    }

    /// <summary>
    /// The RoPE scaling of a config: transformers 4.x writes it as "rope_scaling" (old files spell the type key
    /// "type"), transformers 5 as "rope_parameters" together with rope_theta. Null for the plain table. Scalings
    /// that change the frequencies in other ways (linear, dynamic, yarn, longrope ...) are rejected naming the type.
    /// </summary>
    static RopeScaling? ReadRopeScaling(JsonObject obj, string source)
    {
        var scaling = ReadRopeField(obj, "rope_scaling", source);
        var parameters = ReadRopeField(obj, "rope_parameters", source);
        if (scaling is not null && parameters is not null && scaling != parameters)
            throw new ModelFormatException($"{source}: rope_scaling ({scaling}) and rope_parameters ({parameters}) disagree; give one of them");
        return parameters ?? scaling;
    }

    static RopeScaling? ReadRopeField(JsonObject obj, string field, string source)
    {
        var node = obj[field];
        if (node is null) return null;
        if (node is not JsonObject rope)
            throw new ModelFormatException($"{source}: field '{field}' must be null or an object, got {node.ToJsonString()}");
        string where = $"{source} ({field})";
        var kind = ConfigJson.OptionalString(rope, "rope_type", where) ?? ConfigJson.OptionalString(rope, "type", where);
        if (kind is null)
        {
            if (field == "rope_parameters") return null;   // only rope_theta inside: the default type
            throw new ModelFormatException($"{source}: {field} {node.ToJsonString()} has no rope_type; "
                + $"supported are null, {{\"rope_type\": \"default\"}} and {{\"rope_type\": \"llama3\", ...}}");
        }
        if (kind == "default") return null;
        if (!RopeScaling.Types.Contains(kind, StringComparer.Ordinal))
            throw new ModelFormatException($"{source}: {field} type '{kind}' is not supported: only plain RoPE (rope_scaling null "
                + $"or {{\"rope_type\": \"default\"}}) and {string.Join(", ", RopeScaling.Types.Select(t => $"'{t}'"))} scaling are; "
                + $"this model needs '{kind}' frequency scaling");
        double Required(string key) => ConfigJson.OptionalDouble(rope, key, where) ?? throw MissingKey(key);
        ModelFormatException MissingKey(string key) => new($"{source}: {field} of type '{kind}' has no '{key}' "
            + "(it needs factor, low_freq_factor, high_freq_factor and original_max_position_embeddings)");
        return new RopeScaling(kind, Required("factor"), Required("low_freq_factor"), Required("high_freq_factor"),
            ConfigJson.OptionalInt(rope, "original_max_position_embeddings", where) ?? throw MissingKey("original_max_position_embeddings"));
    }

    static double ReadRopeTheta(JsonObject obj, string source)
    {
        double? theta = obj["rope_parameters"] is JsonObject parameters
            ? ConfigJson.OptionalDouble(parameters, "rope_theta", source + " (rope_parameters)")
            : null;
        return theta ?? ConfigJson.OptionalDouble(obj, "rope_theta", source) ?? 10000;
    }

    static int ReadHeadSize(JsonObject obj, string type, int channels, int heads, string source)
    {
        if (ConfigJson.OptionalInt(obj, "head_dim", source) is int headDim) return headDim;
        // Qwen3Config's own default; Llama and Qwen2 derive it from the width.
        if (type == "qwen3") return 128;
        if (heads < 1) throw new ModelFormatException($"{source}: num_attention_heads must be at least 1, got {heads}");
        if (channels % heads != 0)
            throw new ModelFormatException($"{source}: hidden_size = {channels} is not divisible by num_attention_heads = {heads} and head_dim is not given");
        return channels / heads;
    }

    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"{ModelType} V={VocabSize} maxT={MaxT} L={Layers} H={Heads} Hkv={KvHeads} D={HeadSize} C={Channels} I={Intermediate} "
        + $"eps={RmsNormEps} theta={RopeTheta}{(RopeScaling is null ? "" : $" rope={RopeScaling}")} tied={TiedHead} qkvBias={QkvBias} qkNorm={QkNorm} std={InitStd}");
}
