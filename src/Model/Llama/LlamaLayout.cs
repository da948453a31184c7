namespace ArcherIlgpu.Model.Llama;

/// <summary>
/// The Llama-family tensors: Hugging Face's names and order (nn.Linear weights are [out, in], which is
/// already this project's [OC, K], so nothing is transposed in files). The q, k and v projections (and
/// their biases) sit next to each other, as do gate and up, so each group is one matrix for one matmul.
/// </summary>
public sealed class LlamaLayout(LlamaConfig config) : ParameterTable(Entries(config.Validate()))
{
    public LlamaConfig Config { get; } = config;

    public static string Prefix(int layer) => $"model.layers.{layer}.";

    static List<ParameterSpec> Entries(LlamaConfig c)
    {
        int C = c.Channels, D = c.HeadSize, I = c.Intermediate;
        var list = new List<ParameterSpec>();
        void Add(string name, int[] shape, ParameterKind kind) => list.Add(new ParameterSpec(name, shape, 0, kind));
        Add("model.embed_tokens.weight", [c.VocabSize, C], ParameterKind.Embedding);
        for (int l = 0; l < c.Layers; l++)
        {
            string p = Prefix(l);
            Add(p + "input_layernorm.weight", [C], ParameterKind.NormWeight);
            Add(p + "self_attn.q_proj.weight", [c.Heads * D, C], ParameterKind.MatMulWeight);
            Add(p + "self_attn.k_proj.weight", [c.KvHeads * D, C], ParameterKind.MatMulWeight);
            Add(p + "self_attn.v_proj.weight", [c.KvHeads * D, C], ParameterKind.MatMulWeight);
            if (c.QkvBias)
            {
                Add(p + "self_attn.q_proj.bias", [c.Heads * D], ParameterKind.Bias);
                Add(p + "self_attn.k_proj.bias", [c.KvHeads * D], ParameterKind.Bias);
                Add(p + "self_attn.v_proj.bias", [c.KvHeads * D], ParameterKind.Bias);
            }
            if (c.QkNorm)
            {
                Add(p + "self_attn.q_norm.weight", [D], ParameterKind.NormWeight);
                Add(p + "self_attn.k_norm.weight", [D], ParameterKind.NormWeight);
            }
            Add(p + "self_attn.o_proj.weight", [C, c.Heads * D], ParameterKind.MatMulWeight);
            Add(p + "post_attention_layernorm.weight", [C], ParameterKind.NormWeight);
            Add(p + "mlp.gate_proj.weight", [I, C], ParameterKind.MatMulWeight);
            Add(p + "mlp.up_proj.weight", [I, C], ParameterKind.MatMulWeight);
            Add(p + "mlp.down_proj.weight", [C, I], ParameterKind.MatMulWeight);
        }
        Add("model.norm.weight", [C], ParameterKind.NormWeight);
        if (!c.TiedHead) Add("lm_head.weight", [c.VocabSize, C], ParameterKind.MatMulWeight);
        return list;
    }

    /// <summary>Hugging Face's initialisation: every matmul weight and the embedding N(0, initializer_range), norm weights 1, biases 0.</summary>
    public float[] Initialize(int seed) => Initialize(seed, Config.InitStd, Config.InitStd);

    /// <summary>
    /// The span of the consecutive tensors <paramref name="names"/> as one (offset, length); throws if
    /// anything sits between them (the fused matmuls rely on it).
    /// </summary>
    public (long Offset, long Length) Fused(params string[] names)
    {
        long offset = this[names[0]].Offset, end = offset;
        foreach (var name in names)
        {
            var s = this[name];
            if (s.Offset != end) throw new InvalidOperationException($"'{name}' does not follow '{names[0]}' in the flat layout; the fused matmul needs them adjacent");
            end += s.Length;
        }
        return (offset, end - offset);
    }
}
