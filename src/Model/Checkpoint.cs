using System.Globalization;
using ArcherIlgpu.Kernels;
using ArcherIlgpu.Model.IO;
using ArcherIlgpu.Model.Training;

namespace ArcherIlgpu.Model;

/// <summary>
/// Model folders in the Hugging Face format, for every family: <c>config.json</c> plus
/// <c>model.safetensors</c> (or shards with <c>model.safetensors.index.json</c>) with the family's tensor
/// names and file layout, so transformers loads the folder. Optimizer moments (this project's flat layout) go to <c>optimizer.safetensors</c>.
/// Every file is written to a temporary name and renamed, so a crash never leaves a half-written one.
/// </summary>
public static class Checkpoint
{
    public const string WeightsFile = "model.safetensors";
    public const string OptimizerFile = "optimizer.safetensors";

    // ================================================================ save

    /// <summary>Writes the model folder (and the optimizer moments); a resumable run writes it inside a checkpoint
    /// folder that is renamed only when complete (the Runs CheckpointStore), so no file needs a step tag.</summary>
    public static void Save(CausalLm model, string dir, AdamWOptimizer? optimizer = null)
    {
        Directory.CreateDirectory(dir);
        var tensors = Models.ToFileTensors(model.Config, model.DownloadParameters());
        var meta = new Dictionary<string, string> { ["format"] = "pt" };
        SafeTensorsFolder.Write(dir, tensors, meta);
        if (optimizer is not null)
        {
            long n = model.Layout.TotalLength;
            var optimizerMeta = new Dictionary<string, string>
            {
                ["step"] = optimizer.Step.ToString(CultureInfo.InvariantCulture),
                ["skipped_steps"] = optimizer.SkippedSteps.ToString(CultureInfo.InvariantCulture),
                ["layout"] = model.Config.ToString()!,
            };
            SafeTensors.Write(Path.Combine(dir, OptimizerFile),
                [new NamedTensor("adamw.m", [n], optimizer.DownloadM()), new NamedTensor("adamw.v", [n], optimizer.DownloadV())],
                optimizerMeta);
        }
        // config.json last: a folder with a config always has complete weights beside it.
        model.Config.Save(dir);
    }

    // ================================================================ load

    /// <summary>Loads a model folder (config.json + weights) onto <paramref name="backend"/>, whatever its family.</summary>
    public static CausalLm Load(Backend backend, string dir)
    {
        var config = Models.LoadConfig(dir);
        if (!SafeTensorsFolder.Exists(dir))
            throw new ModelFormatException($"{Path.Combine(dir, WeightsFile)}: file not found (nor {SafeTensorsFolder.IndexFile} with shards)");
        // Errors name the file that holds the weights (the index, for a sharded folder).
        string source = Path.Combine(dir, File.Exists(Path.Combine(dir, WeightsFile)) ? WeightsFile : SafeTensorsFolder.IndexFile);
        return Models.Create(backend, config, Models.FromFileTensors(config, SafeTensorsFolder.Read(dir), source));
    }

    /// <summary>Reads a weights file into the flat layout of <paramref name="config"/> (the family checks names and shapes).</summary>
    public static float[] ReadParameters(IModelConfig config, string path)
    {
        if (!File.Exists(path)) throw new ModelFormatException($"{path}: file not found");
        return Models.FromFileTensors(config, SafeTensors.Read(path), path);
    }

    /// <summary>Restores optimizer moments and step counts saved by <see cref="Save"/>; false if the folder has none.</summary>
    public static bool LoadOptimizer(AdamWOptimizer optimizer, CausalLm model, string dir)
    {
        var path = Path.Combine(dir, OptimizerFile);
        if (!File.Exists(path)) return false;
        var tensors = SafeTensors.Read(path, out var meta);
        long n = model.Layout.TotalLength;
        float[] Get(string name)
        {
            if (!tensors.TryGetValue(name, out var t)) throw new ModelFormatException($"{path}: tensor '{name}' is missing (expected shape [{n}])");
            if (t.Data.LongLength != n) throw new ModelFormatException($"{path}: tensor '{name}' has {t.Data.LongLength} elements, expected [{n}] for {model.Config}");
            return t.Data;
        }
        int Meta(string key)
        {
            if (meta is null || !meta.TryGetValue(key, out var s) || !int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out var v))
                throw new ModelFormatException($"{path}: metadata '{key}' is missing or not an integer");
            return v;
        }
        optimizer.Restore(Get("adamw.m"), Get("adamw.v"), Meta("step"), Meta("skipped_steps"));
        return true;
    }
}
