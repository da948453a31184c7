using ArcherIlgpu.Kernels;
using ArcherIlgpu.Model.Gpt2;
using ArcherIlgpu.Model.IO;
using ArcherIlgpu.Model.Llama;

namespace ArcherIlgpu.Model;

/// <summary>
/// The model families, by config type: presets, creation, and each family's Hugging Face file layout.
/// Adding a family means one case in each switch below.
/// </summary>
public static class Models
{
    /// <summary>Every preset name, of every family.</summary>
    public static string[] PresetNames => [.. Gpt2Config.PresetNames, .. LlamaConfig.PresetNames];

    /// <summary>A preset's config; unknown names fail listing the valid ones.</summary>
    public static IModelConfig Preset(string name)
    {
        var key = name.Trim().ToLowerInvariant();
        if (Gpt2Config.PresetNames.Contains(key)) return Gpt2Config.Preset(key);
        if (LlamaConfig.PresetNames.Contains(key)) return LlamaConfig.Preset(key);
        throw new ArgumentException($"unknown model preset '{name}'; valid presets: {string.Join(", ", PresetNames)}", nameof(name));
    }

    /// <summary>Reads <c>config.json</c> of a model folder, choosing the family by its model_type.</summary>
    public static IModelConfig LoadConfig(string modelDir)
    {
        var path = Path.Combine(modelDir, "config.json");
        if (!File.Exists(path)) throw new ModelFormatException($"{path}: file not found (a model folder needs config.json)");
        var json = File.ReadAllText(path);
        // ModelTypeFromJson rejects unsupported types, naming the supported ones.
        return ModelFiles.ModelTypeFromJson(json, path) switch
        {
            "gpt2" => Gpt2Config.FromHuggingFaceJson(json, path),
            _ => LlamaConfig.FromHuggingFaceJson(json, path),
        };
    }

    /// <summary>A freshly initialised model of <paramref name="config"/>'s family.</summary>
    public static CausalLm Create(Backend backend, IModelConfig config, int seed) => config switch
    {
        Gpt2Config c => new Gpt2Model(backend, c, seed),
        LlamaConfig c => new LlamaModel(backend, c, seed),
        _ => throw Unknown(config),
    };

    /// <summary>A model with the given flat parameters.</summary>
    public static CausalLm Create(Backend backend, IModelConfig config, float[] parameters) => config switch
    {
        Gpt2Config c => new Gpt2Model(backend, c, parameters),
        LlamaConfig c => new LlamaModel(backend, c, parameters),
        _ => throw Unknown(config),
    };

    /// <summary>The flat parameters as the family's Hugging Face tensors (names, file shapes, file order).</summary>
    public static List<NamedTensor> ToFileTensors(IModelConfig config, float[] flat) => config switch
    {
        Gpt2Config c => Gpt2Checkpoint.ToHuggingFace(new ParameterLayout(c), flat),
        LlamaConfig c => LlamaCheckpoint.ToHuggingFace(new LlamaLayout(c), flat),
        _ => throw Unknown(config),
    };

    /// <summary>The family's Hugging Face tensors into the flat layout, strictly (<see cref="FileWeights"/>);
    /// <paramref name="source"/> names the file in errors.</summary>
    public static float[] FromFileTensors(IModelConfig config, IReadOnlyDictionary<string, NamedTensor> tensors, string source, LoadOptions? options = null)
        => FileWeightsOf(config).Gather(tensors, source, options ?? LoadOptions.Strict);

    /// <summary>Checks the header entries of a weights file (names, dtypes, shapes) against the family's layout, before any data is read.</summary>
    public static void CheckFileTensors(IModelConfig config, IEnumerable<TensorInfo> index, string source, LoadOptions? options = null)
        => FileWeightsOf(config).Match(index.Select(t => (t.Name, t.Dtype, t.Shape)), source, options ?? LoadOptions.Strict);

    /// <summary>The family's file names and layout (<see cref="FileWeights"/>).</summary>
    static FileWeights FileWeightsOf(IModelConfig config) => config switch
    {
        Gpt2Config c => Gpt2Checkpoint.FileWeights(new ParameterLayout(c)),
        LlamaConfig c => LlamaCheckpoint.FileWeights(new LlamaLayout(c)),
        _ => throw Unknown(config),
    };

    static ArgumentException Unknown(IModelConfig config) => new($"no model family for config type {config.GetType().Name}");
}
