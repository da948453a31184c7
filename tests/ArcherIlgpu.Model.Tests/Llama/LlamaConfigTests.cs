using System.Text.Json.Nodes;
using ArcherIlgpu.Kernels;
using ArcherIlgpu.Model.IO;
using ArcherIlgpu.Model.Llama;
using ArcherIlgpu.Model.Tests.IO;
using Xunit;

namespace ArcherIlgpu.Model.Tests.Llama;

public class LlamaConfigTests
{
    static string RealConfig(string name) => File.ReadAllText(Path.Combine(TestFiles.DataDir, "hf-configs", name + ".json"));

    // ------------------------------------------------------------ presets

    [Theory]
    [InlineData("llama-tiny"), InlineData("qwen2-tiny"), InlineData("qwen3-tiny"), InlineData("qwen2-small"), InlineData("qwen2.5-0.5b")]
    public void PresetsAreValidAndRoundTripThroughConfigJson(string name)
    {
        var c = LlamaConfig.Preset(name).Validate();
        Assert.Equal(c, LlamaConfig.FromHuggingFaceJson(c.ToHuggingFaceJson()));
    }

    [Fact]
    public void PresetNamesListsEveryPreset()
    {
        foreach (var name in LlamaConfig.PresetNames) LlamaConfig.Preset(name);
        var e = Assert.Throws<ArgumentException>(() => LlamaConfig.Preset("llama-huge"));
        Assert.Contains("llama-huge", e.Message);
        foreach (var name in LlamaConfig.PresetNames) Assert.Contains(name, e.Message);
    }

    [Fact]
    public void TinyPresetsHaveTheTestShape()
    {
        foreach (var (name, type) in new[] { ("llama-tiny", "llama"), ("qwen2-tiny", "qwen2"), ("qwen3-tiny", "qwen3") })
        {
            var c = LlamaConfig.Preset(name);
            // qwen3-tiny has D 16 so that H·D (64) != C (32), as in Qwen3-0.6B.
            int D = type == "qwen3" ? 16 : 8;
            Assert.Equal((type, 64, 64, 2, 32, 4, 2, D), (c.ModelType, c.VocabSize, c.MaxT, c.Layers, c.Channels, c.Heads, c.KvHeads, c.HeadSize));
            Assert.Equal(type == "qwen2", c.QkvBias);
            Assert.Equal(type == "qwen3", c.QkNorm);
        }
        var small = LlamaConfig.Preset("qwen2-small");
        Assert.Equal((256, 128, 4, 128, 4, 2, 32, 384), (small.VocabSize, small.MaxT, small.Layers, small.Channels, small.Heads, small.KvHeads, small.HeadSize, small.Intermediate));
    }

    [Fact]
    public void Qwen25PresetEqualsThePublishedConfig()
    {
        var published = LlamaConfig.FromHuggingFaceJson(RealConfig("qwen2.5-0.5b"));
        Assert.Equal(LlamaConfig.Preset("qwen2.5-0.5b"), published);
    }

    // ------------------------------------------------------------ the real configs

    [Fact]
    public void Qwen25ConfigParsesToItsShape()
    {
        var c = LlamaConfig.FromHuggingFaceJson(RealConfig("qwen2.5-0.5b"));
        Assert.Equal(("qwen2", 151936, 32768, 24, 14, 2, 64, 896, 4864), (c.ModelType, c.VocabSize, c.MaxT, c.Layers, c.Heads, c.KvHeads, c.HeadSize, c.Channels, c.Intermediate));
        Assert.Equal((1e-6f, 1e6, true, true, false, 0.02f), (c.RmsNormEps, c.RopeTheta, c.TiedHead, c.QkvBias, c.QkNorm, c.InitStd));
        Assert.Equal((896, 128, 1152, 7), (c.QWidth, c.KvWidth, c.QkvWidth, c.GroupSize));
        // transformers' num_parameters() for Qwen/Qwen2.5-0.5B (the model card's "0.49B"). By hand: embedding
        // 151936·896 = 136,134,656; per layer q 896·896+896, k and v 896·128+128 each, o 896·896, MLP 3·896·4864,
        // two norms 2·896 = 14,912,384; 24 layers = 357,897,216; final norm 896.
        Assert.Equal(494_032_768, c.ParameterCount);
    }

    [Fact]
    public void Qwen3ConfigParsesWithQkNormAndHeadDimWiderThanChannelsPerHead()
    {
        var c = LlamaConfig.FromHuggingFaceJson(RealConfig("qwen3-0.6b"));
        Assert.Equal(("qwen3", 151936, 40960, 28, 16, 8, 128, 1024, 3072), (c.ModelType, c.VocabSize, c.MaxT, c.Layers, c.Heads, c.KvHeads, c.HeadSize, c.Channels, c.Intermediate));
        Assert.Equal((1e-6f, 1e6, true, false, true), (c.RmsNormEps, c.RopeTheta, c.TiedHead, c.QkvBias, c.QkNorm));
        Assert.Equal(2048, c.QWidth);   // H·D is twice C: head_dim is not hidden_size / heads
        // transformers' num_parameters() for Qwen/Qwen3-0.6B. By hand: embedding 151936·1024 = 155,582,464; per layer
        // q 1024·2048, k and v 1024·1024 each, o 2048·1024, q/k norms 2·128, MLP 3·1024·3072, two norms 2·1024
        // = 15,730,944; 28 layers = 440,466,432; final norm 1024.
        Assert.Equal(596_049_920, c.ParameterCount);
    }

    [Fact]
    public void SmolLm2ConfigParsesAsLlama()
    {
        var c = LlamaConfig.FromHuggingFaceJson(RealConfig("smollm2-135m"));
        Assert.Equal(("llama", 49152, 8192, 30, 9, 3, 64, 576, 1536), (c.ModelType, c.VocabSize, c.MaxT, c.Layers, c.Heads, c.KvHeads, c.HeadSize, c.Channels, c.Intermediate));
        Assert.Equal((1e-5f, 100000.0, true, false, false), (c.RmsNormEps, c.RopeTheta, c.TiedHead, c.QkvBias, c.QkNorm));
        Assert.Equal((float)0.041666666666666664, c.InitStd);
        // transformers' num_parameters() for HuggingFaceTB/SmolLM2-135M. By hand: embedding 49152·576 = 28,311,552;
        // per layer q and o 576·576 each, k and v 576·192 each, MLP 3·576·1536, two norms = 3,540,096; 30 layers
        // = 106,202,880; final norm 576.
        Assert.Equal(134_515_008, c.ParameterCount);
    }

    [Fact]
    public void Llama32ConfigParsesWithItsLlama3RopeScaling()
    {
        var c = LlamaConfig.FromHuggingFaceJson(RealConfig("llama-3.2-1b"), "Llama-3.2-1B/config.json");
        Assert.Equal(("llama", 128256, 131072, 16, 32, 8, 64, 2048, 8192), (c.ModelType, c.VocabSize, c.MaxT, c.Layers, c.Heads, c.KvHeads, c.HeadSize, c.Channels, c.Intermediate));
        Assert.Equal((1e-5f, 500000.0, true), (c.RmsNormEps, c.RopeTheta, c.TiedHead));
        Assert.Equal(new RopeScaling("llama3", Factor: 32, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxT: 8192), c.RopeScaling);
        Assert.Equal(1_235_814_400, c.ParameterCount);   // the scaling adds no parameter (worked out below)
        Assert.Equal(c, LlamaConfig.FromHuggingFaceJson(c.ToHuggingFaceJson()));
    }

    [Fact]
    public void Llama3RopeScalingIsWrittenAsTransformersWritesIt()
    {
        var published = JsonNode.Parse(RealConfig("llama-3.2-1b"))!["rope_scaling"]!;
        var c = LlamaConfig.FromHuggingFaceJson(RealConfig("llama-3.2-1b"));
        var written = JsonNode.Parse(c.ToHuggingFaceJson())!["rope_scaling"]!;
        // Same keys in the same (sorted) order and the same number spellings: "32.0", not "32" (transformers
        // warns when factor or the freq factors are not floats), "8192" as an int.
        Assert.Equal(published.ToJsonString(), written.ToJsonString());
        Assert.Contains("\"factor\":32.0", written.ToJsonString());
    }

    [Fact]
    public void Llama32ShapeParsesWithoutTheScaling()
    {
        var json = JsonNode.Parse(RealConfig("llama-3.2-1b"))!.AsObject();
        json["rope_scaling"] = null;
        var c = LlamaConfig.FromHuggingFaceJson(json.ToJsonString());
        Assert.Equal(("llama", 128256, 131072, 16, 32, 8, 64, 2048, 8192), (c.ModelType, c.VocabSize, c.MaxT, c.Layers, c.Heads, c.KvHeads, c.HeadSize, c.Channels, c.Intermediate));
        Assert.Equal((1e-5f, 500000.0, true), (c.RmsNormEps, c.RopeTheta, c.TiedHead));
        // transformers' num_parameters() for meta-llama/Llama-3.2-1B (the model card's "1.23B"). By hand: embedding
        // 128256·2048 = 262,668,288; per layer q and o 2048·2048 each, k and v 2048·512 each, MLP 3·2048·8192, two
        // norms = 60,821,504; 16 layers = 973,144,064; final norm 2048.
        Assert.Equal(1_235_814_400, c.ParameterCount);
    }

    // ------------------------------------------------------------ round trip and defaults

    [Fact]
    public void NonDefaultValuesRoundTrip()
    {
        var c = new LlamaConfig("llama", VocabSize: 100, MaxT: 48, Layers: 3, Heads: 6, KvHeads: 3, HeadSize: 10, Channels: 40,
            Intermediate: 72, RmsNormEps: 1e-5f, RopeTheta: 500000, TiedHead: false, InitStd: 0.01f);
        Assert.Equal(c, LlamaConfig.FromHuggingFaceJson(c.ToHuggingFaceJson()));
        var q3 = c with { ModelType = "qwen3", QkNorm = true, TiedHead = true, RopeTheta = 1234.5 };
        Assert.Equal(q3, LlamaConfig.FromHuggingFaceJson(q3.ToHuggingFaceJson()));
        var scaled = c with { RopeScaling = new RopeScaling("llama3", 2.5, 0.75, 3.125, 40) };
        Assert.Equal(scaled, LlamaConfig.FromHuggingFaceJson(scaled.ToHuggingFaceJson()));
    }

    [Fact]
    public void SaveWritesConfigJsonAtomicallyAndLoadReadsIt()
    {
        using var dir = new TempDir();
        var c = LlamaConfig.Preset("qwen3-tiny");
        c.Save(dir.Path);
        Assert.Equal(["config.json"], Directory.GetFiles(dir.Path).Select(Path.GetFileName));
        Assert.Equal(c, LlamaConfig.Load(dir.Path));
        Assert.Equal("qwen3", ModelFiles.ReadModelType(dir.Path));
        var written = JsonNode.Parse(File.ReadAllText(dir.File("config.json")))!;
        Assert.Equal("Qwen3ForCausalLM", (string)written["architectures"]![0]!);
        Assert.Equal(16, (int)written["head_dim"]!);
    }

    [Fact]
    public void LoadOfAFolderWithoutConfigNamesThePath()
    {
        using var dir = new TempDir();
        var e = Assert.Throws<ModelFormatException>(() => LlamaConfig.Load(dir.Path));
        Assert.Contains(dir.File("config.json"), e.Message);
    }

    const string Minimal = """{"model_type": "llama", "vocab_size": 50, "max_position_embeddings": 16, "hidden_size": 24, "intermediate_size": 40, "num_hidden_layers": 2, "num_attention_heads": 3""";

    [Fact]
    public void AbsentOptionalFieldsTakeTransformersDefaults()
    {
        var c = LlamaConfig.FromHuggingFaceJson(Minimal + "}");
        // LlamaConfig's defaults: kv heads = heads, head_dim = hidden / heads, eps 1e-6, theta 10000, untied, std 0.02.
        Assert.Equal(new LlamaConfig("llama", 50, 16, 2, 3, 3, 8, 24, 40, 1e-6f, 10000, TiedHead: false, InitStd: 0.02f), c);
        Assert.Equal(c, LlamaConfig.FromHuggingFaceJson(Minimal + """, "head_dim": null, "num_key_value_heads": null, "rope_scaling": null}"""));
        // Qwen3Config's own head_dim default is 128, not hidden / heads.
        Assert.Equal(128, LlamaConfig.FromHuggingFaceJson(Minimal.Replace("\"llama\"", "\"qwen3\"") + "}").HeadSize);
        // Qwen2 always has q/k/v biases; its config has no key for them.
        Assert.True(LlamaConfig.FromHuggingFaceJson(Minimal.Replace("\"llama\"", "\"qwen2\"") + """, "attention_bias": false}""").QkvBias);
    }

    [Fact]
    public void PlainRopeSpellingsAreAccepted()
    {
        Assert.Equal(10000, LlamaConfig.FromHuggingFaceJson(Minimal + """, "rope_scaling": {"rope_type": "default"}}""").RopeTheta);
        Assert.Equal(10000, LlamaConfig.FromHuggingFaceJson(Minimal + """, "rope_scaling": {"type": "default", "factor": 1.0}}""").RopeTheta);
        // transformers 5 writes the base into rope_parameters.
        Assert.Equal(1e6, LlamaConfig.FromHuggingFaceJson(Minimal + """, "rope_parameters": {"rope_theta": 1000000, "rope_type": "default"}}""").RopeTheta);
        Assert.Equal(5e5, LlamaConfig.FromHuggingFaceJson(Minimal + """, "rope_theta": 500000.0, "hidden_act": "swish", "sliding_window": 4096, "use_sliding_window": false, "layer_types": ["full_attention", "full_attention"]}""").RopeTheta);
    }

    [Fact]
    public void Llama3ScalingSpellingsAreAccepted()
    {
        var expected = new RopeScaling("llama3", 8, 1, 4, 16);
        const string keys = "\"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 16";
        Assert.Equal(expected, LlamaConfig.FromHuggingFaceJson(Minimal + ", \"rope_scaling\": {\"rope_type\": \"llama3\", " + keys + "}}").RopeScaling);
        // Older configs spell the type key "type".
        Assert.Equal(expected, LlamaConfig.FromHuggingFaceJson(Minimal + ", \"rope_scaling\": {\"type\": \"llama3\", " + keys + "}}").RopeScaling);
        // Integers where transformers expects floats (it only warns).
        Assert.Equal(expected, LlamaConfig.FromHuggingFaceJson(Minimal + """, "rope_scaling": {"rope_type": "llama3", "factor": 8, "low_freq_factor": 1, "high_freq_factor": 4, "original_max_position_embeddings": 16}}""").RopeScaling);
        // transformers 5: type, base and scaling together in rope_parameters (also next to a null or default rope_scaling).
        var t5 = LlamaConfig.FromHuggingFaceJson(Minimal + ", \"rope_parameters\": {\"rope_type\": \"llama3\", \"rope_theta\": 500000.0, " + keys + "}}");
        Assert.Equal((expected, 500000.0), (t5.RopeScaling, t5.RopeTheta));
        Assert.Equal(expected, LlamaConfig.FromHuggingFaceJson(Minimal + ", \"rope_scaling\": null, \"rope_parameters\": {\"rope_type\": \"llama3\", " + keys + "}}").RopeScaling);
        Assert.Equal(expected, LlamaConfig.FromHuggingFaceJson(Minimal + ", \"rope_scaling\": {\"rope_type\": \"llama3\", " + keys + "}, \"rope_parameters\": {\"rope_type\": \"llama3\", " + keys + "}}").RopeScaling);
        // No scaling at all is null, not a scaling of factor 1.
        Assert.Null(LlamaConfig.FromHuggingFaceJson(Minimal + """, "rope_scaling": {"rope_type": "default"}}""").RopeScaling);
    }

    // ------------------------------------------------------------ every error

    static ModelFormatException Bad(string json) =>
        Assert.Throws<ModelFormatException>(() => LlamaConfig.FromHuggingFaceJson(json, "m/config.json"));

    static void BadNaming(string json, params string[] parts)
    {
        var e = Bad(json);
        Assert.Contains("m/config.json", e.Message);
        foreach (var part in parts) Assert.Contains(part, e.Message);
    }

    [Theory]
    [InlineData("linear"), InlineData("yarn"), InlineData("dynamic"), InlineData("longrope"), InlineData("ntk")]
    public void RopeScalingIsRejectedNamingItsType(string kind)
    {
        BadNaming(Minimal + ", \"rope_scaling\": {\"rope_type\": \"" + kind + "\", \"factor\": 8.0}}", "rope_scaling", $"'{kind}'");
        BadNaming(Minimal + ", \"rope_scaling\": {\"type\": \"" + kind + "\", \"factor\": 8.0}}", "rope_scaling", $"'{kind}'");
        BadNaming(Minimal + ", \"rope_parameters\": {\"rope_type\": \"" + kind + "\", \"rope_theta\": 10000}}", "rope_parameters", $"'{kind}'");
    }

    [Fact]
    public void MalformedRopeScalingIsRejected()
    {
        BadNaming(Minimal + """, "rope_scaling": {"factor": 8.0}}""", "rope_scaling", "no rope_type");
        BadNaming(Minimal + """, "rope_scaling": 2}""", "rope_scaling", "null or an object");
    }

    [Fact]
    public void Llama3ScalingWithMissingOrBadValuesIsRejectedNamingTheKey()
    {
        const string full = "\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 16";
        string With(string scaling) => Minimal + ", \"rope_scaling\": {" + scaling + "}}";
        foreach (var key in new[] { "factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings" })
        {
            var without = string.Join(", ", full.Split(", ").Where(kv => !kv.StartsWith($"\"{key}\"", StringComparison.Ordinal)));
            BadNaming(With(without), "rope_scaling", $"'{key}'", "llama3");
        }
        BadNaming(With(full.Replace("8.0", "0.5")), "rope_scaling.factor", ">= 1", "0.5");
        BadNaming(With(full.Replace("\"high_freq_factor\": 4.0", "\"high_freq_factor\": 1.0")), "rope_scaling.high_freq_factor", "greater than");
        BadNaming(With(full.Replace("\"low_freq_factor\": 1.0", "\"low_freq_factor\": 0")), "rope_scaling.low_freq_factor", "positive");
        BadNaming(With(full.Replace(": 16", ": 0")), "rope_scaling.original_max_position_embeddings", "at least 1");
        BadNaming(With(full.Replace(": 16", ": 16.5")), "original_max_position_embeddings", "integer");
        BadNaming(With(full.Replace("8.0", "\"8\"")), "factor", "number");
        BadNaming(With(full).Replace("}}", "}, \"rope_parameters\": {" + full.Replace("8.0", "4.0") + "}}"), "rope_scaling", "rope_parameters", "disagree");
    }

    [Fact]
    public void UnsupportedArchitectureFeaturesAreRejectedNamingTheField()
    {
        BadNaming(Minimal + """, "hidden_act": "gelu"}""", "hidden_act", "'gelu'", "silu");
        BadNaming(Minimal + """, "attention_bias": true}""", "attention_bias", "o_proj");
        BadNaming(Minimal.Replace("\"llama\"", "\"qwen3\"") + """, "attention_bias": true}""", "attention_bias", "o_proj");
        BadNaming(Minimal + """, "mlp_bias": true}""", "mlp_bias");
        BadNaming(Minimal.Replace("\"llama\"", "\"qwen2\"") + """, "use_sliding_window": true, "sliding_window": 4096}""", "use_sliding_window");
        BadNaming(Minimal + """, "layer_types": ["full_attention", "sliding_attention"]}""", "layer_types", "sliding_attention");
    }

    [Fact]
    public void WrongModelTypesAreRejectedListingTheSupportedOnes()
    {
        BadNaming(Minimal.Replace("\"llama\"", "\"mistral\"") + "}", "'mistral'", "llama, qwen2, qwen3");
        BadNaming(Minimal.Replace("\"llama\"", "\"gpt2\"") + "}", "'gpt2'", "Gpt2Config");
        BadNaming(Minimal.Replace("\"model_type\": \"llama\", ", "") + "}", "model_type", "missing");
    }

    [Fact]
    public void MissingOrMistypedFieldsAreNamed()
    {
        BadNaming(Minimal.Replace("\"vocab_size\": 50, ", "") + "}", "vocab_size", "missing");
        BadNaming(Minimal.Replace("\"hidden_size\": 24", "\"hidden_size\": \"24\"") + "}", "hidden_size", "integer");
        BadNaming(Minimal + """, "num_key_value_heads": 1.5}""", "num_key_value_heads", "integer");
        BadNaming(Minimal + """, "rms_norm_eps": "small"}""", "rms_norm_eps", "number");
        BadNaming(Minimal + """, "tie_word_embeddings": 1}""", "tie_word_embeddings", "true or false");
        BadNaming("{not json", "not valid JSON");
        BadNaming("[1, 2]", "JSON object");
    }

    [Fact]
    public void ShapeRulesFailNamingTheHuggingFaceField()
    {
        BadNaming(Minimal + """, "num_key_value_heads": 2}""", "num_key_value_heads = 2", "num_attention_heads = 3");
        BadNaming(Minimal + """, "head_dim": 7}""", "head_dim", "even");
        BadNaming(Minimal.Replace("\"hidden_size\": 24", "\"hidden_size\": 25") + "}", "hidden_size = 25", "not divisible", "head_dim");
        BadNaming(Minimal + """, "rms_norm_eps": 0}""", "rms_norm_eps");
        BadNaming(Minimal + """, "rope_theta": -1}""", "rope_theta");
        BadNaming(Minimal.Replace("\"vocab_size\": 50", "\"vocab_size\": 1") + "}", "vocab_size");
    }

    [Fact]
    public void ValidateNamesTheFieldAndTheRule()
    {
        var ok = LlamaConfig.Preset("llama-tiny");
        void Fails(LlamaConfig c, params string[] parts)
        {
            var e = Assert.Throws<ArgumentException>(() => c.Validate());
            foreach (var part in parts) Assert.Contains(part, e.Message);
        }
        Fails(ok with { ModelType = "mistral" }, "ModelType", "model_type", "mistral");
        Fails(ok with { KvHeads = 3 }, "Heads", "multiple of KvHeads");
        Fails(ok with { KvHeads = 0 }, "KvHeads", "num_key_value_heads");
        Fails(ok with { HeadSize = 9 }, "HeadSize", "head_dim", "even");
        Fails(ok with { Intermediate = 0 }, "Intermediate", "intermediate_size");
        Fails(ok with { MaxT = 0 }, "MaxT", "max_position_embeddings");
        Fails(ok with { Layers = 0 }, "Layers", "num_hidden_layers");
        Fails(ok with { Channels = 0 }, "Channels", "hidden_size");
        Fails(ok with { RmsNormEps = float.NaN }, "RmsNormEps");
        Fails(ok with { RopeTheta = double.PositiveInfinity }, "RopeTheta");
        Fails(ok with { InitStd = 0 }, "InitStd");
        var llama3 = new RopeScaling("llama3", 8, 1, 4, 16);
        var scaled = ok with { RopeScaling = llama3 };
        Assert.Same(scaled, scaled.Validate());
        Fails(ok with { RopeScaling = llama3 with { Type = "yarn" } }, "RopeScaling.Type", "'yarn'", "llama3");
        Fails(ok with { RopeScaling = llama3 with { Factor = double.NaN } }, "RopeScaling.Factor", "factor");
        Fails(ok with { RopeScaling = llama3 with { LowFreqFactor = -1 } }, "RopeScaling.LowFreqFactor", "low_freq_factor");
        Fails(ok with { RopeScaling = llama3 with { HighFreqFactor = 1 } }, "RopeScaling.HighFreqFactor", "high_freq_factor");
        Fails(ok with { RopeScaling = llama3 with { OriginalMaxT = 0 } }, "RopeScaling.OriginalMaxT", "original_max_position_embeddings");
        Fails(ok with { QkvBias = true }, "QkvBias", "llama");
        Fails(LlamaConfig.Preset("qwen2-tiny") with { QkvBias = false }, "QkvBias", "qwen2");
        Fails(LlamaConfig.Preset("qwen3-tiny") with { QkNorm = false }, "QkNorm", "qwen3");
        Fails(ok with { QkNorm = true }, "QkNorm");
        Fails(ok with { VocabSize = 1_000_000, Channels = 4096, Heads = 32, KvHeads = 8, HeadSize = 128 }, "VocabSize * Channels");
        Fails(ok with { VocabSize = 1000, Channels = 8192, Intermediate = 28672, Layers = 80, Heads = 64, KvHeads = 8, HeadSize = 128 }, "parameters");
    }
}
