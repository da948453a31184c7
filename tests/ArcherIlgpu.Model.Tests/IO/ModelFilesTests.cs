using ArcherIlgpu.Model.Gpt2;
using ArcherIlgpu.Model.IO;
using ArcherIlgpu.Model.Llama;
using Xunit;

namespace ArcherIlgpu.Model.Tests.IO;

public class ModelFilesTests
{
    [Fact]
    public void TheModelTypeOfEachSupportedFolderIsRead()
    {
        using var gpt2 = new TempDir();
        Gpt2Config.Preset("tiny").Save(gpt2.Path);
        Assert.Equal("gpt2", ModelFiles.ReadModelType(gpt2.Path));
        foreach (var (preset, type) in new[] { ("llama-tiny", "llama"), ("qwen2-tiny", "qwen2"), ("qwen3-tiny", "qwen3") })
        {
            using var dir = new TempDir();
            LlamaConfig.Preset(preset).Save(dir.Path);
            Assert.Equal(type, ModelFiles.ReadModelType(dir.Path));
        }
    }

    [Theory]
    [InlineData("qwen2.5-0.5b", "qwen2"), InlineData("qwen3-0.6b", "qwen3"), InlineData("smollm2-135m", "llama"), InlineData("llama-3.2-1b", "llama")]
    public void RealConfigsAreSniffed(string file, string type) =>
        Assert.Equal(type, ModelFiles.ModelTypeFromJson(File.ReadAllText(Path.Combine(TestFiles.DataDir, "hf-configs", file + ".json"))));

    static void Fails(string json, params string[] parts)
    {
        var e = Assert.Throws<ModelFormatException>(() => ModelFiles.ModelTypeFromJson(json, "x/config.json"));
        Assert.Contains("x/config.json", e.Message);
        foreach (var part in parts) Assert.Contains(part, e.Message);
    }

    [Fact]
    public void OtherTypesFailListingTheSupportedOnes()
    {
        Fails("""{"model_type": "mistral"}""", "'mistral'", "gpt2, llama, qwen2, qwen3");
        Fails("""{"n_embd": 768}""", "model_type", "missing", "gpt2, llama, qwen2, qwen3");
        Fails("""{"model_type": 5}""", "model_type", "string");
        Fails("not json", "not valid JSON");
    }

    [Fact]
    public void AFolderWithoutConfigNamesThePath()
    {
        using var dir = new TempDir();
        var e = Assert.Throws<ModelFormatException>(() => ModelFiles.ReadModelType(dir.Path));
        Assert.Contains(dir.File("config.json"), e.Message);
    }
}
