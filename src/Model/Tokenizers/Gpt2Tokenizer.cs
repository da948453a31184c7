using System.Text;
using System.Text.Json;
using ArcherIlgpu.Model.IO;

namespace ArcherIlgpu.Model.Tokenizers;

/// <summary>
/// GPT-2's byte-level BPE, built from OpenAI's <c>encoder.json</c> + <c>vocab.bpe</c> (or Hugging Face's
/// identical <c>vocab.json</c> + <c>merges.txt</c>). Text is split into pieces by GPT-2's pattern, each piece's
/// UTF-8 bytes are spelled with the printable byte alphabet, and merges are applied lowest rank first, every
/// occurrence of the chosen pair left to right, as OpenAI's <c>encoder.py</c> does.
/// The literal text <c>&lt;|endoftext|&gt;</c> encodes to <see cref="EndOfText"/> (as in Hugging Face's tokenizer)
/// and <see cref="EndOfText"/> decodes back to it, so <c>Decode(Encode(s)) == s</c> for every valid string;
/// <see cref="EncodeOrdinary"/> treats it as plain text, as OpenAI's original encoder did.
/// </summary>
public sealed class Gpt2Tokenizer : ITokenizer
{
    public const string NameValue = "gpt2-bpe";
    public const string EndOfTextText = "<|endoftext|>";

    private readonly ByteLevelBpe _bpe;
    private readonly byte[]?[] _bytesOfId;                               // id -> the bytes it stands for

    private Gpt2Tokenizer(int[] idOfByte, Dictionary<long, (int, int)> merges, byte[]?[] bytesOfId, int endOfText,
        string encoderPath, string mergesPath)
    {
        _bpe = new ByteLevelBpe(idOfByte, merges);
        _bytesOfId = bytesOfId;
        EndOfText = endOfText;
        EncoderPath = encoderPath;
        MergesPath = mergesPath;
    }

    public int VocabSize => _bytesOfId.Length;
    public int EndOfText { get; }
    public string Name => NameValue;
    public int MergeCount => _bpe.MergeCount;

    /// <summary>The files this tokenizer was read from; <see cref="TokenizerFiles.Save"/> copies them.</summary>
    public string EncoderPath { get; }
    public string MergesPath { get; }

    public static Gpt2Tokenizer FromFiles(string encoderJsonPath, string vocabBpePath)
    {
        Dictionary<string, int> vocab = ReadVocabulary(encoderJsonPath);
        byte[]?[] bytesOfId = BuildBytesOfId(encoderJsonPath, vocab);
        int[] idOfByte = BuildIdOfByte(encoderJsonPath, vocab);
        var merges = ReadMerges(vocabBpePath, vocab);
        if (!vocab.TryGetValue(EndOfTextText, out int eot))
            throw new ModelFormatException($"Vocabulary file '{encoderJsonPath}' has no \"{EndOfTextText}\" token, which GPT-2 uses to end texts.");
        return new Gpt2Tokenizer(idOfByte, merges, bytesOfId, eot, Path.GetFullPath(encoderJsonPath), Path.GetFullPath(vocabBpePath));
    }

    /// <summary>Looks for OpenAI's names (encoder.json + vocab.bpe), then Hugging Face's (vocab.json + merges.txt).</summary>
    public static Gpt2Tokenizer FromFolder(string dir)
    {
        if (TryFindFiles(dir, out string? encoder, out string? merges)) return FromFiles(encoder!, merges!);
        throw new ModelFormatException(
            $"Folder '{dir}' has no GPT-2 tokenizer: expected encoder.json + vocab.bpe, or vocab.json + merges.txt.");
    }

    internal static bool TryFindFiles(string dir, out string? encoder, out string? merges)
    {
        foreach (var (e, m) in new[] { ("encoder.json", "vocab.bpe"), ("vocab.json", "merges.txt") })
        {
            string ep = Path.Combine(dir, e), mp = Path.Combine(dir, m);
            if (File.Exists(ep) && File.Exists(mp))
            {
                (encoder, merges) = (ep, mp);
                return true;
            }
        }
        (encoder, merges) = (null, null);
        return false;
    }

    // ---------------------------------------------------------------- encoding

    public IReadOnlyList<int> Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>(text.Length / 3 + 1);
        int start = 0;
        while (true)
        {
            int special = text.IndexOf(EndOfTextText, start, StringComparison.Ordinal);
            int end = special < 0 ? text.Length : special;
            EncodeSpan(text, start, end, ids);
            if (special < 0) return ids;
            ids.Add(EndOfText);
            start = special + EndOfTextText.Length;
        }
    }

    /// <summary>Encodes <c>&lt;|endoftext|&gt;</c> like any other text (seven tokens), as OpenAI's encoder.py does.</summary>
    public IReadOnlyList<int> EncodeOrdinary(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>(text.Length / 3 + 1);
        EncodeSpan(text, 0, text.Length, ids);
        return ids;
    }

    private void EncodeSpan(string text, int start, int end, List<int> ids) =>
        Gpt2PreTokenizer.Split(text, start, end, (s, n) => ids.AddRange(EncodePiece(text.AsSpan(s, n))));

    private int[] EncodePiece(ReadOnlySpan<char> piece) => _bpe.EncodeCached(piece);

    // ---------------------------------------------------------------- decoding

    /// <summary>Joins the tokens' bytes and reads them as UTF-8; bytes that do not form valid UTF-8 (a sequence cut
    /// between tokens) become U+FFFD, as OpenAI's decoder does with errors="replace".</summary>
    public string Decode(IEnumerable<int> ids) => ByteLevelBpe.Decode(_bytesOfId, ids, "the GPT-2 vocabulary");

    /// <summary>The bytes one token stands for (useful to show partial UTF-8 tokens).</summary>
    public ReadOnlySpan<byte> TokenBytes(int id) =>
        (uint)id < (uint)_bytesOfId.Length && _bytesOfId[id] is { } b
            ? b
            : throw new ArgumentOutOfRangeException(nameof(id), id, $"not in the GPT-2 vocabulary (size {VocabSize})");

    // ---------------------------------------------------------------- loading

    private static Dictionary<string, int> ReadVocabulary(string path)
    {
        byte[] json = ReadFileBytes(path);
        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        try
        {
            using JsonDocument doc = JsonDocument.Parse(json, new JsonDocumentOptions { MaxDepth = 4 });
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new ModelFormatException($"Vocabulary file '{path}' must be a JSON object of token -> id, found {doc.RootElement.ValueKind}.");
            foreach (JsonProperty p in doc.RootElement.EnumerateObject())
            {
                // 16M ids is far beyond any byte-level BPE vocabulary; the bound keeps a corrupt id from sizing arrays.
                if (p.Value.ValueKind != JsonValueKind.Number || !p.Value.TryGetInt32(out int id) || id < 0 || id >= 1 << 24)
                    throw new ModelFormatException($"Vocabulary file '{path}': token \"{p.Name}\" must have an integer id in [0, 2^24), found {p.Value.GetRawText()}.");
                if (!vocab.TryAdd(p.Name, id))
                    throw new ModelFormatException($"Vocabulary file '{path}': token \"{p.Name}\" is listed twice.");
            }
        }
        catch (JsonException e)
        {
            throw new ModelFormatException($"Vocabulary file '{path}' is not valid JSON: {ConfigJson.Describe(e)}", e);
        }
        if (vocab.Count == 0) throw new ModelFormatException($"Vocabulary file '{path}' is empty.");
        return vocab;
    }

    private static byte[]?[] BuildBytesOfId(string path, Dictionary<string, int> vocab)
    {
        var bytesOfId = new byte[]?[vocab.Values.Max() + 1];
        foreach (var (token, id) in vocab)
        {
            if (bytesOfId[id] is not null)
                throw new ModelFormatException($"Vocabulary file '{path}': id {id} is given to two tokens (one is \"{token}\").");
            // Tokens outside the byte alphabet (added special tokens) stand for their own UTF-8 text.
            bytesOfId[id] = ByteLevelAlphabet.TryToBytes(token) ?? Encoding.UTF8.GetBytes(token);
        }
        return bytesOfId;
    }

    private static int[] BuildIdOfByte(string path, Dictionary<string, int> vocab)
    {
        var idOfByte = new int[256];
        for (int b = 0; b < 256; b++)
        {
            string symbol = ByteLevelAlphabet.CharOfByte((byte)b).ToString();
            if (!vocab.TryGetValue(symbol, out idOfByte[b]))
                throw new ModelFormatException($"Vocabulary file '{path}' has no token \"{symbol}\" for byte 0x{b:X2}; a byte-level BPE needs all 256.");
        }
        return idOfByte;
    }

    private static Dictionary<long, (int, int)> ReadMerges(string path, Dictionary<string, int> vocab)
    {
        string[] lines = Encoding.UTF8.GetString(ReadFileBytes(path)).Split('\n');
        var merges = ByteLevelBpe.NewMergeTable(lines.Length);
        for (int n = 0; n < lines.Length; n++)
        {
            string line = lines[n].TrimEnd('\r');
            if (line.Length == 0 || (n == 0 && line.StartsWith("#version", StringComparison.Ordinal))) continue;
            string[] parts = line.Split(' ');
            if (parts.Length != 2 || parts[0].Length == 0 || parts[1].Length == 0)
                throw new ModelFormatException($"Merges file '{path}', line {n + 1}: expected two tokens separated by one space, found \"{line}\".");
            int left = IdOrThrow(path, n, vocab, parts[0]);
            int right = IdOrThrow(path, n, vocab, parts[1]);
            int merged = IdOrThrow(path, n, vocab, parts[0] + parts[1]);
            if (!merges.TryAdd(ByteLevelBpe.PairKey(left, right), (merges.Count, merged)))
                throw new ModelFormatException($"Merges file '{path}', line {n + 1}: the merge \"{line}\" is listed twice.");
        }
        return merges;
    }

    private static int IdOrThrow(string path, int lineIndex, Dictionary<string, int> vocab, string token) =>
        vocab.TryGetValue(token, out int id)
            ? id
            : throw new ModelFormatException($"Merges file '{path}', line {lineIndex + 1}: token \"{token}\" is not in the vocabulary.");

    /// <summary>A tokenizer file's bytes; an unreadable file is a ModelFormatException naming it.</summary>
    internal static byte[] ReadFileBytes(string path)
    {
        try
        {
            return File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ModelFormatException($"Cannot read tokenizer file '{path}': {e.Message}", e);
        }
    }
}
