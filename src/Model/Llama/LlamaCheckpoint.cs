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
    /// How Hugging Face tensors map onto the flat layout, for strict loading (see <see cref="FileWeights"/>): a tensor
    /// this architecture does not have (e.g. an o_proj bias) fails rather than being ignored; rotary buffers are
    /// skipped; a tied model accepts an lm_head.weight equal to the embedding.
    /// </summary>
    internal static FileWeights FileWeights(LlamaLayout layout)
        => new(layout, layout.Config, name => name, IsIgnored, layout.Config.TiedHead ? "model.embed_tokens.weight" : null);

    /// <summary>Buffers some exports carry that are not parameters (precomputed rotary frequencies).</summary>
    static bool IsIgnored(string name) => name.EndsWith(".rotary_emb.inv_freq", StringComparison.Ordinal);
}
