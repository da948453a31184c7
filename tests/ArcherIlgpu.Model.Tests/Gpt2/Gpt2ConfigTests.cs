using ArcherIlgpu.Model.Gpt2;
using ArcherIlgpu.Model.IO;
using ArcherIlgpu.Model.Training;
using Xunit;

namespace ArcherIlgpu.Model.Tests.Gpt2;

public class Gpt2ConfigTests
{
    [Theory]
    [InlineData("tiny"), InlineData("small"), InlineData("bench-s"), InlineData("bench-m"), InlineData("gpt2")]
    public void PresetsAreValid(string name) => Gpt2Config.Preset(name).Validate();

    [Fact]
    public void Gpt2PresetHasTheHuggingFaceShapeAndParameterCount()
    {
        var c = Gpt2Config.Preset("gpt2");
        Assert.Equal((50257, 1024, 12, 12, 768), (c.VocabSize, c.MaxT, c.Layers, c.Heads, c.Channels));
        Assert.Equal(124_439_808, new ParameterLayout(c).TotalLength);   // GPT-2 small, tied head
    }

    [Fact]
    public void UnknownPresetListsTheValidOnes()
    {
        var e = Assert.Throws<ArgumentException>(() => Gpt2Config.Preset("huge"));
        Assert.Contains("tiny", e.Message);
    }

    [Fact]
    public void ValidateNamesTheFieldAndTheRule()
    {
        var e = Assert.Throws<ArgumentException>(() => new Gpt2Config(64, 32, 2, 3, 32).Validate());
        Assert.Contains("Channels", e.Message); Assert.Contains("divisible by Heads", e.Message);
        e = Assert.Throws<ArgumentException>(() => new Gpt2Config(64, 0, 2, 2, 32).Validate());
        Assert.Contains("MaxT", e.Message);
        e = Assert.Throws<ArgumentException>(() => new Gpt2Config(64, 8, 2, 2, 32, LayerNormEps: 0).Validate());
        Assert.Contains("LayerNormEps", e.Message);
    }

    [Fact]
    public void HuggingFaceJsonRoundTripsAndReadsNCtx()
    {
        var c = new Gpt2Config(100, 48, 3, 4, 64, 1e-6f, 0.01f);
        Assert.Equal(c, Gpt2Config.FromHuggingFaceJson(c.ToHuggingFaceJson()));
        var old = """{"model_type": "gpt2", "vocab_size": 10, "n_ctx": 7, "n_embd": 4, "n_layer": 1, "n_head": 2}""";
        Assert.Equal(new Gpt2Config(10, 7, 1, 2, 4), Gpt2Config.FromHuggingFaceJson(old));
    }

    [Fact]
    public void BadHuggingFaceJsonNamesTheFileAndField()
    {
        var e = Assert.Throws<ModelFormatException>(() => Gpt2Config.FromHuggingFaceJson("""{"n_head": "two"}""", "x/config.json"));
        Assert.Contains("x/config.json", e.Message); Assert.Contains("n_head", e.Message);
        e = Assert.Throws<ModelFormatException>(() => Gpt2Config.FromHuggingFaceJson("""{"model_type": "llama"}"""));
        Assert.Contains("llama", e.Message);
        e = Assert.Throws<ModelFormatException>(() => Gpt2Config.FromHuggingFaceJson("""{"n_embd": 10, "n_head": 3}"""));
        Assert.Contains("divisible", e.Message);
    }

    [Fact]
    public void LayoutPutsDecayedMatmulWeightsFirstAndInitialisesLikeGpt2()
    {
        var c = new Gpt2Config(50, 16, 3, 2, 32);
        var layout = new ParameterLayout(c);
        Assert.All(layout.Specs.Where(s => s.Offset < layout.DecayedLength), s => Assert.True(s.Decayed));
        Assert.All(layout.Specs.Where(s => s.Offset >= layout.DecayedLength), s => Assert.False(s.Decayed));
        Assert.Equal(layout.TotalLength, layout.Specs.Sum(s => s.Length));
        var flat = layout.Initialize(seed: 5);
        Assert.Equal(flat, layout.Initialize(seed: 5));
        double Std(string name) { var s = layout[name]; var x = flat[(int)s.Offset..(int)(s.Offset + s.Length)]; return Math.Sqrt(x.Average(v => (double)v * v)); }
        // Sample std of n normals has relative error ~ 1/sqrt(2n): n >= 1024 here, so 10% is > 4 sigma.
        Assert.InRange(Std("h.0.mlp.c_fc.weight"), 0.018, 0.022);
        double proj = 0.02 / Math.Sqrt(2 * 3);
        Assert.InRange(Std("h.2.mlp.c_proj.weight"), proj * 0.9, proj * 1.1);
        Assert.All(flat[(int)layout["h.1.ln_2.weight"].Offset..(int)(layout["h.1.ln_2.weight"].Offset + 32)], v => Assert.Equal(1f, v));
        Assert.All(flat[(int)layout["h.1.attn.c_attn.bias"].Offset..(int)(layout["h.1.attn.c_attn.bias"].Offset + 96)], v => Assert.Equal(0f, v));
    }

    [Fact]
    public void LrScheduleWarmsUpThenDecaysToTheFloor()
    {
        var s = new LrSchedule(1e-3f, WarmupSteps: 10, TotalSteps: 110, Kind: "cosine", MinLrFraction: 0.1f).Validate();
        Assert.Equal(1e-4f, s.At(0), 6);
        Assert.Equal(1e-3f, s.At(9), 6);
        Assert.Equal(0.55e-3f, s.At(60), 6);   // half-way through the cosine: midway between peak and floor
        Assert.Equal(1e-4f, s.At(110), 6);
        Assert.Equal(1e-3f, (s with { Kind = "constant" }).At(500));
        Assert.Throws<ArgumentException>(() => (s with { Kind = "linear" }).Validate());
    }
}
