using System.Text.Json;
using ArcherIlgpu.Model.IO;

namespace ArcherIlgpu.Model.Tokenizers;

/// <summary>
/// Stores a tokenizer next to a model. A char tokenizer is one small JSON file, <c>tokenizer_char.json</c>:
/// <c>{"type": "char", "alphabet": "..."}</c>. A GPT-2 tokenizer is its two original files, copied as
/// <c>encoder.json</c> + <c>vocab.bpe</c>. <see cref="Load"/> rebuilds whichever is there (Hugging Face's
/// <c>vocab.json</c> + <c>merges.txt</c> are read too) and refuses a folder that holds both kinds.
/// </summary>
public static class TokenizerFiles
{
    public const string CharFileName = "tokenizer_char.json";

    public static ITokenizer Load(string modelDir)
    {
        ArgumentException.ThrowIfNullOrEmpty(modelDir);
        string charPath = Path.Combine(modelDir, CharFileName);
        bool hasChar = File.Exists(charPath);
        bool hasBpe = Gpt2Tokenizer.TryFindFiles(modelDir, out string? encoder, out string? merges);
        if (hasChar && hasBpe)
            throw new ModelFormatException(
                $"Folder '{modelDir}' holds two tokenizers, {CharFileName} and {Path.GetFileName(encoder)} + {Path.GetFileName(merges)}; remove the one that does not belong to the model.");
        if (hasChar) return LoadChar(charPath);
        if (hasBpe) return Gpt2Tokenizer.FromFiles(encoder!, merges!);
        throw new ModelFormatException(
            $"Folder '{modelDir}' has no tokenizer: expected {CharFileName}, or encoder.json + vocab.bpe, or vocab.json + merges.txt.");
    }

    /// <summary>Writes the tokenizer's files into <paramref name="modelDir"/> (created if missing), each atomically.
    /// Throws <see cref="InvalidOperationException"/> if the folder already holds the other kind of tokenizer, since
    /// <see cref="Load"/> could then not tell which one the model uses.</summary>
    public static void Save(ITokenizer tokenizer, string modelDir)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentException.ThrowIfNullOrEmpty(modelDir);
        Directory.CreateDirectory(modelDir);
        switch (tokenizer)
        {
            case CharTokenizer c:
                if (Gpt2Tokenizer.TryFindFiles(modelDir, out string? e, out _))
                    throw new InvalidOperationException($"Folder '{modelDir}' already holds a GPT-2 tokenizer ({Path.GetFileName(e)}); save the char tokenizer elsewhere.");
                AtomicFile.WriteAllText(Path.Combine(modelDir, CharFileName), CharJson(c));
                break;
            case Gpt2Tokenizer g:
                if (File.Exists(Path.Combine(modelDir, CharFileName)))
                    throw new InvalidOperationException($"Folder '{modelDir}' already holds a char tokenizer ({CharFileName}); save the GPT-2 tokenizer elsewhere.");
                CopyUnlessSame(g.EncoderPath, Path.Combine(modelDir, "encoder.json"));
                CopyUnlessSame(g.MergesPath, Path.Combine(modelDir, "vocab.bpe"));
                break;
            default:
                throw new ArgumentException($"Cannot save a tokenizer of type {tokenizer.GetType().Name} (\"{tokenizer.Name}\"); only char and gpt2-bpe are supported.", nameof(tokenizer));
        }
    }

    private static string CharJson(CharTokenizer c)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            json.WriteStartObject();
            json.WriteString("type", CharTokenizer.NameValue);
            json.WriteString("alphabet", c.Alphabet);
            json.WriteEndObject();
        }
        return System.Text.Encoding.UTF8.GetString(buffer.ToArray()) + "\n";
    }

    private static CharTokenizer LoadChar(string path)
    {
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ModelFormatException($"Cannot read tokenizer file '{path}': {e.Message}", e);
        }
        try
        {
            using JsonDocument doc = JsonDocument.Parse(bytes);
            JsonElement root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw new ModelFormatException($"Tokenizer file '{path}' must hold a JSON object, found {root.ValueKind}.");
            if (!root.TryGetProperty("type", out JsonElement type) || type.ValueKind != JsonValueKind.String || type.GetString() != CharTokenizer.NameValue)
                throw new ModelFormatException($"Tokenizer file '{path}': \"type\" must be \"{CharTokenizer.NameValue}\".");
            if (!root.TryGetProperty("alphabet", out JsonElement alphabet) || alphabet.ValueKind != JsonValueKind.String)
                throw new ModelFormatException($"Tokenizer file '{path}': missing string field \"alphabet\".");
            return new CharTokenizer(alphabet.GetString()!);
        }
        catch (JsonException e)
        {
            throw new ModelFormatException($"Tokenizer file '{path}' is not valid JSON: {e.Message}", e);
        }
        catch (ArgumentException e)
        {
            throw new ModelFormatException($"Tokenizer file '{path}': {e.Message}", e);
        }
    }

    private static void CopyUnlessSame(string source, string destination)
    {
        if (string.Equals(Path.GetFullPath(source), Path.GetFullPath(destination), StringComparison.Ordinal)) return;
        AtomicFile.WriteAllBytes(destination, File.ReadAllBytes(source));
    }
}
