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
    /// How Hugging Face GPT-2 weights map onto this project's flat layout, for strict loading (see <see cref="FileWeights"/>):
    /// names with or without the "transformer." prefix, attention-mask buffers skipped, a tied "lm_head.weight"
    /// (absent, or equal to wte).
    /// </summary>
    internal static FileWeights FileWeights(ParameterLayout layout)
        => new(layout, layout.Config, WithoutPrefix, IsIgnoredBuffer, TiedEmbedding: "wte.weight");

    static string WithoutPrefix(string name) => name.StartsWith("transformer.", StringComparison.Ordinal) ? name["transformer.".Length..] : name;
}
