using ArcherIlgpu.Model.Tokenizers;
using Xunit;

namespace ArcherIlgpu.Model.Tests.Tokenizers;

public class CharTokenizerTests
{
    [Fact]
    public void Ids_AreEndOfTextThenAlphabetOrder()
    {
        var t = new CharTokenizer("ab\n");
        Assert.Equal(4, t.VocabSize);
        Assert.Equal(0, t.EndOfText);
        Assert.Equal("char", t.Name);
        Assert.Equal([1, 2, 3, 1], t.Encode("ab\na"));
    }

    [Fact]
    public void Decode_SkipsEndOfText() =>
        Assert.Equal("ba", new CharTokenizer("ab").Decode([2, 0, 1, 0]));

    [Theory]
    [InlineData("")]
    [InlineData("12+34=46\n")]
    [InlineData("what is (7*8)-5? #51")]
    [InlineData("100/4=25 ; 2^10=1024 ; 17%5=2")]
    public void Arithmetic_RoundTrips(string text)
    {
        var t = CharTokenizer.ForArithmetic();
        Assert.Equal(text, t.Decode(t.Encode(text)));
    }

    [Fact]
    public void Arithmetic_AlphabetIsFixed()
    {
        // Ids are baked into trained weights; this pins them.
        var t = CharTokenizer.ForArithmetic();
        Assert.Equal(1 + 10 + 2 + 18 + 26, t.VocabSize);
        Assert.Equal([1, 10, 11, 12, 13, 17], t.Encode("09 \n+="));
        Assert.Equal(t.VocabSize - 1, t.Encode("z")[0]);
    }

    [Fact]
    public void Arithmetic_RandomTextOverItsAlphabet_RoundTrips()
    {
        var t = CharTokenizer.ForArithmetic();
        var random = new Random(7);
        for (int trial = 0; trial < 200; trial++)
        {
            string text = new(Enumerable.Range(0, random.Next(50)).Select(_ => t.Alphabet[random.Next(t.Alphabet.Length)]).ToArray());
            IReadOnlyList<int> ids = t.Encode(text);
            Assert.All(ids, id => Assert.InRange(id, 1, t.VocabSize - 1));
            Assert.Equal(text, t.Decode(ids));
        }
    }

    [Fact]
    public void UnknownChar_NamesTheCharAndItsPosition()
    {
        var e = Assert.Throws<ArgumentException>(() => CharTokenizer.ForArithmetic().Encode("3+4=Seven"));
        Assert.Contains("'S'", e.Message);
        Assert.Contains("U+0053", e.Message);
        Assert.Contains("position 4", e.Message);
    }

    [Fact]
    public void UnknownControlChar_IsShownEscaped()
    {
        var e = Assert.Throws<ArgumentException>(() => new CharTokenizer("ab").Encode("a\tb"));
        Assert.Contains("'\\t' (U+0009)", e.Message);
        Assert.Contains("position 1", e.Message);
    }

    [Fact]
    public void Decode_IdOutsideVocabulary_IsAnError()
    {
        var e = Assert.Throws<ArgumentException>(() => new CharTokenizer("ab").Decode([1, 3]));
        Assert.Contains("3", e.Message);
        Assert.Contains("position 1", e.Message);
    }

    [Theory]
    [InlineData("")]
    [InlineData("aba")]
    [InlineData("a\ud800")]
    public void BadAlphabet_IsRejected(string alphabet) =>
        Assert.Throws<ArgumentException>(() => new CharTokenizer(alphabet));
}
