namespace ArcherIlgpu.Model.Gpt2;

/// <summary>
/// GPT-2's tensors: Hugging Face's names and order, this project's shapes (matmul weights [OC, K];
/// Hugging Face's Conv1D stores them [K, OC], hence TransposedInFile).
/// </summary>
public sealed class ParameterLayout(Gpt2Config config) : ParameterTable(Entries(config.Validate()))
{
    public Gpt2Config Config { get; } = config;

    /// <summary>GPT-2's tensors in Hugging Face order, with this project's shapes.</summary>
    public static List<(string Name, int[] Shape, ParameterKind Kind)> NamesAndShapes(Gpt2Config c)
    {
        int C = c.Channels;
        var list = new List<(string, int[], ParameterKind)>
        {
            ("wte.weight", [c.VocabSize, C], ParameterKind.Embedding),
            ("wpe.weight", [c.MaxT, C], ParameterKind.Embedding),
        };
        for (int l = 0; l < c.Layers; l++)
        {
            string p = $"h.{l}.";
            list.Add((p + "ln_1.weight", [C], ParameterKind.NormWeight));
            list.Add((p + "ln_1.bias", [C], ParameterKind.NormBias));
            list.Add((p + "attn.c_attn.weight", [3 * C, C], ParameterKind.MatMulWeight));
            list.Add((p + "attn.c_attn.bias", [3 * C], ParameterKind.Bias));
            list.Add((p + "attn.c_proj.weight", [C, C], ParameterKind.ResidualProjection));
            list.Add((p + "attn.c_proj.bias", [C], ParameterKind.Bias));
            list.Add((p + "ln_2.weight", [C], ParameterKind.NormWeight));
            list.Add((p + "ln_2.bias", [C], ParameterKind.NormBias));
            list.Add((p + "mlp.c_fc.weight", [4 * C, C], ParameterKind.MatMulWeight));
            list.Add((p + "mlp.c_fc.bias", [4 * C], ParameterKind.Bias));
            list.Add((p + "mlp.c_proj.weight", [C, 4 * C], ParameterKind.ResidualProjection));
            list.Add((p + "mlp.c_proj.bias", [C], ParameterKind.Bias));
        }
        list.Add(("ln_f.weight", [C], ParameterKind.NormWeight));
        list.Add(("ln_f.bias", [C], ParameterKind.NormBias));
        return list;
    }

    static List<ParameterSpec> Entries(Gpt2Config c) => NamesAndShapes(c).Select(e =>
        new ParameterSpec(e.Name, e.Shape, 0, e.Kind,
            TransposedInFile: e.Kind is ParameterKind.MatMulWeight or ParameterKind.ResidualProjection)).ToList();

    /// <summary>
    /// GPT-2 initialisation: matmul weights and embeddings N(0, std), residual projections
    /// N(0, std / sqrt(2L)) (GPT-2 paper: keeps the residual stream's variance from growing with depth),
    /// biases 0, LayerNorm weights 1.
    /// </summary>
    public float[] Initialize(int seed) => Initialize(seed, Config.InitStd, Config.InitStd / Math.Sqrt(2.0 * Config.Layers));
}
