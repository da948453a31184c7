using System.Text.Json;
using ArcherIlgpu.Model.IO;

namespace ArcherIlgpu.Model.Tokenizers;

/// <summary>
/// Stores a tokenizer next to a model. A char tokenizer is one small JSON file, <c>tokenizer_char.json</c>:
/// <c>{"type": "char", "alphabet": "..."}</c>. A GPT-2 tokenizer is its two original files, copied as
/// <c>encoder.json</c> + <c>vocab.bpe</c>. A Hugging Face tokenizer is its <c>tokenizer.json</c>, copied, with a
/// <c>tokenizer_config.json</c> that names its end-of-text token. <see cref="Load"/> rebuilds whichever is there
/// (Hugging Face's <c>vocab.json</c> + <c>merges.txt</c> are read as GPT-2's, but where a <c>tokenizer.json</c> sits
/// beside them, as in every Hugging Face model folder, that one is used) and refuses a folder that holds two kinds.
/// </summary>
public static class TokenizerFiles
{
    public const string CharFileName = "tokenizer_char.json";

    public static ITokenizer Load(string modelDir)
    {
        ArgumentException.ThrowIfNullOrEmpty(modelDir);
        string charPath = Path.Combine(modelDir, CharFileName);
        bool hasChar = File.Exists(charPath);
        bool hasHf = File.Exists(Path.Combine(modelDir, HfBpeTokenizer.FileName));
        bool hasOpenAi = File.Exists(Path.Combine(modelDir, "encoder.json")) && File.Exists(Path.Combine(modelDir, "vocab.bpe"));
        if (hasHf && (hasChar || hasOpenAi))
            throw new ModelFormatException(
                $"Folder '{modelDir}' holds two tokenizers, {HfBpeTokenizer.FileName} and {(hasChar ? CharFileName : "encoder.json + vocab.bpe")}; remove the one that does not belong to the model.");
        if (hasHf) return HfBpeTokenizer.FromFolder(modelDir);
        bool hasBpe = Gpt2Tokenizer.TryFindFiles(modelDir, out string? encoder, out string? merges);
        if (hasChar && hasBpe)
            throw new ModelFormatException(
                $"Folder '{modelDir}' holds two tokenizers, {CharFileName} and {Path.GetFileName(encoder)} + {Path.GetFileName(merges)}; remove the one that does not belong to the model.");
        if (hasChar) return LoadChar(charPath);
        if (hasBpe) return Gpt2Tokenizer.FromFiles(encoder!, merges!);
        throw new ModelFormatException(
            $"Folder '{modelDir}' has no tokenizer: expected {CharFileName}, or {HfBpeTokenizer.FileName}, or encoder.json + vocab.bpe, or vocab.json + merges.txt.");
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
                RefuseIfHolds(modelDir, HfBpeTokenizer.FileName, "char");
                AtomicFile.WriteAllText(Path.Combine(modelDir, CharFileName), CharJson(c));
                break;
            case Gpt2Tokenizer g:
                if (File.Exists(Path.Combine(modelDir, CharFileName)))
                    throw new InvalidOperationException($"Folder '{modelDir}' already holds a char tokenizer ({CharFileName}); save the GPT-2 tokenizer elsewhere.");
                RefuseIfHolds(modelDir, HfBpeTokenizer.FileName, "GPT-2");
                CopyUnlessSame(g.EncoderPath, Path.Combine(modelDir, "encoder.json"));
                CopyUnlessSame(g.MergesPath, Path.Combine(modelDir, "vocab.bpe"));
                break;
            case HfBpeTokenizer h:
                RefuseIfHolds(modelDir, CharFileName, "Hugging Face");
                RefuseIfHolds(modelDir, "encoder.json", "Hugging Face");
                CopyUnlessSame(h.TokenizerJsonPath, Path.Combine(modelDir, HfBpeTokenizer.FileName));
                SaveEndOfText(h, modelDir);
                break;
            default:
                throw new ArgumentException($"Cannot save a tokenizer of type {tokenizer.GetType().Name} (\"{tokenizer.Name}\"); only char, gpt2-bpe and hf-bpe are supported.", nameof(tokenizer));
        }
    }

    private static void RefuseIfHolds(string modelDir, string fileName, string kind)
    {
        if (File.Exists(Path.Combine(modelDir, fileName)))
            throw new InvalidOperationException($"Folder '{modelDir}' already holds another tokenizer ({fileName}); save the {kind} tokenizer elsewhere.");
    }

    /// <summary>Keeps the folder's <c>tokenizer_config.json</c> (Hugging Face's, with the chat template and the rest)
    /// where it already names the same end token: the source's is copied, one in place is kept; otherwise a minimal
    /// one naming it is written, so that loading the folder picks the same end token.</summary>
    private static void SaveEndOfText(HfBpeTokenizer h, string modelDir)
    {
        string destination = Path.Combine(modelDir, HfBpeTokenizer.ConfigFileName);
        string source = Path.Combine(Path.GetDirectoryName(h.TokenizerJsonPath)!, HfBpeTokenizer.ConfigFileName);
        if (File.Exists(source) && HfBpeTokenizer.ReadEosToken(source) == h.EndOfTextToken)
        {
            CopyUnlessSame(source, destination);
            return;
        }
        if (File.Exists(destination) && HfBpeTokenizer.ReadEosToken(destination) == h.EndOfTextToken) return;
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            json.WriteStartObject();
            json.WriteString("eos_token", h.EndOfTextToken);
            json.WriteEndObject();
        }
        AtomicFile.WriteAllText(destination, System.Text.Encoding.UTF8.GetString(buffer.ToArray()) + "\n");
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
        byte[] bytes = Gpt2Tokenizer.ReadFileBytes(path);
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
            throw new ModelFormatException($"Tokenizer file '{path}' is not valid JSON: {ConfigJson.Describe(e)}", e);
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
