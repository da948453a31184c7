using System.Diagnostics;
using ArcherIlgpu.Kernels;
using ArcherIlgpu.Model.Gpt2;
using ArcherIlgpu.Model.Tests.Gpt2;
using ArcherIlgpu.Model.IO;
using ArcherIlgpu.Model.Llama;
using ArcherIlgpu.Model.Tests.IO;
using Xunit;

namespace ArcherIlgpu.Model.Tests;

/// <summary>
/// A model folder loads only if config.json and the tensors agree exactly. Each case below loaded silently before
/// (and answered garbage); each starts from a golden folder written by transformers (GPT-2: one F32 file; Llama:
/// two BF16 shards), breaks one thing, and expects a one-line <see cref="ModelFormatException"/> naming it.
/// </summary>
public class StrictLoadingTests
{
    static Backend Cpu => ModelBackends.Get("cpu");

    static float[] Parameters(string dir, LoadOptions? options = null)
    {
        using var model = Checkpoint.Load(Cpu, dir, options);
        return model.DownloadParameters();
    }

    static ModelFormatException Refused(string dir, params string[] fragments)
    {
        var e = Assert.Throws<ModelFormatException>(() => Checkpoint.Load(Cpu, dir));
        Assert.DoesNotContain('\n', e.Message);
        foreach (var f in fragments) Assert.Contains(f, e.Message);
        return e;
    }

    [Fact]
    public void Gpt2ConfigWithFewerLayersThanTheFileIsRefused()
    {
        using var tmp = new TempDir();
        var dir = ModelFolderFiles.CopyGolden("gpt2", tmp);
        ModelFolderFiles.EditConfig(dir, c => c["n_layer"] = 1);
        // The file's second block is not part of a 1-layer model: the first of its tensors in name order is named.
        Refused(dir, "model.safetensors", "'h.1.attn.c_attn.bias'", "in layer 1, config.json has 1 layer", "11 more", "--allow-extra-tensors");
    }

    [Fact]
    public void Gpt2ConfigWithMoreLayersThanTheFileIsRefused()
    {
        using var tmp = new TempDir();
        var dir = ModelFolderFiles.CopyGolden("gpt2", tmp);
        ModelFolderFiles.EditConfig(dir, c => c["n_layer"] = 3);
        Refused(dir, "'h.2.", "is missing", "[16]");
    }

    [Theory]
    [InlineData("activation_function", "\"relu\"", "activation_function 'relu' is not supported")]
    [InlineData("activation_function", "\"gelu\"", "activation_function 'gelu' is not supported")]   // the erf form: another function
    [InlineData("scale_attn_weights", "false", "scale_attn_weights is false")]
    [InlineData("scale_attn_by_inverse_layer_idx", "true", "scale_attn_by_inverse_layer_idx is true")]
    [InlineData("add_cross_attention", "true", "add_cross_attention is true")]
    [InlineData("tie_word_embeddings", "false", "tie_word_embeddings is false")]
    [InlineData("n_inner", "32", "n_inner = 32")]
    public void Gpt2KeysThatChangeTheComputationAreRefused(string key, string json, string fragment)
    {
        using var tmp = new TempDir();
        var dir = ModelFolderFiles.CopyGolden("gpt2", tmp);
        ModelFolderFiles.EditConfig(dir, c => c[key] = System.Text.Json.Nodes.JsonNode.Parse(json));
        Refused(dir, "config.json", fragment);
    }

    [Fact]
    public void AConfigKeyGivenTwiceIsRefused()
    {
        using var tmp = new TempDir();
        var dir = ModelFolderFiles.CopyGolden("gpt2", tmp);
        var path = Path.Combine(dir, "config.json");
        // Which of the two would win is a reader's accident; the file must say one thing.
        File.WriteAllText(path, File.ReadAllText(path).Replace("\"n_layer\": 2,", "\"n_layer\": 2, \"n_layer\": 1,"));
        Refused(dir, "config.json", "not valid JSON", "n_layer");
    }

    [Theory]
    [InlineData("activation_function", "\"gelu_pytorch_tanh\"")]
    [InlineData("activation_function", "\"gelu_fast\"")]
    [InlineData("reorder_and_upcast_attn", "true")]   // fp16 precision only; float32 here
    [InlineData("resid_pdrop", "0.1")]                // dropout: training with dropout only
    public void Gpt2KeysThatKeepTheComputationLoadTheSameWeights(string key, string json)
    {
        using var tmp = new TempDir();
        var dir = ModelFolderFiles.CopyGolden("gpt2", tmp);
        var expected = Parameters(dir);
        ModelFolderFiles.EditConfig(dir, c => c[key] = System.Text.Json.Nodes.JsonNode.Parse(json));
        Assert.Equal(expected, Parameters(dir));
    }

    [Theory]
    [InlineData("gpt2"), InlineData("llama")]
    public void ExtraTensorsAreRefusedUnlessAllowed(string type)
    {
        using var tmp = new TempDir();
        var dir = ModelFolderFiles.CopyGolden(type, tmp);
        var expected = Parameters(dir);
        var tensors = SafeTensorsFolder.Read(dir).Values.ToList();
        tensors.Add(new NamedTensor("score.weight", [2, 3], [1, 2, 3, 4, 5, 6]));
        // GPT-2 as one file; Llama re-sharded (the small limit forces several shards), to cover both forms.
        SafeTensorsFolder.Write(dir, tensors, maxShardBytes: type == "gpt2" ? SafeTensorsFolder.DefaultMaxShardBytes : 8000);
        Assert.Equal(type == "llama", File.Exists(Path.Combine(dir, SafeTensorsFolder.IndexFile)));

        Refused(dir, "'score.weight' is not part of a " + (type == "gpt2" ? "gpt2" : "llama") + " model", "--allow-extra-tensors");
        Assert.Equal(expected, Parameters(dir, new LoadOptions(AllowExtraTensors: true)));
    }

    [Fact]
    public void AMismatchIsFoundInTheHeadersBeforeAnyDataIsRead()
    {
        using var tmp = new TempDir();
        var dir = ModelFolderFiles.CopyGolden("gpt2", tmp);
        var tensors = SafeTensorsFolder.Read(dir).Values.ToList();
        tensors.Add(new NamedTensor("score.weight", [4_000_000], new float[4_000_000]));   // 16 MB of data
        SafeTensorsFolder.Write(dir, tensors);
        long before = GC.GetAllocatedBytesForCurrentThread();
        Refused(dir, "'score.weight'");
        // Reading the data would allocate the 16 MB tensor; the headers and config take a few hundred kB.
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 4_000_000, $"{GC.GetAllocatedBytesForCurrentThread() - before} bytes allocated");
    }

    [Fact]
    public void TheSameTensorUnderTwoNamesIsRefused()
    {
        using var tmp = new TempDir();
        var dir = ModelFolderFiles.CopyGolden("gpt2", tmp);
        var tensors = SafeTensorsFolder.Read(dir).Values.ToList();
        var lnf = tensors.Single(t => t.Name == "ln_f.bias");
        tensors.Add(lnf with { Name = "transformer.ln_f.bias" });
        SafeTensorsFolder.Write(dir, tensors);
        Refused(dir, "'ln_f.bias' is there twice", "'transformer.ln_f.bias'");
    }

    [Theory]
    [InlineData("gpt2", "ln_f.bias", "F32", "I32")]
    [InlineData("gpt2", "wpe.weight", "F32", "U32")]
    [InlineData("llama", "model.layers.1.mlp.up_proj.weight", "BF16", "I16")]
    public void WeightsStoredAsIntegersAreRefusedNamingTheDtype(string type, string tensor, string dtype, string found)
    {
        using var tmp = new TempDir();
        var dir = ModelFolderFiles.CopyGolden(type, tmp);
        // Same element width, so the offsets stay right. The entry's dtype comes first in the header: "name":{"dtype":"F32", ...
        string entry = $"\"{tensor}\":{{\"dtype\":\"{dtype}\"";
        ModelFolderFiles.EditHeader(ModelFolderFiles.FileHolding(dir, tensor), entry,
            $"\"{tensor}\":{{\"dtype\":\"{found}\"".PadRight(entry.Length));
        Refused(dir, $"'{tensor}'", $"dtype {found}", "F32, BF16, F16");
    }

    [Theory]
    [InlineData("gpt2", "h.0.mlp.c_fc.weight", 17, float.NaN)]
    [InlineData("gpt2", "wte.weight", 0, float.PositiveInfinity)]
    [InlineData("llama", "model.layers.0.self_attn.k_proj.weight", 5, float.NaN)]
    [InlineData("llama", "lm_head.weight", 60, float.NegativeInfinity)]
    public void NonFiniteWeightsAreRefusedNamingTheTensor(string type, string tensor, int element, float value)
    {
        using var tmp = new TempDir();
        var dir = ModelFolderFiles.CopyGolden(type, tmp);
        // GPT-2's golden file is F32, Llama's BF16 (the top half of the float32's bits).
        byte[] bytes = type == "gpt2" ? BitConverter.GetBytes(value) : BitConverter.GetBytes(BitConverter.SingleToUInt32Bits(value))[2..];
        ModelFolderFiles.PokeElement(ModelFolderFiles.FileHolding(dir, tensor), tensor, element, bytes);
        Refused(dir, $"'{tensor}'", $"element {element}", "finite");
    }

    [Theory]
    [InlineData("gpt2", "n_positions", 2_000_000_000, "n_positions")]
    [InlineData("gpt2", "vocab_size", 2_000_000_000, "vocab_size × n_embd")]
    [InlineData("gpt2", "n_embd", 2_000_000_000, "vocab_size × n_embd")]
    [InlineData("gpt2", "n_layer", 2_000_000_000, "n_layer")]
    [InlineData("llama", "max_position_embeddings", 2_000_000_000, "max_position_embeddings")]
    [InlineData("llama", "vocab_size", 2_000_000_000, "vocab_size × hidden_size")]
    [InlineData("llama", "intermediate_size", 2_000_000_000, "intermediate_size × hidden_size")]
    [InlineData("llama", "num_hidden_layers", 2_000_000_000, "num_hidden_layers")]
    [InlineData("llama", "num_attention_heads", 1_999_999_998, "num_attention_heads")]
    [InlineData("gpt2", "n_positions", 3_000_000_000, "n_positions")]   // beyond int: the JSON read names it
    public void AbsurdSizesAreRefusedNamingTheKeyBeforeAnythingIsAllocated(string type, string key, long value, string fragment)
    {
        using var tmp = new TempDir();
        var dir = ModelFolderFiles.CopyGolden(type, tmp);
        ModelFolderFiles.EditConfig(dir, c => c[key] = value);
        long before = GC.GetAllocatedBytesForCurrentThread();
        var clock = Stopwatch.StartNew();
        var e = Refused(dir, "config.json", fragment);
        // Reading a config and failing takes a few hundred kB; allocating the model would take gigabytes.
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 50_000_000, $"{GC.GetAllocatedBytesForCurrentThread() - before} bytes allocated before: {e.Message}");
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"took {clock.Elapsed}");
    }

    [Fact]
    public void ParameterCountsSaturateInsteadOfOverflowing()
    {
        // Every single tensor fits (4·C² < 2^31), but L · (12C² + 13C) = 1.4e19 is past long: saturates, then fails.
        var config = new Gpt2Config(VocabSize: 2, MaxT: 1, Layers: int.MaxValue, Heads: 1, Channels: 23_000);
        Assert.Equal(long.MaxValue, config.ParameterCount);
        var e = Assert.Throws<ArgumentException>(() => config.Validate());
        Assert.Contains("more than 9.2e18 elements", e.Message);
        Assert.Contains("n_layer", e.Message);

        // Qwen2.5-0.5B by hand (transformers reports 494,032,768 parameters).
        Assert.Equal(494_032_768, LlamaConfig.Preset("qwen2.5-0.5b").ParameterCount);
        // GPT-2 124M: transformers reports 124,439,808.
        Assert.Equal(124_439_808, Gpt2Config.Preset("gpt2").ParameterCount);
    }
}
