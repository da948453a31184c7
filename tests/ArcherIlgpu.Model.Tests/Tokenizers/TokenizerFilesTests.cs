using ArcherIlgpu.Model.IO;
using ArcherIlgpu.Model.Tests.IO;
using ArcherIlgpu.Model.Tokenizers;
using Xunit;

namespace ArcherIlgpu.Model.Tests.Tokenizers;

public class TokenizerFilesTests
{
    [Fact]
    public void CharTokenizer_SavesAndLoads()
    {
        using var dir = new TempDir();
        var original = new CharTokenizer("0123456789+=\n \"\\é");
        TokenizerFiles.Save(original, dir.Path);

        ITokenizer loaded = TokenizerFiles.Load(dir.Path);

        var c = Assert.IsType<CharTokenizer>(loaded);
        Assert.Equal(original.Alphabet, c.Alphabet);
        Assert.Equal(original.Encode("12+3=15\n\"é\\"), c.Encode("12+3=15\n\"é\\"));
        Assert.Equal(["tokenizer_char.json"], Directory.GetFiles(dir.Path).Select(Path.GetFileName));
    }

    [Fact]
    public void Gpt2Tokenizer_SavesByCopyingItsFiles_AndLoads()
    {
        using var dir = new TempDir();
        Gpt2Tokenizer original = Gpt2Tokenizer.FromFolder(TestFiles.Gpt2Dir);
        TokenizerFiles.Save(original, dir.Path);

        ITokenizer loaded = TokenizerFiles.Load(dir.Path);

        Assert.IsType<Gpt2Tokenizer>(loaded);
        Assert.Equal([15496, 995], loaded.Encode("Hello world"));
        Assert.Equal(File.ReadAllBytes(Path.Combine(TestFiles.Gpt2Dir, "vocab.bpe")), File.ReadAllBytes(dir.File("vocab.bpe")));
        Assert.Equal(File.ReadAllBytes(Path.Combine(TestFiles.Gpt2Dir, "encoder.json")), File.ReadAllBytes(dir.File("encoder.json")));

        // Saving into the folder it was loaded from is a no-op, not a self-overwrite.
        TokenizerFiles.Save(loaded, dir.Path);
        Assert.Equal(2, Directory.GetFiles(dir.Path).Length);
    }

    [Fact]
    public void Load_EmptyFolder_SaysWhatItLookedFor()
    {
        using var dir = new TempDir();
        var e = Assert.Throws<ModelFormatException>(() => TokenizerFiles.Load(dir.Path));
        Assert.Contains("tokenizer_char.json", e.Message);
        Assert.Contains("encoder.json", e.Message);
    }

    [Fact]
    public void Load_FolderWithBothKinds_IsRefused()
    {
        using var dir = new TempDir();
        TokenizerFiles.Save(CharTokenizer.ForArithmetic(), dir.Path);
        File.Copy(Path.Combine(TestFiles.Gpt2Dir, "encoder.json"), dir.File("encoder.json"));
        File.Copy(Path.Combine(TestFiles.Gpt2Dir, "vocab.bpe"), dir.File("vocab.bpe"));

        var e = Assert.Throws<ModelFormatException>(() => TokenizerFiles.Load(dir.Path));
        Assert.Contains("two tokenizers", e.Message);
        Assert.Throws<InvalidOperationException>(() => TokenizerFiles.Save(CharTokenizer.ForArithmetic(), dir.Path));
    }

    [Theory]
    [InlineData("not json")]
    [InlineData("{\"type\": \"char\"}")]
    [InlineData("{\"type\": \"bpe\", \"alphabet\": \"ab\"}")]
    [InlineData("{\"type\": \"char\", \"alphabet\": \"aa\"}")]
    [InlineData("{\"type\": \"char\", \"alphabet\": 5}")]
    public void Load_CorruptCharFile_IsModelFormatExceptionNamingIt(string content)
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("tokenizer_char.json"), content);
        var e = Assert.Throws<ModelFormatException>(() => TokenizerFiles.Load(dir.Path));
        Assert.Contains("tokenizer_char.json", e.Message);
    }

    [Fact]
    public void Save_UnknownTokenizerType_IsRefused()
    {
        using var dir = new TempDir();
        Assert.Throws<ArgumentException>(() => TokenizerFiles.Save(new FakeTokenizer(), dir.Path));
    }

    private sealed class FakeTokenizer : ITokenizer
    {
        public int VocabSize => 1;
        public int EndOfText => 0;
        public string Name => "fake";
        public IReadOnlyList<int> Encode(string text) => [];
        public string Decode(IEnumerable<int> ids) => "";
    }
}
