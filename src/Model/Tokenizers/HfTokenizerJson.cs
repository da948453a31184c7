using System.Text;
using System.Text.Json;
using ArcherIlgpu.Model.IO;

namespace ArcherIlgpu.Model.Tokenizers;

/// <summary>One entry of <c>added_tokens</c>: matched as a whole string before BPE. <see cref="Normalized"/> tokens
/// are looked for in the normalized text, the others in the raw text.</summary>
public sealed record HfAddedToken(int Id, string Content, bool Special, bool Normalized);

/// <summary>
/// What <see cref="HfBpeTokenizer"/> takes from a Hugging Face <c>tokenizer.json</c>, checked field by field: anything
/// it would have to ignore to encode differently from Hugging Face is refused with the field's JSON path.
/// </summary>
internal sealed class HfTokenizerJson
{
    public required Dictionary<string, int> Vocab { get; init; }
    public required List<(string Left, string Right)> Merges { get; init; }
    public required bool IgnoreMerges { get; init; }
    public required List<HfAddedToken> AddedTokens { get; init; }
    public required List<NormalizationForm> Normalizers { get; init; }
    public required List<IPieceSplitter> Splitters { get; init; }

    private readonly string _path;

    private HfTokenizerJson(string path) => _path = path;

    public static HfTokenizerJson Read(string path)
    {
        byte[] bytes = Gpt2Tokenizer.ReadFileBytes(path);
        try
        {
            using JsonDocument doc = JsonDocument.Parse(bytes, new JsonDocumentOptions { MaxDepth = 64 });
            return Parse(path, doc.RootElement);
        }
        catch (JsonException e)
        {
            throw new ModelFormatException($"Tokenizer file '{path}' is not valid JSON: {ConfigJson.Describe(e)}", e);
        }
    }

    private static HfTokenizerJson Parse(string path, JsonElement root)
    {
        var reader = new HfTokenizerJson(path)
        {
            Vocab = [], Merges = [], IgnoreMerges = false, AddedTokens = [], Normalizers = [], Splitters = [],
        };
        if (root.ValueKind != JsonValueKind.Object) throw reader.Error("(root)", $"must be a JSON object, found {root.ValueKind}");
        JsonElement model = reader.Required(root, "model", JsonValueKind.Object, "model");
        var (vocab, merges, ignoreMerges) = reader.ReadModel(model);
        if (root.TryGetProperty("truncation", out JsonElement truncation) && truncation.ValueKind != JsonValueKind.Null)
            throw reader.Error("truncation", "must be null: encoding here never truncates, so a file that asks for it would give other ids");
        return new HfTokenizerJson(path)
        {
            Vocab = vocab,
            Merges = merges,
            IgnoreMerges = ignoreMerges,
            AddedTokens = reader.CheckAddedIds(reader.ReadAddedTokens(root), vocab),
            Normalizers = reader.ReadNormalizer(root.TryGetProperty("normalizer", out JsonElement n) ? n : default, "normalizer"),
            Splitters = reader.ReadPreTokenizer(root),
        }.CheckDecoder(root);
    }

    // ---------------------------------------------------------------- model

    private (Dictionary<string, int>, List<(string, string)>, bool) ReadModel(JsonElement model)
    {
        string type = model.TryGetProperty("type", out JsonElement t) && t.ValueKind == JsonValueKind.String ? t.GetString()! : "BPE";
        if (type != "BPE")
            throw Error("model.type", $"is \"{type}\"; only byte-level \"BPE\" is supported (WordPiece, WordLevel and Unigram models are not)");
        if (model.TryGetProperty("dropout", out JsonElement dropout) && dropout.ValueKind != JsonValueKind.Null
            && !(dropout.ValueKind == JsonValueKind.Number && dropout.GetDouble() == 0))
            throw Error("model.dropout", $"is {dropout.GetRawText()}; BPE dropout makes encoding random and is not supported");
        foreach (string affix in new[] { "continuing_subword_prefix", "end_of_word_suffix" })
        {
            if (model.TryGetProperty(affix, out JsonElement a) && a.ValueKind != JsonValueKind.Null
                && !(a.ValueKind == JsonValueKind.String && a.GetString()!.Length == 0))
                throw Error($"model.{affix}", $"is {a.GetRawText()}; a byte-level BPE has none");
        }
        if (model.TryGetProperty("byte_fallback", out JsonElement fallback) && fallback.ValueKind == JsonValueKind.True)
            throw Error("model.byte_fallback", "is true; that is SentencePiece-style BPE (<0xNN> tokens), not byte-level BPE");
        bool ignoreMerges = model.TryGetProperty("ignore_merges", out JsonElement im) && im.ValueKind == JsonValueKind.True;
        return (ReadVocab(Required(model, "vocab", JsonValueKind.Object, "model.vocab")),
                ReadMerges(Required(model, "merges", JsonValueKind.Array, "model.merges")),
                ignoreMerges);
    }

    private Dictionary<string, int> ReadVocab(JsonElement vocab)
    {
        var result = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (JsonProperty p in vocab.EnumerateObject())
        {
            // 16M ids is far beyond any byte-level BPE vocabulary; the bound keeps a corrupt id from sizing arrays.
            if (p.Value.ValueKind != JsonValueKind.Number || !p.Value.TryGetInt32(out int id) || id < 0 || id >= 1 << 24)
                throw Error($"model.vocab[\"{p.Name}\"]", $"must be an integer id in [0, 2^24), found {p.Value.GetRawText()}");
            if (!result.TryAdd(p.Name, id)) throw Error($"model.vocab[\"{p.Name}\"]", "is listed twice");
        }
        if (result.Count == 0) throw Error("model.vocab", "is empty");
        return result;
    }

    /// <summary>Both spellings Hugging Face writes: <c>"a b"</c> (older files, split at the one space) and
    /// <c>["a", "b"]</c> (tokenizers 0.20 and later, which allows spaces inside tokens).</summary>
    private List<(string, string)> ReadMerges(JsonElement merges)
    {
        var result = new List<(string, string)>(merges.GetArrayLength());
        int i = 0;
        foreach (JsonElement m in merges.EnumerateArray())
        {
            if (m.ValueKind == JsonValueKind.String)
            {
                string[] parts = m.GetString()!.Split(' ');
                if (parts.Length != 2 || parts[0].Length == 0 || parts[1].Length == 0)
                    throw Error($"model.merges[{i}]", $"must be two tokens separated by one space, found {m.GetRawText()}");
                result.Add((parts[0], parts[1]));
            }
            else if (m.ValueKind == JsonValueKind.Array && m.GetArrayLength() == 2
                     && m[0].ValueKind == JsonValueKind.String && m[1].ValueKind == JsonValueKind.String)
            {
                result.Add((m[0].GetString()!, m[1].GetString()!));
            }
            else
            {
                throw Error($"model.merges[{i}]", $"must be \"left right\" or [\"left\", \"right\"], found {m.GetRawText()}");
            }
            i++;
        }
        return result;
    }

    // ---------------------------------------------------------------- added tokens

    private List<HfAddedToken> ReadAddedTokens(JsonElement root)
    {
        var result = new List<HfAddedToken>();
        if (!root.TryGetProperty("added_tokens", out JsonElement list) || list.ValueKind == JsonValueKind.Null) return result;
        if (list.ValueKind != JsonValueKind.Array) throw Error("added_tokens", $"must be an array, found {list.ValueKind}");
        int i = 0;
        foreach (JsonElement t in list.EnumerateArray())
        {
            string where = $"added_tokens[{i++}]";
            if (t.ValueKind != JsonValueKind.Object) throw Error(where, $"must be an object, found {t.ValueKind}");
            JsonElement idElement = Required(t, "id", JsonValueKind.Number, where + ".id");
            if (!idElement.TryGetInt32(out int id) || id < 0 || id >= 1 << 24) throw Error(where + ".id", $"must be an integer in [0, 2^24), found {idElement.GetRawText()}");
            string content = Required(t, "content", JsonValueKind.String, where + ".content").GetString()!;
            if (content.Length == 0) throw Error(where + ".content", "is empty");
            foreach (string flag in new[] { "single_word", "lstrip", "rstrip" })
            {
                if (t.TryGetProperty(flag, out JsonElement f) && f.ValueKind == JsonValueKind.True)
                    throw Error($"{where}.{flag}", $"is true for \"{content}\"; added tokens that absorb or require surrounding spaces are not supported");
            }
            bool special = t.TryGetProperty("special", out JsonElement s) && s.ValueKind == JsonValueKind.True;
            // Hugging Face's default: special tokens are matched in the raw text, the others after normalization.
            bool normalized = t.TryGetProperty("normalized", out JsonElement n) && n.ValueKind is JsonValueKind.True or JsonValueKind.False
                ? n.ValueKind == JsonValueKind.True
                : !special;
            result.Add(new HfAddedToken(id, content, special, normalized));
        }
        return result;
    }

    /// <summary>Hugging Face does not take an added token's id from the file: it is the vocabulary's id for the same
    /// text, else the next id after the vocabulary (its entry count) and the added tokens so far. Every published file
    /// agrees with that; one that does not would encode to other ids there than here, so it is refused.</summary>
    private List<HfAddedToken> CheckAddedIds(List<HfAddedToken> added, Dictionary<string, int> vocab)
    {
        var assigned = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < added.Count; i++)
        {
            HfAddedToken t = added[i];
            int expected;
            if (vocab.TryGetValue(t.Content, out int v)) expected = v;
            else if (assigned.TryGetValue(t.Content, out int a)) expected = a;
            else if (assigned.Count == 0) expected = vocab.Count;
            else expected = Math.Max(assigned.Values.Max() + 1, vocab.Count);
            if (t.Id != expected)
                throw Error($"added_tokens[{i}].id", $"is {t.Id} for \"{t.Content}\", but Hugging Face would give it id {expected} (its id in model.vocab, else the next id after model.vocab's {vocab.Count} entries and the added tokens before it)");
            assigned[t.Content] = expected;
        }
        return added;
    }

    // ---------------------------------------------------------------- normalizer

    private List<NormalizationForm> ReadNormalizer(JsonElement n, string where)
    {
        if (n.ValueKind is JsonValueKind.Undefined or JsonValueKind.Null) return [];
        string type = TypeOf(n, where);
        switch (type)
        {
            case "NFC": return [NormalizationForm.FormC];
            case "NFD": return [NormalizationForm.FormD];
            case "NFKC": return [NormalizationForm.FormKC];
            case "NFKD": return [NormalizationForm.FormKD];
            case "Sequence":
                var forms = new List<NormalizationForm>();
                int i = 0;
                foreach (JsonElement inner in Required(n, "normalizers", JsonValueKind.Array, where + ".normalizers").EnumerateArray())
                    forms.AddRange(ReadNormalizer(inner, $"{where}.normalizers[{i++}]"));
                return forms;
            default:
                throw Error(where + ".type", $"is \"{type}\"; only NFC, NFD, NFKC, NFKD and Sequence of them are supported");
        }
    }

    // ---------------------------------------------------------------- pre-tokenizer

    /// <summary>The splitting stages in order; the ByteLevel stage that maps bytes to symbols must come last (it is
    /// implicit in the BPE here) and, with <c>use_regex</c>, contributes GPT-2's pattern as the final split.</summary>
    private List<IPieceSplitter> ReadPreTokenizer(JsonElement root)
    {
        if (!root.TryGetProperty("pre_tokenizer", out JsonElement p) || p.ValueKind == JsonValueKind.Null)
            throw Error("pre_tokenizer", "is missing; a byte-level BPE needs a ByteLevel pre-tokenizer");
        var stages = new List<(JsonElement Element, string Where)>();
        if (TypeOf(p, "pre_tokenizer") == "Sequence")
        {
            int i = 0;
            foreach (JsonElement inner in Required(p, "pretokenizers", JsonValueKind.Array, "pre_tokenizer.pretokenizers").EnumerateArray())
                stages.Add((inner, $"pre_tokenizer.pretokenizers[{i++}]"));
        }
        else
        {
            stages.Add((p, "pre_tokenizer"));
        }
        var splitters = new List<IPieceSplitter>();
        for (int i = 0; i < stages.Count; i++)
        {
            var (element, where) = stages[i];
            string type = TypeOf(element, where);
            bool last = i == stages.Count - 1;
            if (type == "ByteLevel")
            {
                if (!last) throw Error(where, "is a ByteLevel stage that is not the last one; only a final ByteLevel is supported");
                if (element.TryGetProperty("add_prefix_space", out JsonElement aps) && aps.ValueKind == JsonValueKind.True)
                    throw Error(where + ".add_prefix_space", "is true; only false is supported");
                bool useRegex = !element.TryGetProperty("use_regex", out JsonElement ur) || ur.ValueKind != JsonValueKind.False;
                if (useRegex) splitters.Add(Gpt2PatternSplitter.Instance);
                return splitters;
            }
            splitters.Add(type switch
            {
                "Split" => ReadSplit(element, where),
                "Digits" => new DigitsSplitter(element.TryGetProperty("individual_digits", out JsonElement d) && d.ValueKind == JsonValueKind.True),
                _ => throw Error(where + ".type", $"is \"{type}\"; only Split (Isolated), Digits and a final ByteLevel are supported"),
            });
        }
        throw Error("pre_tokenizer", "has no ByteLevel stage; only byte-level BPE tokenizers are supported");
    }

    private IPieceSplitter ReadSplit(JsonElement split, string where)
    {
        string behavior = Required(split, "behavior", JsonValueKind.String, where + ".behavior").GetString()!;
        if (behavior != "Isolated") throw Error(where + ".behavior", $"is \"{behavior}\"; only \"Isolated\" is supported");
        if (split.TryGetProperty("invert", out JsonElement inv) && inv.ValueKind == JsonValueKind.True)
            throw Error(where + ".invert", "is true; only false is supported");
        JsonElement pattern = Required(split, "pattern", JsonValueKind.Object, where + ".pattern");
        if (pattern.TryGetProperty("Regex", out JsonElement r) && r.ValueKind == JsonValueKind.String)
        {
            try
            {
                return new CodePointRegexSplitter(r.GetString()!);
            }
            catch (ArgumentException e)
            {
                throw Error(where + ".pattern.Regex", $"is not a pattern .NET can compile: {e.Message}");
            }
        }
        if (pattern.TryGetProperty("String", out JsonElement s) && s.ValueKind == JsonValueKind.String && s.GetString()!.Length > 0)
            return new CodePointRegexSplitter(System.Text.RegularExpressions.Regex.Escape(s.GetString()!));
        throw Error(where + ".pattern", $"must be {{\"Regex\": \"...\"}} or {{\"String\": \"...\"}}, found {pattern.GetRawText()}");
    }

    // ---------------------------------------------------------------- decoder

    private HfTokenizerJson CheckDecoder(JsonElement root)
    {
        if (!root.TryGetProperty("decoder", out JsonElement d) || d.ValueKind == JsonValueKind.Null)
            throw Error("decoder", "is missing; a byte-level BPE needs the ByteLevel decoder");
        string type = TypeOf(d, "decoder");
        if (type != "ByteLevel") throw Error("decoder.type", $"is \"{type}\"; only \"ByteLevel\" is supported");
        return this;
    }

    // ---------------------------------------------------------------- helpers

    private string TypeOf(JsonElement e, string where)
    {
        if (e.ValueKind != JsonValueKind.Object) throw Error(where, $"must be an object, found {e.ValueKind}");
        return Required(e, "type", JsonValueKind.String, where + ".type").GetString()!;
    }

    private JsonElement Required(JsonElement parent, string name, JsonValueKind kind, string where)
    {
        if (!parent.TryGetProperty(name, out JsonElement value))
            throw Error(where, "is missing");
        if (value.ValueKind != kind)
            throw Error(where, $"must be {kind}, found {value.ValueKind}");
        return value;
    }

    private ModelFormatException Error(string field, string what) =>
        new($"Tokenizer file '{_path}': {field} {what}.");
}
