using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using ArcherIlgpu.Model.IO;
using ArcherIlgpu.Model.Tests.IO;
using ArcherIlgpu.Model.Tokenizers;
using Xunit;

namespace ArcherIlgpu.Model.Tests.Tokenizers;

/// <summary>Qwen2's split pattern (Qwen2, Qwen2.5, Qwen3) on tricky text. Expected pieces are worked out by hand from
/// the pattern's alternatives, read over code points as Hugging Face's Oniguruma does.</summary>
public class Qwen2PatternTests
{
    private const string Qwen2Pattern =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    private static readonly CodePointRegexSplitter Splitter = new(Qwen2Pattern);

    private static string[] Pieces(string text)
    {
        var pieces = new List<(int Start, int Length)>();
        Splitter.Split(text, 0, text.Length, pieces);
        return pieces.Select(p => text.Substring(p.Start, p.Length)).ToArray();
    }

    [Theory]
    [InlineData("12345", new[] { "1", "2", "3", "4", "5" })]                      // \p{N}: one digit per piece
    [InlineData("x=2024;", new[] { "x", "=", "2", "0", "2", "4", ";" })]
    [InlineData("$100", new[] { "$", "1", "0", "0" })]                             // "$" cannot lead \p{N}
    [InlineData("I'm", new[] { "I", "'m" })]
    [InlineData("IT'S THEY'RE", new[] { "IT", "'S", " THEY", "'RE" })]             // (?i:...) contractions
    [InlineData("don't", new[] { "don", "'t" })]
    [InlineData("'tis", new[] { "'t", "is" })]
    [InlineData("hello\n\nworld", new[] { "hello", "\n\n", "world" })]             // \s*[\r\n]+
    [InlineData("a \n b", new[] { "a", " \n", " b" })]                             // \s* backs off to end on the newline
    [InlineData("x  y", new[] { "x", " ", " y" })]                                 // \s+(?!\S) leaves one space to " y"
    [InlineData("end   ", new[] { "end", "   " })]
    [InlineData("hi!!! you", new[] { "hi", "!!!", " you" })]
    [InlineData("ok.\n\nNext", new[] { "ok", ".\n\n", "Next" })]                   // " ?[^\s\p{L}\p{N}]+[\r\n]*"
    [InlineData("\tx", new[] { "\tx" })]                                           // a tab may lead letters
    [InlineData("😀abc", new[] { "😀abc" })]                                       // an emoji is one code point: leads letters
    [InlineData("a𠀀b", new[] { "a𠀀b" })]                                         // U+20000 is a letter (Lo)
    [InlineData(" 𝟘1", new[] { " ", "𝟘", "1" })]                                  // U+1D7D8 is a digit (Nd)
    [InlineData("中文abc 123", new[] { "中文abc", " ", "1", "2", "3" })]
    public void SplitsAsOniguruma(string text, string[] expected) => Assert.Equal(expected, Pieces(text));

    /// <summary>Why the stand-ins: .NET's Regex matches UTF-16 code units, and a surrogate half is neither \p{L} nor
    /// \p{N}, so the plain pattern gives other pieces (and so other ids) than Hugging Face for astral characters.</summary>
    [Theory]
    [InlineData("😀abc", new[] { "😀", "abc" })]
    [InlineData("a𠀀b", new[] { "a", "𠀀", "b" })]
    [InlineData(" 𝟘1", new[] { " 𝟘", "1" })]
    public void PlainDotNetRegex_SplitsAstralCharactersDifferently(string text, string[] plainDotNet)
    {
        Assert.Equal(plainDotNet, new Regex(Qwen2Pattern).Matches(text).Select(m => m.Value).ToArray());
        Assert.NotEqual(plainDotNet, Pieces(text));
    }

    [Fact]
    public void StandIns_HaveTheirCategory_AndAreNotWhiteSpaceOrAscii()
    {
        for (int c = 0; c < 30; c++)
        {
            var category = (UnicodeCategory)c;
            char s = CodePointRegexSplitter.StandIn(category);
            if (category == UnicodeCategory.Surrogate) continue;
            Assert.Equal(category, CharUnicodeInfo.GetUnicodeCategory(s));
            Assert.True(s > 0x7F, $"{category}");
            if (category is not (UnicodeCategory.SpaceSeparator or UnicodeCategory.LineSeparator or UnicodeCategory.ParagraphSeparator))
                Assert.False(Regex.IsMatch(s.ToString(), @"\s"), $"{category}");
        }
    }

    /// <summary>.NET's \s must be Unicode White_Space, as Oniguruma's is: the pattern's whitespace alternatives
    /// depend on it.</summary>
    [Fact]
    public void DotNetWhiteSpaceClass_IsUnicodeWhiteSpace()
    {
        var regex = new Regex(@"^\s$");
        for (int c = 0; c <= 0xFFFF; c++)
        {
            if (c is >= 0xD800 and <= 0xDFFF) continue;
            Assert.True(regex.IsMatch(((char)c).ToString()) == Gpt2PreTokenizer.IsWhiteSpace((char)c), $"U+{c:X4}");
        }
    }

    // ---------------------------------------------------------------- TokenizerFiles

    [Fact]
    public void TokenizerFiles_LoadsTokenizerJson_OverVocabAndMerges_AndSaveKeepsIt()
    {
        using var source = new TempDir();
        string hand = Path.Combine(TestFiles.DataDir, "hf-bpe", "hand-made", "tokenizer.json");
        File.Copy(hand, source.File("tokenizer.json"));
        // A Hugging Face folder also has vocab.json + merges.txt; tokenizer.json is the one that says how to split.
        File.Copy(Path.Combine(TestFiles.Gpt2Dir, "encoder.json"), source.File("vocab.json"));
        File.Copy(Path.Combine(TestFiles.Gpt2Dir, "vocab.bpe"), source.File("merges.txt"));
        File.WriteAllText(source.File("tokenizer_config.json"), "{\"eos_token\": \"<|im_end|>\", \"chat_template\": \"x\"}");

        var loaded = Assert.IsType<HfBpeTokenizer>(TokenizerFiles.Load(source.Path));
        Assert.Equal(272, loaded.EndOfText);
        Assert.Equal([259, 264], loaded.Encode("hello world"));

        using var saved = new TempDir();
        TokenizerFiles.Save(loaded, saved.Path);
        Assert.Equal(File.ReadAllBytes(hand), File.ReadAllBytes(saved.File("tokenizer.json")));
        Assert.Equal(File.ReadAllText(source.File("tokenizer_config.json")), File.ReadAllText(saved.File("tokenizer_config.json")));
        var again = Assert.IsType<HfBpeTokenizer>(TokenizerFiles.Load(saved.Path));
        Assert.Equal(272, again.EndOfText);

        TokenizerFiles.Save(again, saved.Path); // into its own folder: no self-overwrite
        Assert.Equal(2, Directory.GetFiles(saved.Path).Length);
    }

    [Fact]
    public void TokenizerFiles_SaveWithExplicitEnd_WritesAConfigNamingIt()
    {
        using var saved = new TempDir();
        var tok = HfBpeTokenizer.FromFile(Path.Combine(TestFiles.DataDir, "hf-bpe", "hand-made", "tokenizer.json"), "<|im_start|>");
        TokenizerFiles.Save(tok, saved.Path);
        Assert.Equal(271, TokenizerFiles.Load(saved.Path).EndOfText);
    }

    [Fact]
    public void TokenizerFiles_TokenizerJsonBesideAnotherKind_IsRefused()
    {
        using var dir = new TempDir();
        TokenizerFiles.Save(CharTokenizer.ForArithmetic(), dir.Path);
        File.Copy(Path.Combine(TestFiles.DataDir, "hf-bpe", "hand-made", "tokenizer.json"), dir.File("tokenizer.json"));
        Assert.Contains("two tokenizers", Assert.Throws<ModelFormatException>(() => TokenizerFiles.Load(dir.Path)).Message);
        Assert.Throws<InvalidOperationException>(() => TokenizerFiles.Save(CharTokenizer.ForArithmetic(), dir.Path));
        Assert.Throws<InvalidOperationException>(() => TokenizerFiles.Save(Gpt2Tokenizer.FromFolder(TestFiles.Gpt2Dir), dir.Path));
    }
}
