namespace ArcherIlgpu.Model.IO;

/// <summary>What kind of model a Hugging Face style folder holds, read from its <c>config.json</c>.</summary>
public static class ModelFiles
{
    public const string ConfigFile = "config.json";

    /// <summary>The <c>model_type</c> values this project can build: GPT-2 and the Llama family.</summary>
    public static readonly string[] SupportedModelTypes = ["gpt2", "llama", "qwen2", "qwen3"];

    /// <summary>
    /// The folder's <c>model_type</c>: "gpt2", "llama", "qwen2" or "qwen3". A missing file, missing field or
    /// any other type is a <see cref="ModelFormatException"/> that names the file and lists the supported types.
    /// </summary>
    public static string ReadModelType(string modelDir)
    {
        var path = Path.Combine(modelDir, ConfigFile);
        if (!File.Exists(path)) throw new ModelFormatException($"{path}: file not found (a model folder needs {ConfigFile})");
        return ModelTypeFromJson(File.ReadAllText(path), path);
    }

    /// <summary><see cref="ReadModelType"/> on the text of a config.json; <paramref name="source"/> names it in errors.</summary>
    public static string ModelTypeFromJson(string json, string source = ConfigFile)
    {
        var obj = ConfigJson.ParseObject(json, source);
        var type = ConfigJson.OptionalString(obj, "model_type", source)
            ?? throw new ModelFormatException($"{source}: field 'model_type' is missing; supported model types: {Supported}");
        if (!SupportedModelTypes.Contains(type, StringComparer.Ordinal))
            throw new ModelFormatException($"{source}: model_type '{type}' is not supported; supported model types: {Supported}");
        return type;
    }

    static string Supported => string.Join(", ", SupportedModelTypes);
}
