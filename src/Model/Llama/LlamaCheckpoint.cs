using ArcherIlgpu.Model.IO;

namespace ArcherIlgpu.Model.Llama;

/// <summary>
/// The Llama family's tensors in the Hugging Face format: the names of modeling_llama / qwen2 / qwen3,
/// nn.Linear weights [out, in] (this project's layout, so nothing is transposed), no lm_head.weight
/// when the head is tied.
/// </summary>
public static class LlamaCheckpoint
{
    /// <summary>The flat parameters as Hugging Face tensors, in Hugging Face order.</summary>
    public static List<NamedTensor> ToHuggingFace(LlamaLayout layout, float[] flat)
        => layout.FileOrder.Select(s => new NamedTensor(s.Name, s.FileShape, flat.AsSpan((int)s.Offset, (int)s.Length).ToArray())).ToList();

    /// <summary>
    /// Hugging Face tensors into the flat layout. A missing or mis-shaped tensor fails naming it and the
    /// expected shape; so does a tensor this architecture does not have (e.g. an o_proj bias), rather
    /// than being ignored. A tied model accepts an lm_head.weight equal to the embedding.
    /// </summary>
    public static float[] FromHuggingFace(LlamaLayout layout, IReadOnlyDictionary<string, NamedTensor> tensors, string source)
    {
        var flat = new float[layout.TotalLength];
        foreach (var spec in layout.Specs)
        {
            if (!tensors.TryGetValue(spec.Name, out var t))
                throw new ModelFormatException($"{source}: tensor '{spec.Name}' is missing; expected shape {spec.ShapeText} for {layout.Config}");
            if (!t.Shape.SequenceEqual(spec.FileShape))
                throw new ModelFormatException($"{source}: tensor '{spec.Name}' has shape [{string.Join(", ", t.Shape)}], expected {spec.ShapeText} for {layout.Config}");
            t.Data.CopyTo(flat.AsSpan((int)spec.Offset, (int)spec.Length));
        }
        foreach (var (name, t) in tensors)
        {
            if (layout.Contains(name) || IsIgnored(name)) continue;
            if (name == "lm_head.weight" && layout.Config.TiedHead)
            {
                var embed = tensors["model.embed_tokens.weight"];
                if (t.Shape.SequenceEqual(embed.Shape) && t.Data.AsSpan().SequenceEqual(embed.Data)) continue;
                throw new ModelFormatException($"{source}: 'lm_head.weight' differs from 'model.embed_tokens.weight' but config.json says tie_word_embeddings = true");
            }
            throw new ModelFormatException($"{source}: tensor '{name}' is not part of a {layout.Config.ModelType} model with this config.json (unsupported architecture variant?)");
        }
        return flat;
    }

    /// <summary>Buffers some exports carry that are not parameters (precomputed rotary frequencies).</summary>
    static bool IsIgnored(string name) => name.EndsWith(".rotary_emb.inv_freq", StringComparison.Ordinal);
}
