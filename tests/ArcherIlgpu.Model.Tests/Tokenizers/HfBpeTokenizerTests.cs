using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using ArcherIlgpu.Model.IO;
using ArcherIlgpu.Model.Tests.IO;
using ArcherIlgpu.Model.Tokenizers;
using Xunit;

namespace ArcherIlgpu.Model.Tests.Tokenizers;

public class HfBpeTokenizerTests
{
    private static string HfDir => Path.Combine(TestFiles.DataDir, "hf-bpe");
    private static readonly Dictionary<string, Lazy<HfBpeTokenizer>> Loaded = new[] { "hand-made", "qwen3-mini", "llama3-style", "smollm2-style" }
        .ToDictionary(n => n, n => new Lazy<HfBpeTokenizer>(() => HfBpeTokenizer.FromFolder(Path.Combine(HfDir, n))));
    private static HfBpeTokenizer Tok(string name) => Loaded[name].Value;

    // ---------------------------------------------------------------- the hand-made file

    // hand-made/tokenizer.json: the id of each byte's one-symbol token is the byte itself (space = "Ġ" = 32,
    // 'h' = 104, ...); merges, rank: result (id)
    //   0 h+e: he (256)   1 l+l: ll (257)   2 he+ll: hell (258)   3 hell+o: hello (259)   4 Ġ+w: Ġw (260)
    //   5 o+r: or (261)   6 Ġw+or: Ġwor (262)   7 l+d: ld (263)   8 Ġwor+ld: Ġworld (264)   9 Ġ+Ġ: ĠĠ (265)
    //   10 1+2: 12 (266)   11 e+l: el (267)   12 Ã+©: Ã© (268, "é" = C3 A9)   13 Ġ+h: Ġh (269)
    // added tokens (Hugging Face numbers them after the 270 vocabulary entries): <|endoftext|> 270,
    // <|im_start|> 271, <|im_end|> 272. Pre-tokenizer: Qwen2's pattern; normalizer NFC.
    //
    // "hello world" -> pieces "hello", " world".
    //   hello: h e l l o -> rank 0 (h e; "e l" is rank 11, later) -> he l l o -> rank 1 -> he ll o -> rank 2 -> hell o
    //          -> rank 3 -> hello = 259.
    //   " world": Ġ w o r l d -> lowest of (Ġw 4, or 5, ld 7) is 4 -> Ġw o r l d -> or (5) -> Ġw or l d
    //          -> Ġwor (6) -> Ġwor l d -> ld (7) -> Ġwor ld -> Ġworld (8) = 264.
    // "hello  world": "\s+(?!\S)" leaves the last space to " world": pieces "hello", " ", " world" -> 259, 32, 264.
    // " hello": one piece Ġ h e l l o; "h e" (0) beats "Ġ h" (13), then as above: Ġ hello, and (Ġ, hello) is no
    //   merge -> 32, 259.
    // "12 apples": \p{N} takes one digit at a time, so merge 10 (1+2) never applies -> 49, 50; " apples" has no
    //   merge -> 32 97 112 112 108 101 115.
    // "e\u0301" (e + combining acute): NFC makes it U+00E9 = C3 A9 -> merge 12 -> 268.
    // "<|im_start|>hello<|im_end|>" -> 271, 259, 272.
    [Theory]
    [InlineData("hello world", new[] { 259, 264 })]
    [InlineData("hello  world", new[] { 259, 32, 264 })]
    [InlineData(" hello", new[] { 32, 259 })]
    [InlineData("12 apples", new[] { 49, 50, 32, 97, 112, 112, 108, 101, 115 })]
    [InlineData("<|im_start|>hello<|im_end|>", new[] { 271, 259, 272 })]
    [InlineData("hello<|endoftext|>", new[] { 259, 270 })]
    public void HandMade_HandWorkedIds(string text, int[] expected)
    {
        Assert.Equal(expected, Tok("hand-made").Encode(text));
        Assert.Equal(text, Tok("hand-made").Decode(expected));
    }

    [Fact]
    public void HandMade_NfcComposesBeforeMerging()
    {
        Assert.Equal([268], Tok("hand-made").Encode("e\u0301"));
        Assert.Equal("\u00e9", Tok("hand-made").Decode([268]));
    }

    [Fact]
    public void HandMade_Sizes()
    {
        HfBpeTokenizer t = Tok("hand-made");
        Assert.Equal(273, t.VocabSize);
        Assert.Equal(14, t.MergeCount);
        Assert.Equal(270, t.EndOfText);
        Assert.Equal("hf-bpe", t.Name);
        Assert.Equal([NormalizationForm.FormC], t.Normalizers);
        Assert.Equal(271, t.IdOf("<|im_start|>"));
        Assert.Equal(264, t.IdOf("Ġworld"));
        Assert.Null(t.IdOf("nope"));
    }

    // ---------------------------------------------------------------- against Hugging Face's own library

    public static IEnumerable<object[]> Vectors()
    {
        foreach (string name in new[] { "qwen3-mini", "llama3-style", "smollm2-style" })
        {
            using JsonDocument doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(HfDir, name, "vectors.json")));
            int i = 0;
            foreach (JsonElement v in doc.RootElement.GetProperty("vectors").EnumerateArray())
                yield return [name, i++, v.GetProperty("text").GetString()!];
        }
    }

    private static (int[] Ids, string Decoded) Expected(string name, int index)
    {
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(HfDir, name, "vectors.json")));
        JsonElement v = doc.RootElement.GetProperty("vectors")[index];
        return (v.GetProperty("ids").EnumerateArray().Select(x => x.GetInt32()).ToArray(), v.GetProperty("decoded").GetString()!);
    }

    /// <summary>Ids and decoded text from Hugging Face's tokenizers (the Rust crate) on the same files; see
    /// TestData/README.md. The decoded text is the normalized text (qwen3-mini: NFC by <see cref="UnicodeNormalizer"/>).</summary>
    [Theory, MemberData(nameof(Vectors))]
    public void MatchesHuggingFace(string name, int index, string text)
    {
        HfBpeTokenizer tok = Tok(name);
        var (ids, decoded) = Expected(name, index);
        Assert.Equal(ids, tok.Encode(text));
        Assert.Equal(decoded, tok.Decode(ids));
    }

    [Theory]
    [InlineData("qwen3-mini")]
    [InlineData("llama3-style")]
    [InlineData("smollm2-style")]
    public void RoundTrips_SpecialTokensEmojiCjk(string name)
    {
        HfBpeTokenizer tok = Tok(name);
        foreach (string s in new[]
                 {
                     "<|im_start|>user\n你好 👋🏽 family 👨‍👩‍👧<|im_end|>\n", "𠀀𠀁 a𠀀b 😀abc 𝟘𝟙", "  spaces \t\n\r\n tabs  ",
                     "日本語 한국어 Привет <|endoftext|><|endoftext|>", "",
                 })
            Assert.Equal(s, tok.Decode(tok.Encode(s)));
    }

    [Fact]
    public void LoneSurrogate_EncodesAsReplacementCharacter()
    {
        HfBpeTokenizer tok = Tok("qwen3-mini");
        Assert.Equal(tok.Encode("a\uFFFDb"), tok.Encode("a\uD800b"));
        Assert.Equal("a\uFFFDb", tok.Decode(tok.Encode("a\uDC00b")));
    }

    [Fact]
    public void IgnoreMerges_TakesAVocabularyPieceWhole()
    {
        HfBpeTokenizer llama = Tok("llama3-style"), qwen = Tok("qwen3-mini");
        Assert.True(llama.IgnoreMerges);
        int whole = llama.IdOf("Ġunderstanding")!.Value;
        Assert.Equal([whole], llama.Encode(" understanding"));
        Assert.True(qwen.Encode(" understanding").Count > 1); // the first 6000 merges do not reach it
    }

    // ---------------------------------------------------------------- GPT-2

    /// <summary>GPT-2's files written as Hugging Face's gpt2 tokenizer.json (ByteLevel pre-tokenizer with use_regex, the
    /// end token in the vocabulary and in added_tokens) encode exactly as our Gpt2Tokenizer.</summary>
    [Fact]
    public void Gpt2AsTokenizerJson_AgreesWithGpt2Tokenizer()
    {
        using var dir = new TempDir();
        WriteGpt2TokenizerJson(dir.File("tokenizer.json"));
        var hf = HfBpeTokenizer.FromFolder(dir.Path);
        var gpt2 = Gpt2Tokenizer.FromFolder(TestFiles.Gpt2Dir);
        Assert.Equal(gpt2.VocabSize, hf.VocabSize);
        Assert.Equal(gpt2.EndOfText, hf.EndOfText);
        Assert.Equal(gpt2.MergeCount, hf.MergeCount);
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(TestFiles.Gpt2Dir, "vectors.json")));
        var texts = doc.RootElement.GetProperty("vectors").EnumerateArray().Select(v => v.GetProperty("text").GetString()!)
            .Concat(["hello <|endoftext|> world", "12345 'S 'll", "😀abc a𠀀b"]).ToList();
        foreach (string text in texts)
        {
            Assert.Equal(gpt2.Encode(text), hf.Encode(text));
            Assert.Equal(text, hf.Decode(hf.Encode(text)));
        }
    }

    internal static void WriteGpt2TokenizerJson(string path)
    {
        var vocab = JsonNode.Parse(File.ReadAllText(Path.Combine(TestFiles.Gpt2Dir, "encoder.json")))!;
        var merges = new JsonArray(File.ReadAllLines(Path.Combine(TestFiles.Gpt2Dir, "vocab.bpe"))
            .Skip(1).Where(l => l.Length > 0).Select(l => (JsonNode)JsonValue.Create(l)!).ToArray());
        var byteLevel = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = true };
        var root = new JsonObject
        {
            ["version"] = "1.0", ["truncation"] = null, ["padding"] = null,
            ["added_tokens"] = new JsonArray(new JsonObject
            {
                ["id"] = 50256, ["content"] = "<|endoftext|>", ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false,
                ["normalized"] = true, ["special"] = true,
            }),
            ["normalizer"] = null, ["pre_tokenizer"] = byteLevel, ["post_processor"] = byteLevel.DeepClone(), ["decoder"] = byteLevel.DeepClone(),
            ["model"] = new JsonObject { ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = null, ["vocab"] = vocab, ["merges"] = merges },
        };
        File.WriteAllText(path, root.ToJsonString());
    }

    // ---------------------------------------------------------------- the end-of-text token

    [Fact]
    public void EndOfText_FromConfig_ExplicitOrFallback()
    {
        using var dir = new TempDir();
        File.Copy(Path.Combine(HfDir, "hand-made", "tokenizer.json"), dir.File("tokenizer.json"));

        HfBpeTokenizer fallback = HfBpeTokenizer.FromFolder(dir.Path);
        Assert.Equal(("<|endoftext|>", 270), (fallback.EndOfTextToken, fallback.EndOfText));
        Assert.Contains("first known end token", fallback.EndOfTextSource);

        File.WriteAllText(dir.File("tokenizer_config.json"), "{\"eos_token\": {\"content\": \"<|im_end|>\", \"special\": true}}");
        HfBpeTokenizer fromConfig = HfBpeTokenizer.FromFolder(dir.Path);
        Assert.Equal(272, fromConfig.EndOfText);
        Assert.Contains("tokenizer_config.json", fromConfig.EndOfTextSource);

        Assert.Equal(271, HfBpeTokenizer.FromFolder(dir.Path, "<|im_start|>").EndOfText);

        File.WriteAllText(dir.File("tokenizer_config.json"), "{\"eos_token\": \"<|nope|>\"}");
        var e = Assert.Throws<ModelFormatException>(() => HfBpeTokenizer.FromFolder(dir.Path));
        Assert.Contains("<|nope|>", e.Message);
    }

    [Fact]
    public void EndOfText_NoneKnown_SaysWhatToDo()
    {
        using var dir = new TempDir();
        JsonNode root = HandMadeJson();
        root["added_tokens"] = new JsonArray();
        File.WriteAllText(dir.File("tokenizer.json"), root.ToJsonString());
        var e = Assert.Throws<ModelFormatException>(() => HfBpeTokenizer.FromFolder(dir.Path));
        Assert.Contains("eos_token", e.Message);
    }

    // ---------------------------------------------------------------- refused content

    public static IEnumerable<object[]> UnsupportedEdits() =>
    [
        ["model.type", (Action<JsonNode>)(r => r["model"]!["type"] = "WordPiece")],
        ["model.type", (Action<JsonNode>)(r => r["model"]!["type"] = "Unigram")],
        ["model.byte_fallback", (Action<JsonNode>)(r => r["model"]!["byte_fallback"] = true)],
        ["model.dropout", (Action<JsonNode>)(r => r["model"]!["dropout"] = 0.1)],
        ["model.continuing_subword_prefix", (Action<JsonNode>)(r => r["model"]!["continuing_subword_prefix"] = "##")],
        ["model.merges[3]", (Action<JsonNode>)(r => r["model"]!["merges"]![3] = "a b c")],
        ["model.merges[3]", (Action<JsonNode>)(r => r["model"]!["merges"]![3] = new JsonArray("hell", "zzz"))],
        ["model.vocab", (Action<JsonNode>)(r => r["model"]!["vocab"]!.AsObject().Remove("Ġ"))],
        ["normalizer.type", (Action<JsonNode>)(r => r["normalizer"] = new JsonObject { ["type"] = "Lowercase" })],
        ["normalizer.normalizers[1].type", (Action<JsonNode>)(r => r["normalizer"] = JsonNode.Parse("{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFC\"},{\"type\":\"Strip\"}]}"))],
        ["pre_tokenizer.pretokenizers[0].behavior", (Action<JsonNode>)(r => r["pre_tokenizer"]!["pretokenizers"]![0]!["behavior"] = "Removed")],
        ["pre_tokenizer.pretokenizers[0].invert", (Action<JsonNode>)(r => r["pre_tokenizer"]!["pretokenizers"]![0]!["invert"] = true)],
        ["pre_tokenizer.pretokenizers[0].pattern.Regex", (Action<JsonNode>)(r => r["pre_tokenizer"]!["pretokenizers"]![0]!["pattern"]!["Regex"] = "(unclosed")],
        ["pre_tokenizer.type", (Action<JsonNode>)(r => r["pre_tokenizer"] = new JsonObject { ["type"] = "Metaspace" })],
        ["pre_tokenizer.pretokenizers[1].add_prefix_space", (Action<JsonNode>)(r => r["pre_tokenizer"]!["pretokenizers"]![1]!["add_prefix_space"] = true)],
        ["decoder.type", (Action<JsonNode>)(r => r["decoder"] = new JsonObject { ["type"] = "Metaspace" })],
        ["added_tokens[1].lstrip", (Action<JsonNode>)(r => r["added_tokens"]![1]!["lstrip"] = true)],
        ["added_tokens[1].id", (Action<JsonNode>)(r => r["added_tokens"]![1]!["id"] = 300)],
        ["truncation", (Action<JsonNode>)(r => r["truncation"] = new JsonObject { ["max_length"] = 512 })],
    ];

    [Theory, MemberData(nameof(UnsupportedEdits))]
    public void UnsupportedContent_FailsNamingTheField(string field, Action<JsonNode> edit)
    {
        using var dir = new TempDir();
        JsonNode root = HandMadeJson();
        edit(root);
        File.WriteAllText(dir.File("tokenizer.json"), root.ToJsonString());
        var e = Assert.Throws<ModelFormatException>(() => HfBpeTokenizer.FromFolder(dir.Path));
        Assert.Contains(field, e.Message);
        Assert.Contains("tokenizer.json", e.Message);
    }

    [Fact]
    public void NotJson_IsModelFormatException()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("tokenizer.json"), "{ nope");
        Assert.Contains("not valid JSON", Assert.Throws<ModelFormatException>(() => HfBpeTokenizer.FromFolder(dir.Path)).Message);
    }

    /// <summary>System.Text.Json quotes a bad literal with the rest of the file; the error stays one line with the position.</summary>
    [Theory]
    [InlineData("tokenizer.json")]
    [InlineData("tokenizer_char.json")]
    [InlineData("vocab.json")]
    public void ABadLiteralInATokenizerFileIsOneLine(string file)
    {
        using var dir = new TempDir();
        if (file == "vocab.json") File.WriteAllText(dir.File("merges.txt"), "#version: 0.2\n");
        File.WriteAllText(dir.File(file), "{\"model\": tru\n  \"a\": 1,\n  \"b\": 2\n}\n");
        var e = Assert.Throws<ModelFormatException>(() => TokenizerFiles.Load(dir.Path));
        Assert.Contains($"'{dir.File(file)}' is not valid JSON", e.Message);
        Assert.DoesNotContain('\n', e.Message);
        Assert.Contains("line 1", e.Message);
    }

    [Fact]
    public void Decode_UnknownId_Throws()
    {
        Assert.Throws<ArgumentException>(() => Tok("hand-made").Decode([273]));
        Assert.Throws<ArgumentException>(() => Tok("hand-made").Decode([-1]));
    }

    internal static JsonNode HandMadeJson() => JsonNode.Parse(File.ReadAllText(Path.Combine(HfDir, "hand-made", "tokenizer.json")))!;
}

/// <summary>Full published tokenizers are too big to check in (5-6 MB). Point ARCHER_HF_TOKENIZER_DIRS at folders
/// (separated by the path separator) that each hold a tokenizer.json and a vectors.json made as in
/// TestData/hf-bpe/make_vectors.js, and this compares every vector; without it the test skips.</summary>
public class HfBpeFullTokenizerTests
{
    [SkippableFact]
    public void FullTokenizers_MatchHuggingFace()
    {
        string? dirs = Environment.GetEnvironmentVariable("ARCHER_HF_TOKENIZER_DIRS");
        Skip.If(string.IsNullOrEmpty(dirs), "ARCHER_HF_TOKENIZER_DIRS is not set");
        foreach (string dir in dirs!.Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
        {
            var tok = HfBpeTokenizer.FromFolder(dir);
            using JsonDocument doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(dir, "vectors.json")));
            int checkedCount = 0;
            foreach (JsonElement v in doc.RootElement.GetProperty("vectors").EnumerateArray())
            {
                string text = v.GetProperty("text").GetString()!, decoded = v.GetProperty("decoded").GetString()!;
                int[] ids = v.GetProperty("ids").EnumerateArray().Select(x => x.GetInt32()).ToArray();
                Assert.True(ids.SequenceEqual(tok.Encode(text)), $"{dir}: \"{text}\"");
                Assert.Equal(decoded, tok.Decode(ids));
                checkedCount++;
            }
            Assert.True(checkedCount > 0);
        }
    }
}
