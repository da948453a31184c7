using System.Text;
using System.Text.Json;
using ArcherIlgpu.Model.IO;

namespace ArcherIlgpu.Model.Tokenizers;

/// <summary>
/// A byte-level BPE read from a Hugging Face <c>tokenizer.json</c>: Qwen2, Qwen2.5, Qwen3, Llama 3, SmolLM2, GPT-2.
/// Encoding follows Hugging Face's pipeline: added tokens (<c>&lt;|endoftext|&gt;</c>, <c>&lt;|im_start|&gt;</c>, ...) are cut
/// out of the text first, leftmost and longest, those with <c>normalized: false</c> before the normalizer runs and the
/// others after; the rest is normalized (NFC, ..., by the managed <see cref="UnicodeNormalizer"/>, so alike on every
/// runtime), split by the pre-tokenizer's pattern (see <see cref="CodePointRegexSplitter"/>), and each piece's UTF-8 bytes are merged by the shared
/// <see cref="ByteLevelBpe"/> loop (with <c>ignore_merges</c>, as Llama 3 sets, a piece that is itself a vocabulary
/// token is taken whole). Decoding joins the tokens' bytes and reads them as UTF-8; added tokens decode to their text,
/// so <c>Decode(Encode(s))</c> is <c>s</c> after normalization.
/// Not done here: the post-processor (Llama 3's template adds <c>&lt;|begin_of_text|&gt;</c>; write it into the text, or
/// prepend <see cref="IdOf"/>'s id yourself), padding, and added tokens with lstrip/rstrip/single_word (refused).
/// </summary>
public sealed class HfBpeTokenizer : ITokenizer
{
    public const string NameValue = "hf-bpe";
    public const string FileName = "tokenizer.json";
    public const string ConfigFileName = "tokenizer_config.json";

    /// <summary>Without a <c>tokenizer_config.json</c> naming <c>eos_token</c>, the first of these that the file has ends texts.</summary>
    public static readonly IReadOnlyList<string> FallbackEndOfTextTokens =
        ["<|endoftext|>", "<|end_of_text|>", "<|eot_id|>", "<|im_end|>", "</s>"];

    private readonly ByteLevelBpe _bpe;
    private readonly byte[]?[] _bytesOfId;
    private readonly Dictionary<string, int> _idOfToken;     // vocabulary and added tokens, by their text in the file
    private readonly AddedTokenMatcher _rawAddedTokens;
    private readonly AddedTokenMatcher _normalizedAddedTokens;
    private readonly NormalizationForm[] _normalizers;
    private readonly IPieceSplitter[] _splitters;

    private HfBpeTokenizer(HfTokenizerJson spec, string path, string endOfTextToken, string endOfTextSource)
    {
        TokenizerJsonPath = Path.GetFullPath(path);
        _idOfToken = new Dictionary<string, int>(spec.Vocab, StringComparer.Ordinal);
        _bytesOfId = BuildBytesOfId(path, spec);
        _bpe = new ByteLevelBpe(BuildIdOfByte(path, spec.Vocab), BuildMerges(path, spec), spec.IgnoreMerges ? spec.Vocab : null);
        foreach (HfAddedToken t in spec.AddedTokens) _idOfToken[t.Content] = t.Id;
        AddedTokens = spec.AddedTokens;
        _rawAddedTokens = new AddedTokenMatcher(spec.AddedTokens.Where(t => !t.Normalized));
        _normalizedAddedTokens = new AddedTokenMatcher(spec.AddedTokens.Where(t => t.Normalized));
        _normalizers = [.. spec.Normalizers];
        _splitters = [.. spec.Splitters];
        IgnoreMerges = spec.IgnoreMerges;
        if (!_idOfToken.TryGetValue(endOfTextToken, out int eot))
            throw new ModelFormatException($"The end-of-text token \"{endOfTextToken}\" (from {endOfTextSource}) is not a token of '{path}'.");
        EndOfText = eot;
        EndOfTextToken = endOfTextToken;
        EndOfTextSource = endOfTextSource;
    }

    public int VocabSize => _bytesOfId.Length;
    public int EndOfText { get; }
    public string Name => NameValue;
    public int MergeCount => _bpe.MergeCount;
    public bool IgnoreMerges { get; }

    /// <summary>The text of the end-of-text token, and where it was chosen: the caller, <c>tokenizer_config.json</c>'s
    /// <c>eos_token</c>, or the first of <see cref="FallbackEndOfTextTokens"/> found.</summary>
    public string EndOfTextToken { get; }
    public string EndOfTextSource { get; }

    public IReadOnlyList<HfAddedToken> AddedTokens { get; }

    /// <summary>The normalization forms applied in order (Qwen2: NFC; Llama 3: none), by <see cref="UnicodeNormalizer"/>.</summary>
    public IReadOnlyList<NormalizationForm> Normalizers => _normalizers;

    /// <summary>The file this tokenizer was read from; <see cref="TokenizerFiles.Save"/> copies it.</summary>
    public string TokenizerJsonPath { get; }

    /// <summary>The id of a token by its text in the file (an added token's content, or a vocabulary entry spelled
    /// in the byte alphabet, e.g. "Ġthe"), or null.</summary>
    public int? IdOf(string token) => _idOfToken.TryGetValue(token, out int id) ? id : null;

    // ---------------------------------------------------------------- loading

    /// <summary>Reads <c>tokenizer.json</c> from <paramref name="dir"/>; the end-of-text token is
    /// <paramref name="endOfTextToken"/> if given, else <c>tokenizer_config.json</c>'s <c>eos_token</c> if that file
    /// is there, else the first of <see cref="FallbackEndOfTextTokens"/> that the tokenizer has.</summary>
    public static HfBpeTokenizer FromFolder(string dir, string? endOfTextToken = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(dir);
        string path = Path.Combine(dir, FileName);
        if (!File.Exists(path)) throw new ModelFormatException($"Folder '{dir}' has no {FileName}.");
        return FromFile(path, endOfTextToken);
    }

    /// <summary>As <see cref="FromFolder"/>, reading <c>tokenizer_config.json</c> next to <paramref name="tokenizerJsonPath"/>.</summary>
    public static HfBpeTokenizer FromFile(string tokenizerJsonPath, string? endOfTextToken = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(tokenizerJsonPath);
        HfTokenizerJson spec = HfTokenizerJson.Read(tokenizerJsonPath);
        if (endOfTextToken is not null) return new HfBpeTokenizer(spec, tokenizerJsonPath, endOfTextToken, "the caller");
        string config = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(tokenizerJsonPath))!, ConfigFileName);
        if (File.Exists(config) && ReadEosToken(config) is { } eos)
            return new HfBpeTokenizer(spec, tokenizerJsonPath, eos, $"{ConfigFileName} \"eos_token\"");
        var known = new HashSet<string>(spec.Vocab.Keys.Concat(spec.AddedTokens.Select(t => t.Content)), StringComparer.Ordinal);
        string? fallback = FallbackEndOfTextTokens.FirstOrDefault(known.Contains);
        if (fallback is null)
            throw new ModelFormatException(
                $"Tokenizer file '{tokenizerJsonPath}' does not say which token ends a text: put {ConfigFileName} with \"eos_token\" next to it, or pass the token; none of {string.Join(", ", FallbackEndOfTextTokens)} is in it.");
        return new HfBpeTokenizer(spec, tokenizerJsonPath, fallback, $"the first known end token found ({fallback})");
    }

    /// <summary><c>eos_token</c> as Hugging Face writes it: a string, or an object whose <c>content</c> is the string; null if absent.</summary>
    internal static string? ReadEosToken(string configPath)
    {
        try
        {
            using JsonDocument doc = JsonDocument.Parse(File.ReadAllBytes(configPath));
            if (doc.RootElement.ValueKind != JsonValueKind.Object || !doc.RootElement.TryGetProperty("eos_token", out JsonElement eos)
                || eos.ValueKind == JsonValueKind.Null)
                return null;
            if (eos.ValueKind == JsonValueKind.String) return eos.GetString();
            if (eos.ValueKind == JsonValueKind.Object && eos.TryGetProperty("content", out JsonElement c) && c.ValueKind == JsonValueKind.String)
                return c.GetString();
            throw new ModelFormatException($"Tokenizer config '{configPath}': eos_token must be a string or {{\"content\": \"...\"}}, found {eos.GetRawText()}.");
        }
        catch (JsonException e)
        {
            throw new ModelFormatException($"Tokenizer config '{configPath}' is not valid JSON: {ConfigJson.Describe(e)}", e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ModelFormatException($"Cannot read tokenizer config '{configPath}': {e.Message}", e);
        }
    }

    private static byte[]?[] BuildBytesOfId(string path, HfTokenizerJson spec)
    {
        int maxId = Math.Max(spec.Vocab.Values.Max(), spec.AddedTokens.Count == 0 ? 0 : spec.AddedTokens.Max(t => t.Id));
        var bytesOfId = new byte[]?[maxId + 1];
        foreach (var (token, id) in spec.Vocab)
        {
            if (bytesOfId[id] is not null)
                throw new ModelFormatException($"Tokenizer file '{path}': model.vocab gives id {id} to two tokens (one is \"{token}\").");
            // As Hugging Face's ByteLevel decoder: a token with a character outside the byte alphabet stands for its own UTF-8.
            bytesOfId[id] = ByteLevelAlphabet.TryToBytes(token) ?? Encoding.UTF8.GetBytes(token);
        }
        var addedIds = new HashSet<int>();
        foreach (HfAddedToken t in spec.AddedTokens)
        {
            if (!addedIds.Add(t.Id))
                throw new ModelFormatException($"Tokenizer file '{path}': added_tokens gives id {t.Id} to two tokens (one is \"{t.Content}\").");
            // An added token decodes to its text, so that Decode(Encode(s)) == s (Hugging Face sends it through the
            // ByteLevel decoder, which only differs for non-ASCII contents).
            bytesOfId[t.Id] = Encoding.UTF8.GetBytes(t.Content);
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
                throw new ModelFormatException($"Tokenizer file '{path}': model.vocab has no token \"{symbol}\" for byte 0x{b:X2}; a byte-level BPE needs all 256.");
        }
        return idOfByte;
    }

    /// <summary>A merge listed twice takes the rank of its last listing, as Hugging Face's loader (a hash map built in
    /// file order) does.</summary>
    private static Dictionary<long, (int Rank, int Merged)> BuildMerges(string path, HfTokenizerJson spec)
    {
        var merges = ByteLevelBpe.NewMergeTable(spec.Merges.Count);
        for (int rank = 0; rank < spec.Merges.Count; rank++)
        {
            var (left, right) = spec.Merges[rank];
            int l = MergeTokenId(path, rank, spec.Vocab, left);
            int r = MergeTokenId(path, rank, spec.Vocab, right);
            int merged = MergeTokenId(path, rank, spec.Vocab, left + right);
            merges[ByteLevelBpe.PairKey(l, r)] = (rank, merged);
        }
        return merges;
    }

    private static int MergeTokenId(string path, int rank, Dictionary<string, int> vocab, string token) =>
        vocab.TryGetValue(token, out int id)
            ? id
            : throw new ModelFormatException($"Tokenizer file '{path}': model.merges[{rank}] uses \"{token}\", which is not in model.vocab.");

    // ---------------------------------------------------------------- encoding

    public IReadOnlyList<int> Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>(text.Length / 3 + 1);
        // Rust strings cannot hold a lone surrogate; UTF-8 encoding turns it into U+FFFD, so do that up front
        // (normalization would otherwise throw on it).
        string clean = ReplaceLoneSurrogates(text);
        _rawAddedTokens.Split(clean, 0, clean.Length, ids, (s, e) =>
        {
            string normalized = Normalize(clean.Substring(s, e - s));
            _normalizedAddedTokens.Split(normalized, 0, normalized.Length, ids, (s2, e2) => EncodeOrdinary(normalized, s2, e2, ids));
        });
        return ids;
    }

    private string Normalize(string text)
    {
        foreach (NormalizationForm form in _normalizers) text = UnicodeNormalization.Normalize(text, form);
        return text;
    }

    private void EncodeOrdinary(string text, int start, int end, List<int> ids)
    {
        var pieces = new List<(int Start, int Length)> { (start, end - start) };
        var next = new List<(int Start, int Length)>();
        foreach (IPieceSplitter splitter in _splitters)
        {
            next.Clear();
            foreach (var (s, n) in pieces) splitter.Split(text, s, s + n, next);
            (pieces, next) = (next, pieces);
        }
        foreach (var (s, n) in pieces) ids.AddRange(_bpe.EncodeCached(text.AsSpan(s, n)));
    }

    private static string ReplaceLoneSurrogates(string text)
    {
        if (text.AsSpan().IndexOfAnyInRange('\uD800', '\uDFFF') < 0) return text;
        var chars = text.ToCharArray();
        for (int i = 0; i < chars.Length; i++)
        {
            if (char.IsHighSurrogate(chars[i]) && i + 1 < chars.Length && char.IsLowSurrogate(chars[i + 1])) i++;
            else if (char.IsSurrogate(chars[i])) chars[i] = '\uFFFD';
        }
        return new string(chars);
    }

    // ---------------------------------------------------------------- decoding

    /// <summary>Joins the tokens' bytes and reads them as UTF-8; bytes that do not form valid UTF-8 (a character cut
    /// between tokens) become U+FFFD, as Hugging Face's decoder does.</summary>
    public string Decode(IEnumerable<int> ids) => ByteLevelBpe.Decode(_bytesOfId, ids, $"the vocabulary of '{TokenizerJsonPath}'");

    /// <summary>The bytes one token stands for.</summary>
    public ReadOnlySpan<byte> TokenBytes(int id) =>
        (uint)id < (uint)_bytesOfId.Length && _bytesOfId[id] is { } b
            ? b
            : throw new ArgumentOutOfRangeException(nameof(id), id, $"not in the vocabulary (size {VocabSize})");
}

/// <summary>Cuts added tokens out of text, leftmost first and longest at a position, as Hugging Face's Aho-Corasick
/// matcher (LeftmostLongest) does.</summary>
internal sealed class AddedTokenMatcher
{
    private readonly Dictionary<char, (string Content, int Id)[]> _byFirstChar;
    private readonly System.Buffers.SearchValues<char> _firstChars;

    public AddedTokenMatcher(IEnumerable<HfAddedToken> tokens)
    {
        _byFirstChar = tokens
            .GroupBy(t => t.Content[0])
            .ToDictionary(g => g.Key, g => g.OrderByDescending(t => t.Content.Length).Select(t => (t.Content, t.Id)).ToArray());
        _firstChars = System.Buffers.SearchValues.Create([.. _byFirstChar.Keys]);
    }

    /// <summary>Adds each added token's id to <paramref name="ids"/> and calls <paramref name="between"/> with
    /// (start, end) of each non-empty stretch of other text, in order.</summary>
    public void Split(string text, int start, int end, List<int> ids, Action<int, int> between)
    {
        int plain = start;
        int i = start;
        while (i < end)
        {
            int k = _byFirstChar.Count == 0 ? -1 : text.AsSpan(i, end - i).IndexOfAny(_firstChars);
            if (k < 0) break;
            i += k;
            var match = LongestAt(text, i, end);
            if (match is not { } m)
            {
                i++;
                continue;
            }
            if (i > plain) between(plain, i);
            ids.Add(m.Id);
            i += m.Content.Length;
            plain = i;
        }
        if (end > plain) between(plain, end);
    }

    private (string Content, int Id)? LongestAt(string text, int i, int end)
    {
        foreach (var candidate in _byFirstChar[text[i]])
        {
            if (candidate.Content.Length <= end - i && text.AsSpan(i, candidate.Content.Length).SequenceEqual(candidate.Content))
                return candidate;
        }
        return null;
    }
}
