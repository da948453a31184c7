namespace ArcherIlgpu.Model;

/// <summary>What a tensor is, which decides its initialisation and weight decay.</summary>
public enum ParameterKind
{
    /// <summary>A matmul weight, stored here as [OC, K] (out = in · Wᵀ).</summary>
    MatMulWeight,
    /// <summary>A matmul weight feeding the residual stream (GPT-2's c_proj): init std / sqrt(2L).</summary>
    ResidualProjection,
    Bias,
    NormWeight,
    NormBias,
    Embedding,
}

/// <summary>One named tensor inside the flat parameter buffer.</summary>
/// <param name="Name">the tensor's name in Hugging Face files (GPT-2 without the "transformer." prefix).</param>
/// <param name="Shape">shape in this project's layout (matmul weights [OC, K]).</param>
/// <param name="Offset">first element in the flat buffer.</param>
/// <param name="TransposedInFile">true where the file stores the weight as [K, OC] (GPT-2's Conv1D).</param>
public sealed record ParameterSpec(string Name, int[] Shape, long Offset, ParameterKind Kind, bool TransposedInFile = false)
{
    public long Length => Shape.Aggregate(1L, (a, b) => a * b);

    /// <summary>Weight decay applies to 2-D matmul weights only (not embeddings, biases or norms).</summary>
    public bool Decayed => Kind is ParameterKind.MatMulWeight or ParameterKind.ResidualProjection;

    /// <summary>The shape as the Hugging Face file stores it.</summary>
    public long[] FileShape => TransposedInFile ? [Shape[1], Shape[0]] : Array.ConvertAll(Shape, s => (long)s);

    public string ShapeText => "[" + string.Join(", ", Shape) + "]";
}

/// <summary>
/// An explicit (name, shape) list and where each tensor sits in the one flat buffer that parameters,
/// gradients and both AdamW moments share. The decayed matmul weights come first, so that weight decay
/// is one AdamW call over the prefix [0, DecayedLength) and none over the rest; within each part the
/// tensors keep the list's order, which lets a family place tensors that one op reads as a single matrix
/// (e.g. q, k and v projections) next to each other.
/// </summary>
public class ParameterTable
{
    public IReadOnlyList<ParameterSpec> Specs { get; }
    /// <summary>The specs in the order they were listed (the Hugging Face order of the family).</summary>
    public IReadOnlyList<ParameterSpec> FileOrder { get; }
    public long TotalLength { get; }
    /// <summary>Elements [0, DecayedLength) are the weight-decayed matmul weights.</summary>
    public long DecayedLength { get; }

    readonly Dictionary<string, ParameterSpec> byName;

    /// <param name="list">the tensors in file order; their Offset is ignored and assigned here.</param>
    public ParameterTable(IReadOnlyList<ParameterSpec> list)
    {
        var specs = new List<ParameterSpec>(list.Count);
        long offset = 0;
        foreach (bool decayed in new[] { true, false })
            foreach (var entry in list)
            {
                if (entry.Decayed != decayed) continue;
                specs.Add(entry with { Offset = offset });
                offset += entry.Length;
                if (decayed) DecayedLength = offset;
            }
        Specs = specs;
        TotalLength = offset;
        byName = specs.ToDictionary(s => s.Name);
        FileOrder = list.Select(e => byName[e.Name]).ToList();
    }

    public ParameterSpec this[string name] => byName.TryGetValue(name, out var s) ? s
        : throw new KeyNotFoundException($"no parameter named '{name}'");

    public bool Contains(string name) => byName.ContainsKey(name);

    /// <summary>
    /// Seeded initialisation: matmul weights and embeddings N(0, std), residual projections
    /// N(0, residualStd), biases 0, norm weights 1. Draws in file order, not buffer order, so the values
    /// do not depend on the layout's grouping.
    /// </summary>
    public float[] Initialize(int seed, double std, double residualStd)
    {
        var data = new float[TotalLength];
        var rng = new Random(seed);
        foreach (var spec in FileOrder)
        {
            var span = data.AsSpan((int)spec.Offset, (int)spec.Length);
            switch (spec.Kind)
            {
                case ParameterKind.NormWeight: span.Fill(1f); break;
                case ParameterKind.Bias or ParameterKind.NormBias: span.Clear(); break;
                case ParameterKind.ResidualProjection: FillNormal(span, rng, residualStd); break;
                default: FillNormal(span, rng, std); break;
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
