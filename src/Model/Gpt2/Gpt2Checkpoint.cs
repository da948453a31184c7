using ArcherIlgpu.Model.IO;

namespace ArcherIlgpu.Model.Gpt2;

/// <summary>
/// GPT-2's tensors in the Hugging Face format: GPT-2's names and Conv1D weights stored [in, out], so
/// transformers' GPT2LMHeadModel loads the folder that <see cref="Checkpoint"/> writes.
/// </summary>
public static class Gpt2Checkpoint
{
    /// <summary>Names in Hugging Face files that are not parameters: the causal-mask buffers of old exports.</summary>
    static bool IsIgnoredBuffer(string name) => name.EndsWith(".attn.bias", StringComparison.Ordinal) || name.EndsWith(".attn.masked_bias", StringComparison.Ordinal);

    /// <summary>The flat parameters as Hugging Face tensors (Conv1D weights transposed to [in, out]).</summary>
    public static List<NamedTensor> ToHuggingFace(ParameterLayout layout, float[] flat)
    {
        var list = new List<NamedTensor>();
        foreach (var spec in layout.FileOrder)
        {
            var name = spec.Name;
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

    /// <summary>
    /// Reads Hugging Face GPT-2 weights into this project's flat layout. Accepts names with or without
    /// the "transformer." prefix, ignores attention-mask buffers, and accepts a tied "lm_head.weight"
    /// (absent, or equal to wte). A missing or mis-shaped tensor fails naming it and the expected shape.
    /// </summary>
    public static float[] FromHuggingFace(ParameterLayout layout, IReadOnlyDictionary<string, NamedTensor> tensors, string path)
    {
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
