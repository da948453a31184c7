using System.Globalization;
using ArcherIlgpu.Kernels;
using ArcherIlgpu.Model.IO;
using ArcherIlgpu.Model.Training;

namespace ArcherIlgpu.Model.Gpt2;

/// <summary>
/// GPT-2 checkpoints in the Hugging Face format: <c>config.json</c> plus <c>model.safetensors</c> with
/// GPT-2's tensor names and Conv1D weights stored [in, out], so transformers' GPT2LMHeadModel loads
/// the folder. Optimizer moments (this project's flat layout) go to <c>optimizer.safetensors</c>.
/// Every file is written to a temporary name and renamed, so a crash never leaves a half-written one.
/// </summary>
public static class Gpt2Checkpoint
{
    public const string WeightsFile = "model.safetensors";
    public const string OptimizerFile = "optimizer.safetensors";

    /// <summary>Names in Hugging Face files that are not parameters: the causal-mask buffers of old exports.</summary>
    static bool IsIgnoredBuffer(string name) => name.EndsWith(".attn.bias", StringComparison.Ordinal) || name.EndsWith(".attn.masked_bias", StringComparison.Ordinal);

    // ================================================================ save

    public static void Save(Gpt2Model model, string dir, AdamWOptimizer? optimizer = null, IReadOnlyDictionary<string, string>? metadata = null)
    {
        Directory.CreateDirectory(dir);
        var tensors = ToHuggingFace(model.Layout, model.DownloadParameters());
        var meta = new Dictionary<string, string> { ["format"] = "pt" };
        if (metadata is not null) foreach (var (k, v) in metadata) meta[k] = v;
        SafeTensors.Write(Path.Combine(dir, WeightsFile), tensors, meta);
        if (optimizer is not null)
        {
            long n = model.Layout.TotalLength;
            SafeTensors.Write(Path.Combine(dir, OptimizerFile),
                [new NamedTensor("adamw.m", [n], optimizer.DownloadM()), new NamedTensor("adamw.v", [n], optimizer.DownloadV())],
                new Dictionary<string, string>
                {
                    ["step"] = optimizer.Step.ToString(CultureInfo.InvariantCulture),
                    ["skipped_steps"] = optimizer.SkippedSteps.ToString(CultureInfo.InvariantCulture),
                    ["layout"] = model.Config.ToString(),
                });
        }
        // config.json last: a folder with a config always has complete weights beside it.
        model.Config.Save(dir);
    }

    /// <summary>The flat parameters as Hugging Face tensors (Conv1D weights transposed to [in, out]).</summary>
    public static List<NamedTensor> ToHuggingFace(ParameterLayout layout, float[] flat)
    {
        var list = new List<NamedTensor>();
        foreach (var (name, _, _) in ParameterLayout.NamesAndShapes(layout.Config))
        {
            var spec = layout[name];
            var data = flat.AsSpan((int)spec.Offset, (int)spec.Length);
            list.Add(new NamedTensor(name, spec.FileShape, spec.TransposedInFile ? Transpose(data, spec.Shape[0], spec.Shape[1]) : data.ToArray()));
        }
        return list;
    }

    /// <summary>[rows, cols] -> [cols, rows].</summary>
    static float[] Transpose(ReadOnlySpan<float> src, int rows, int cols)
    {
        var dst = new float[src.Length];
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++) dst[(long)c * rows + r] = src[r * cols + c];
        return dst;
    }

    // ================================================================ load

    /// <summary>Loads a model folder (config.json + model.safetensors) onto <paramref name="backend"/>.</summary>
    public static Gpt2Model Load(Backend backend, string dir)
    {
        var config = Gpt2Config.Load(dir);
        var layout = new ParameterLayout(config);
        return new Gpt2Model(backend, config, ReadParameters(layout, Path.Combine(dir, WeightsFile)));
    }

    /// <summary>Restores optimizer moments and step counts saved by <see cref="Save"/>; false if the folder has none.</summary>
    public static bool LoadOptimizer(AdamWOptimizer optimizer, Gpt2Model model, string dir)
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

    /// <summary>
    /// Reads Hugging Face GPT-2 weights into this project's flat layout. Accepts names with or without
    /// the "transformer." prefix, ignores attention-mask buffers, and accepts a tied "lm_head.weight"
    /// (absent, or equal to wte). A missing or mis-shaped tensor fails naming it and the expected shape.
    /// </summary>
    public static float[] ReadParameters(ParameterLayout layout, string path)
    {
        if (!File.Exists(path)) throw new ModelFormatException($"{path}: file not found");
        var tensors = SafeTensors.Read(path);
        var byName = new Dictionary<string, NamedTensor>();
        NamedTensor? lmHead = null;
        foreach (var (key, t) in tensors)
        {
            var name = key.StartsWith("transformer.", StringComparison.Ordinal) ? key["transformer.".Length..] : key;
            if (name == "lm_head.weight") { lmHead = t; continue; }
            if (IsIgnoredBuffer(name)) continue;
            byName[name] = t;
        }

        var flat = new float[layout.TotalLength];
        foreach (var spec in layout.Specs)
        {
            string expected = "[" + string.Join(", ", spec.FileShape) + "]" + (spec.TransposedInFile ? " (Conv1D layout [in, out])" : "");
            if (!byName.TryGetValue(spec.Name, out var t))
                throw new ModelFormatException($"{path}: tensor '{spec.Name}' is missing; expected shape {expected} for {layout.Config}");
            if (!t.Shape.SequenceEqual(spec.FileShape) || t.Data.LongLength != spec.Length)
                throw new ModelFormatException($"{path}: tensor '{spec.Name}' has shape [{string.Join(", ", t.Shape)}], expected {expected} for {layout.Config}");
            var dst = flat.AsSpan((int)spec.Offset, (int)spec.Length);
            if (spec.TransposedInFile) Transpose(t.Data, spec.Shape[1], spec.Shape[0]).CopyTo(dst);
            else t.Data.CopyTo(dst);
        }

        if (lmHead is not null)
        {
            var wte = byName["wte.weight"];
            if (!lmHead.Shape.SequenceEqual(wte.Shape) || !lmHead.Data.AsSpan().SequenceEqual(wte.Data))
                throw new ModelFormatException($"{path}: 'lm_head.weight' differs from 'wte.weight'; only GPT-2 with the head tied to the token embedding is supported");
        }
        return flat;
    }
}
