using System.Globalization;
using System.Text.RegularExpressions;
using ArcherIlgpu.Model.IO;

namespace ArcherIlgpu.Model;

/// <summary>
/// A family's Hugging Face tensors into its flat parameter layout, exactly: every tensor of the layout is in
/// the file once, with the file shape, a floating dtype and only finite values; the file holds nothing else
/// but the family's known non-parameter buffers and, for a tied head, an lm_head equal to the embedding.
/// Anything else fails naming the tensor, so that a config.json that does not describe its weights (n_layer
/// too small, an integer tensor, a NaN) is an error instead of a model that answers garbage.
/// </summary>
/// <param name="Layout">the family's tensors for this config.</param>
/// <param name="Config">named in errors.</param>
/// <param name="CanonicalName">a file's tensor name as the layout spells it (GPT-2 drops "transformer.").</param>
/// <param name="IsBuffer">names that are not parameters and are skipped (old exports' causal masks, rotary tables).</param>
/// <param name="TiedEmbedding">the embedding an "lm_head.weight" must equal when the head is tied; null when untied.</param>
internal sealed partial record FileWeights(ParameterTable Layout, IModelConfig Config, Func<string, string> CanonicalName,
    Func<string, bool> IsBuffer, string? TiedEmbedding)
{
    /// <summary>The dtypes a weight may be stored in: the float formats models are trained and shipped in.</summary>
    public static readonly string[] WeightDtypes = ["F32", "BF16", "F16"];

    public const string HeadName = "lm_head.weight";

    /// <summary>
    /// Checks what a file's headers say (names, dtypes, shapes) against the layout, before any data is read: every
    /// parameter once, with its shape and a weight dtype; nothing else unless <paramref name="options"/> allows it.
    /// Returns where each parameter is in the file: layout name -> file name.
    /// </summary>
    public IReadOnlyDictionary<string, string> Match(IEnumerable<(string Name, string Dtype, long[] Shape)> entries, string source, LoadOptions options)
    {
        var found = new Dictionary<string, string>(StringComparer.Ordinal);   // layout name -> file name
        var extra = new List<string>();
        foreach (var (fileName, dtype, shape) in entries.OrderBy(e => e.Name, StringComparer.Ordinal))
        {
            string name = CanonicalName(fileName);
            if (IsBuffer(name) || (TiedEmbedding is not null && name == HeadName)) continue;
            if (!Layout.Contains(name)) { extra.Add(fileName); continue; }
            if (!found.TryAdd(name, fileName))
                throw new ModelFormatException($"{source}: tensor '{name}' is there twice, as '{found[name]}' and as '{fileName}'");
            var spec = Layout[name];
            if (!WeightDtypes.Contains(dtype, StringComparer.Ordinal))
                throw new ModelFormatException($"{source}: tensor '{fileName}' has dtype {dtype}; weights must be {string.Join(", ", WeightDtypes)}");
            if (!shape.SequenceEqual(spec.FileShape))
                throw new ModelFormatException($"{source}: tensor '{fileName}' has shape [{string.Join(", ", shape)}], expected {FileShapeText(spec)}");
        }
        foreach (var spec in Layout.FileOrder)
            if (!found.ContainsKey(spec.Name))
                throw new ModelFormatException($"{source}: tensor '{spec.Name}' is missing; expected shape {FileShapeText(spec)} for {Config}");
        if (extra.Count > 0 && !options.AllowExtraTensors)
        {
            var notes = new[] { LayerHint(extra[0]), extra.Count > 1 ? $"{extra.Count - 1} more such tensors" : null }.OfType<string>().ToList();
            throw new ModelFormatException($"{source}: tensor '{extra[0]}' is not part of a {Config.ModelType} model with this config.json"
                + (notes.Count > 0 ? $" ({string.Join("; ", notes)})" : "") + "; fix config.json, or load with --allow-extra-tensors to ignore such tensors");
        }
        return found;
    }

    /// <summary>The flat parameters from <paramref name="tensors"/> (<see cref="Match"/>ed first; then every value must be
    /// finite and a tied head equal to the embedding); <paramref name="source"/> names the file in errors.</summary>
    public float[] Gather(IReadOnlyDictionary<string, NamedTensor> tensors, string source, LoadOptions options)
    {
        var found = Match(tensors.Values.Select(t => (t.Name, t.Dtype, t.Shape)), source, options);
        var flat = new float[Layout.TotalLength];
        foreach (var spec in Layout.FileOrder)
        {
            var fileName = found[spec.Name];
            CheckFinite(tensors[fileName], fileName, source);
            Copy(spec, tensors[fileName].Data, flat);
        }
        if (TiedEmbedding is not null && tensors.Keys.FirstOrDefault(k => CanonicalName(k) == HeadName) is string head)
            CheckTiedHead(tensors[head], tensors[found[TiedEmbedding]], found[TiedEmbedding], source);
        return flat;
    }

    /// <summary>Copies one tensor to its place in the flat buffer, transposing Conv1D weights.</summary>
    static void Copy(ParameterSpec spec, float[] data, float[] flat)
    {
        var dst = flat.AsSpan((int)spec.Offset, (int)spec.Length);
        if (!spec.TransposedInFile) { data.CopyTo(dst); return; }
        // The file holds [in, out] = [Shape[1], Shape[0]]; the layout wants [out, in].
        int rows = spec.Shape[1], cols = spec.Shape[0];
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++) dst[c * rows + r] = data[(long)r * cols + c];
    }

    static void CheckFinite(NamedTensor t, string fileName, string source)
    {
        var data = t.Data;
        for (int i = 0; i < data.Length; i++)
            if (!float.IsFinite(data[i]))
                throw new ModelFormatException(string.Create(CultureInfo.InvariantCulture,
                    $"{source}: tensor '{fileName}' holds {data[i]} at element {i}; weights must be finite (the file is corrupt or was saved from a diverged run)"));
    }

    void CheckTiedHead(NamedTensor head, NamedTensor embedding, string embeddingFileName, string source)
    {
        if (!head.Shape.SequenceEqual(embedding.Shape) || !head.Data.AsSpan().SequenceEqual(embedding.Data))
            throw new ModelFormatException($"{source}: '{HeadName}' differs from '{embeddingFileName}', but this model's head is tied to "
                + $"the embedding ({(Config.ModelType == "gpt2" ? "the only GPT-2 head supported" : "config.json says tie_word_embeddings = true")})");
    }

    static string FileShapeText(ParameterSpec spec) =>
        "[" + string.Join(", ", spec.FileShape) + "]" + (spec.TransposedInFile ? " (Conv1D layout [in, out])" : "");

    /// <summary>"it is in layer 5, config.json has 2 layers" for a block tensor past the config's layers, else null.</summary>
    string? LayerHint(string fileName)
    {
        var m = LayerIndex().Match(fileName);
        return m.Success && int.TryParse(m.Groups[1].ValueSpan, NumberStyles.None, CultureInfo.InvariantCulture, out int layer) && layer >= Config.Layers
            ? $"it is in layer {layer}, config.json has {Config.Layers} layer{(Config.Layers == 1 ? "" : "s")}"
            : null;
    }

    [GeneratedRegex(@"(?:^|\.)(?:h|layers)\.(\d+)\.")]
    private static partial Regex LayerIndex();
}
