using System.Diagnostics;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using ArcherIlgpu.Model.IO;
using ArcherIlgpu.Model.Tests.IO;
using ArcherIlgpu.Model.Tokenizers;
using Microsoft.ML.Tokenizers;
using Xunit;

namespace ArcherIlgpu.Model.Tests.Tokenizers;

public class Gpt2TokenizerTests
{
    private static readonly Lazy<Gpt2Tokenizer> Shared = new(() => Gpt2Tokenizer.FromFolder(TestFiles.Gpt2Dir));
    private static Gpt2Tokenizer Tok => Shared.Value;

    [Fact]
    public void Vocabulary_HasGpt2Sizes()
    {
        Assert.Equal(50257, Tok.VocabSize);
        Assert.Equal(50256, Tok.EndOfText);
        Assert.Equal(50000, Tok.MergeCount);
        Assert.Equal("gpt2-bpe", Tok.Name);
    }

    [Fact]
    public void KnownIds_FromTheBrief()
    {
        Assert.Equal([15496, 995], Tok.Encode("Hello world"));
        Assert.Equal([18435], Tok.Encode(" Hello"));
    }

    // openai/tiktoken tests/test_encoding.py, test_simple (gpt2 encoding).
    [Fact]
    public void KnownIds_TiktokenTestSimple()
    {
        Assert.Equal([31373, 995], Tok.Encode("hello world"));
        Assert.Equal("hello world", Tok.Decode([31373, 995]));
        Assert.Equal([31373, 220, 50256], Tok.Encode("hello <|endoftext|>"));
    }

    // openai/tiktoken tests/test_encoding.py, test_simple_repeated (gpt2 encoding).
    [Theory]
    [InlineData(1, new[] { 15 })]
    [InlineData(2, new[] { 405 })]
    [InlineData(3, new[] { 830 })]
    [InlineData(4, new[] { 2388 })]
    [InlineData(5, new[] { 20483 })]
    [InlineData(6, new[] { 10535 })]
    [InlineData(7, new[] { 24598 })]
    [InlineData(8, new[] { 8269 })]
    [InlineData(9, new[] { 10535, 830 })]
    [InlineData(10, new[] { 8269, 405 })]
    [InlineData(11, new[] { 8269, 830 })]
    [InlineData(12, new[] { 8269, 2388 })]
    [InlineData(13, new[] { 8269, 20483 })]
    [InlineData(14, new[] { 8269, 10535 })]
    [InlineData(15, new[] { 8269, 24598 })]
    [InlineData(16, new[] { 25645 })]
    [InlineData(17, new[] { 8269, 10535, 830 })]
    public void KnownIds_TiktokenRepeatedZeros(int count, int[] expected) =>
        Assert.Equal(expected, Tok.Encode(new string('0', count)));

    public static IEnumerable<object[]> Vectors()
    {
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(TestFiles.Gpt2Dir, "vectors.json")));
        int i = 0;
        foreach (JsonElement v in doc.RootElement.GetProperty("vectors").EnumerateArray())
            yield return [i++, v.GetProperty("text").GetString()!, v.GetProperty("ids").EnumerateArray().Select(x => x.GetInt32()).ToArray()];
    }

    /// <summary>Ids from an independent implementation (the JavaScript port in gpt-3-encoder; see TestData/README.md).</summary>
    [Theory, MemberData(nameof(Vectors))]
    public void MatchesIndependentImplementation(int index, string text, int[] expected)
    {
        _ = index; // keeps test names short and distinct in the runner
        Assert.Equal(expected, Tok.EncodeOrdinary(text));
        Assert.Equal(text, Tok.Decode(expected));
    }

    /// <summary>A second independent implementation: Microsoft.ML.Tokenizers' CodeGen tokenizer, which is GPT-2's
    /// byte-level BPE with a .NET regex, plus CodeGen's added tokens for runs of spaces and tabs (ids past GPT-2's
    /// vocabulary). Its regex works on UTF-16 units, so it agrees with GPT-2 only on text without
    /// supplementary-plane letters or digits. The texts here therefore stay in the Basic Multilingual Plane and
    /// have no two spaces or tabs in a row.</summary>
    [Fact]
    public void MatchesMicrosoftMLTokenizersOnBmpText()
    {
        Tokenizer reference = CreateReference();
        static bool Comparable(string t) => !t.Any(char.IsSurrogate) && !Regex.IsMatch(t, "[ \t]{2}");
        var texts = Vectors().Select(v => (string)v[1]).Where(Comparable).ToList();
        texts.AddRange(RandomBmpTexts(new Random(3), 300).Where(Comparable));
        Assert.True(texts.Count > 200);
        foreach (string text in texts)
            Assert.True(reference.EncodeToIds(text).SequenceEqual(Tok.EncodeOrdinary(text)),
                $"differs on \"{text}\": [{string.Join(",", reference.EncodeToIds(text))}] vs [{string.Join(",", Tok.EncodeOrdinary(text))}]");
    }

    [Fact]
    public void EndOfText_LiteralIsTheSpecialToken_AndOrdinaryEncodingSpellsItOut()
    {
        Assert.Equal([50256], Tok.Encode("<|endoftext|>"));
        Assert.Equal("<|endoftext|>", Tok.Decode([50256]));
        Assert.Equal([15496, 50256, 995, 50256, 50256], Tok.Encode("Hello<|endoftext|> world<|endoftext|><|endoftext|>"));

        IReadOnlyList<int> ordinary = Tok.EncodeOrdinary("<|endoftext|>");
        Assert.DoesNotContain(50256, ordinary);
        Assert.True(ordinary.Count > 1);
        Assert.Equal("<|endoftext|>", Tok.Decode(ordinary));
    }

    [Fact]
    public void PreTokenizer_SplitsLikeTheGpt2Pattern()
    {
        Assert.Equal(["Hello", ",", " world", "!"], Gpt2PreTokenizer.Split("Hello, world!"));
        Assert.Equal(["I", "'m", " here", "'s", " don", "'t"], Gpt2PreTokenizer.Split("I'm here's don't"));
        // A whitespace run gives its last space to the next word, except at the end of the text.
        Assert.Equal(["a", "  ", " b", "  "], Gpt2PreTokenizer.Split("a   b  "));
        Assert.Equal(["a", "\n", "\n", "b"], Gpt2PreTokenizer.Split("a\n\nb"));
        Assert.Equal(["x", " \n", " y"], Gpt2PreTokenizer.Split("x \n y"));
        // The contractions are lower case only, and a space never leads a contraction.
        Assert.Equal(["'", "S", " '", "re"], Gpt2PreTokenizer.Split("'S 're"));
        Assert.Equal([" 12", "+", "34", "=?"], Gpt2PreTokenizer.Split(" 12+34=?"));
        // A letter outside the Basic Multilingual Plane is one letter, not two "other" surrogates.
        Assert.Equal([" \U00020000abc", " \U0001D7D8\U0001D7D9"], Gpt2PreTokenizer.Split(" \U00020000abc \U0001D7D8\U0001D7D9"));
    }

    /// <summary>On text without surrogates, .NET's Regex running GPT-2's pattern is an independent reference for
    /// the hand-written scanner (its \s is [\f\n\r\t\v\x85\p{Z}], the same set as Unicode White_Space).</summary>
    [Fact]
    public void PreTokenizer_MatchesDotNetRegexOnBmpText()
    {
        var pattern = new Regex(@"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+", RegexOptions.CultureInvariant);
        // Characters that sit on the pattern's edges: contraction letters, each whitespace kind, letters,
        // numbers and "other" from several blocks, a combining mark (Mn is "other").
        const string alphabet = "'srtevlmdSRE  \n\t\r\u000B\u00A0\u2003\u3000\u0085aZé中ß1٣½Ⅻ!.,-_\u0301\u200D€";
        var random = new Random(5);
        for (int trial = 0; trial < 2000; trial++)
        {
            string text = new(Enumerable.Range(0, random.Next(1, 16)).Select(_ => alphabet[random.Next(alphabet.Length)]).ToArray());
            string[] expected = pattern.Matches(text).Select(m => m.Value).ToArray();
            Assert.True(expected.SequenceEqual(Gpt2PreTokenizer.Split(text)),
                $"\"{Regex.Escape(text)}\": regex [{string.Join("|", expected.Select(Regex.Escape))}] vs [{string.Join("|", Gpt2PreTokenizer.Split(text).Select(Regex.Escape))}]");
        }
    }

    public static TheoryData<string> UnicodeTexts => new()
    {
        "",
        "Emoji 😀👍🏽👨‍👩‍👧‍👦🇯🇵 done",
        "日本語と中文、한국어",
        "e\u0301\u0302\u0303 Z\u0335\u0321a\u0337 \u0915\u094D\u0937",
        "\U00020000\U0002A6D6 \U0001F600\U0001F9D1\u200D\U0001F680",
        "\u0000\u0001\u001F\u007F\u0085\u00A0\u00AD\u2028\uFEFF\uFFFD\uFFFF",
        "tabs\t\tand\r\n\r\nspaces     end   ",
        "mixed<|endoftext|>special <|endoftext|>\n<|endoftext",
    };

    [Theory, MemberData(nameof(UnicodeTexts))]
    public void RoundTrips_Unicode(string text) => Assert.Equal(text, Tok.Decode(Tok.Encode(text)));

    [Fact]
    public void RoundTrips_RandomScalarValueStrings()
    {
        var random = new Random(11);
        for (int trial = 0; trial < 300; trial++)
        {
            string text = RandomScalarString(random, random.Next(1, 40));
            Assert.Equal(text, Tok.Decode(Tok.Encode(text)));
        }
    }

    [Fact]
    public void RoundTrips_RandomBytesReadAsUtf8()
    {
        // Random bytes read as UTF-8 give strings full of U+FFFD and odd mixtures, all valid UTF-16.
        var random = new Random(12);
        for (int trial = 0; trial < 300; trial++)
        {
            var bytes = new byte[random.Next(1, 60)];
            random.NextBytes(bytes);
            string text = Encoding.UTF8.GetString(bytes);
            Assert.Equal(text, Tok.Decode(Tok.Encode(text)));
        }
    }

    [Fact]
    public void EveryToken_RoundTripsThroughItsBytes()
    {
        // Each token decodes to its bytes, and those bytes, if they are whole UTF-8 text that the pattern keeps
        // in one piece, re-encode to the same single token (tiktoken's test_single_token_roundtrip, over text).
        // Every third id keeps the test quick; the stride is coprime with nothing in the vocabulary's layout.
        int checkedTokens = 0;
        for (int id = 0; id < Tok.VocabSize - 1; id += 3)
        {
            byte[] bytes = Tok.TokenBytes(id).ToArray();
            string text;
            try { text = new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(bytes); }
            catch (DecoderFallbackException) { continue; }
            if (Gpt2PreTokenizer.Split(text).Count != 1) continue;
            Assert.Equal([id], Tok.EncodeOrdinary(text));
            checkedTokens++;
        }
        Assert.True(checkedTokens > 15000, $"only {checkedTokens} tokens checked");
    }

    [Fact]
    public void Decode_PartialUtf8_GivesReplacementCharacter()
    {
        IReadOnlyList<int> ids = Tok.Encode("😀"); // four bytes, more than one token
        Assert.True(ids.Count > 1);
        Assert.Contains('\uFFFD', Tok.Decode([ids[0]]));
    }

    [Fact]
    public void Decode_UnknownId_IsAnError()
    {
        var e = Assert.Throws<ArgumentException>(() => Tok.Decode([464, 50257]));
        Assert.Contains("50257", e.Message);
        Assert.Throws<ArgumentException>(() => Tok.Decode([-1]));
    }

    [Fact]
    public void LoneSurrogate_EncodesAsReplacementCharacter() =>
        Assert.Equal(Tok.Encode("a\uFFFDb"), Tok.Encode("a\uD83Db"));

    // tiktoken's test_catastrophically_repetitive: long runs must neither hang nor lose text.
    [Theory]
    [InlineData("^")]
    [InlineData("0")]
    [InlineData("a")]
    [InlineData("'s")]
    [InlineData(" ")]
    [InlineData("\n")]
    public void LongRepetitiveText_RoundTripsQuickly(string unit)
    {
        var clock = Stopwatch.StartNew();
        string big = string.Concat(Enumerable.Repeat(unit, 10_000));
        foreach (string text in new[] { big, " " + big, " " + big + "\n" })
            Assert.Equal(text, Tok.Decode(Tok.Encode(text)));
        // Milliseconds when the machine is idle; the bound only has to catch a hang or a blow-up that is
        // quadratic in the piece length, and must survive a heavily shared CI machine.
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(20), $"took {clock.Elapsed}");
    }

    [Fact]
    public void FromFolder_WithoutFiles_NamesWhatItLookedFor()
    {
        using var dir = new TempDir();
        var e = Assert.Throws<ModelFormatException>(() => Gpt2Tokenizer.FromFolder(dir.Path));
        Assert.Contains("encoder.json", e.Message);
        Assert.Contains("merges.txt", e.Message);
    }

    [Fact]
    public void FromFolder_AcceptsHuggingFaceNames()
    {
        using var dir = new TempDir();
        File.Copy(Path.Combine(TestFiles.Gpt2Dir, "encoder.json"), dir.File("vocab.json"));
        File.Copy(Path.Combine(TestFiles.Gpt2Dir, "vocab.bpe"), dir.File("merges.txt"));
        Assert.Equal([15496, 995], Gpt2Tokenizer.FromFolder(dir.Path).Encode("Hello world"));
    }

    [Fact]
    public void BadMergeLine_NamesFileAndLine()
    {
        using var dir = new TempDir();
        File.Copy(Path.Combine(TestFiles.Gpt2Dir, "encoder.json"), dir.File("encoder.json"));
        File.WriteAllText(dir.File("vocab.bpe"), "#version: 0.2\nĠ t\nthis line is bad\n");
        var e = Assert.Throws<ModelFormatException>(() => Gpt2Tokenizer.FromFolder(dir.Path));
        Assert.Contains("vocab.bpe", e.Message);
        Assert.Contains("line 3", e.Message);
    }

    [Fact]
    public void MergeOfUnknownTokens_NamesTheToken()
    {
        using var dir = new TempDir();
        File.Copy(Path.Combine(TestFiles.Gpt2Dir, "encoder.json"), dir.File("encoder.json"));
        File.WriteAllText(dir.File("vocab.bpe"), "#version: 0.2\nĠ t\nqqq zzz\n");
        var e = Assert.Throws<ModelFormatException>(() => Gpt2Tokenizer.FromFolder(dir.Path));
        Assert.Contains("line 3", e.Message);
        Assert.Contains("\"qqq\"", e.Message);
    }

    [Theory]
    [InlineData("{\"a\": ")]
    [InlineData("[1, 2]")]
    [InlineData("{\"a\": \"x\"}")]
    [InlineData("{\"a\": 1.5}")]
    [InlineData("{\"a\": 1, \"a\": 2}")]
    public void BadEncoderJson_IsModelFormatException(string json)
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("encoder.json"), json);
        File.WriteAllText(dir.File("vocab.bpe"), "#version: 0.2\n");
        var e = Assert.Throws<ModelFormatException>(() => Gpt2Tokenizer.FromFolder(dir.Path));
        Assert.Contains("encoder.json", e.Message);
    }

    private static Tokenizer CreateReference()
    {
        using Stream vocab = File.OpenRead(Path.Combine(TestFiles.Gpt2Dir, "encoder.json"));
        using Stream merges = File.OpenRead(Path.Combine(TestFiles.Gpt2Dir, "vocab.bpe"));
        return CodeGenTokenizer.Create(vocab, merges, addPrefixSpace: false, addBeginOfSentence: false, addEndOfSentence: false);
    }

    /// <summary>Words from several scripts, digits, punctuation and whitespace runs, glued at random.</summary>
    private static IEnumerable<string> RandomBmpTexts(Random random, int count)
    {
        string[] parts =
        [
            "the", "The", "cat", "'s", "'ll", "'RE", "don't", "12", "3.5", "1,000", " ", "\n", "\n\n", "\t", " \n ", "\r\n",
            "!", "?!", "...", "(", ")", "{x}", "#", "==", "->", "é", "ñ", "über", "Москва", "東京", "你好", "한국", "ة", "१२",
            "½", "Ⅻ", "α", "∑", "—", "“", "”", "\u00A0", "\u3000", "\u0301", "€",
        ];
        for (int i = 0; i < count; i++)
        {
            var sb = new StringBuilder();
            int n = random.Next(1, 12);
            for (int k = 0; k < n; k++) sb.Append(parts[random.Next(parts.Length)]);
            yield return sb.ToString();
        }
    }

    private static string RandomScalarString(Random random, int length)
    {
        var sb = new StringBuilder();
        for (int i = 0; i < length; i++)
        {
            // Mostly ASCII and BMP so pieces form, with supplementary characters mixed in.
            int value = random.Next(4) switch
            {
                0 => random.Next(0x20, 0x7F),
                1 => random.Next(0, 0x80),
                2 => random.Next(0x80, 0xD800),
                _ => random.Next(0x10000, 0x110000),
            };
            sb.Append(new Rune(value).ToString());
        }
        return sb.ToString();
    }
}
