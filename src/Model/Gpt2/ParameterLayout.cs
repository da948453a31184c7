namespace ArcherIlgpu.Model.Gpt2;

/// <summary>What a tensor is, which decides its initialisation, weight decay and file layout.</summary>
public enum ParameterKind
{
    /// <summary>A matmul weight stored here as [OC, K]; Hugging Face's Conv1D stores it as [K, OC].</summary>
    MatMulWeight,
    /// <summary>A matmul weight feeding the residual stream (attn.c_proj, mlp.c_proj): init std / sqrt(2L).</summary>
    ResidualProjection,
    Bias,
    NormWeight,
    NormBias,
    Embedding,
}

/// <summary>One named tensor inside the flat parameter buffer.</summary>
/// <param name="Name">Hugging Face GPT-2 name without the "transformer." prefix, e.g. "h.0.attn.c_attn.weight".</param>
/// <param name="Shape">shape in this project's layout (matmul weights [OC, K]).</param>
/// <param name="Offset">first element in the flat buffer.</param>
public sealed record ParameterSpec(string Name, int[] Shape, long Offset, ParameterKind Kind)
{
    public long Length => Shape.Aggregate(1L, (a, b) => a * b);

    /// <summary>True for Conv1D weights, which Hugging Face stores transposed ([in, out]).</summary>
    public bool TransposedInFile => Kind is ParameterKind.MatMulWeight or ParameterKind.ResidualProjection;

    /// <summary>Weight decay applies to 2-D matmul weights only (not embeddings, biases or LayerNorm).</summary>
    public bool Decayed => TransposedInFile;

    /// <summary>The shape as Hugging Face stores it.</summary>
    public long[] FileShape => TransposedInFile ? [Shape[1], Shape[0]] : Array.ConvertAll(Shape, s => (long)s);

    public string ShapeText => "[" + string.Join(", ", Shape) + "]";
}

/// <summary>
/// The explicit (name, shape) list of a GPT-2 model and where each tensor sits in the one flat
/// buffer that parameters, gradients and both AdamW moments share. The 2-D matmul weights come
/// first, so that weight decay is one AdamW call over a prefix [0, DecayedLength) and none over the rest.
/// </summary>
public sealed class ParameterLayout
{
    public Gpt2Config Config { get; }
    public IReadOnlyList<ParameterSpec> Specs { get; }
    public long TotalLength { get; }
    /// <summary>Elements [0, DecayedLength) are the weight-decayed matmul weights.</summary>
    public long DecayedLength { get; }

    readonly Dictionary<string, ParameterSpec> byName;

    public ParameterLayout(Gpt2Config config)
    {
        Config = config.Validate();
        var list = NamesAndShapes(config);
        var specs = new List<ParameterSpec>(list.Count);
        long offset = 0;
        foreach (bool decayed in new[] { true, false })
            foreach (var (name, shape, kind) in list)
            {
                var spec = new ParameterSpec(name, shape, 0, kind);
                if (spec.Decayed != decayed) continue;
                specs.Add(spec with { Offset = offset });
                offset += spec.Length;
                if (decayed) DecayedLength = offset;
            }
        Specs = specs;
        TotalLength = offset;
        byName = specs.ToDictionary(s => s.Name);
    }

    public ParameterSpec this[string name] => byName.TryGetValue(name, out var s) ? s
        : throw new KeyNotFoundException($"no parameter named '{name}'");

    public bool Contains(string name) => byName.ContainsKey(name);

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

    /// <summary>
    /// GPT-2 initialisation with a seeded RNG: matmul weights and embeddings N(0, std), residual
    /// projections N(0, std / sqrt(2L)) (GPT-2 paper: keeps the residual stream's variance from
    /// growing with depth), biases 0, LayerNorm weights 1.
    /// </summary>
    public float[] Initialize(int seed)
    {
        var data = new float[TotalLength];
        var rng = new Random(seed);
        double residualStd = Config.InitStd / Math.Sqrt(2.0 * Config.Layers);
        // Draw in Hugging Face order, not buffer order, so the values do not depend on the layout's grouping.
        foreach (var (name, _, _) in NamesAndShapes(Config))
        {
            var spec = this[name];
            var span = data.AsSpan((int)spec.Offset, (int)spec.Length);
            switch (spec.Kind)
            {
                case ParameterKind.NormWeight: span.Fill(1f); break;
                case ParameterKind.Bias or ParameterKind.NormBias: span.Clear(); break;
                case ParameterKind.ResidualProjection: FillNormal(span, rng, residualStd); break;
                default: FillNormal(span, rng, Config.InitStd); break;
            }
        }
        return data;
    }

    static void FillNormal(Span<float> span, Random rng, double std)
    {
        for (int i = 0; i < span.Length; i++)
        {
            // Box-Muller on (0, 1]: exact reproducibility from the seed on every platform.
            double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
            span[i] = (float)(std * Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
        }
    }
}
