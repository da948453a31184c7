using ArcherIlgpu.Kernels;
using ArcherIlgpu.Model.Gpt2;
using ArcherIlgpu.Model.IO;
using ArcherIlgpu.Model.Training;
using Xunit;

namespace ArcherIlgpu.Model.Tests.Gpt2;

[Collection(Gpt2Collection.Name)]
public sealed class Gpt2CheckpointTests : IDisposable
{
    readonly string dir = Path.Combine(Path.GetTempPath(), "archer-gpt2-ckpt-" + Guid.NewGuid().ToString("N"));
    public void Dispose() { if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true); }

    static Backend Cpu => ModelBackends.Get("cpu");
    static readonly Gpt2Config Config = new(VocabSize: 19, MaxT: 8, Layers: 2, Heads: 2, Channels: 8);

    [Fact]
    public void SaveThenLoadIsExact()
    {
        var layout = new ParameterLayout(Config);
        var flat = Gpt2TestData.RandomParameters(layout, seed: 31);
        using var model = new Gpt2Model(Cpu, Config, flat);
        Checkpoint.Save(model, dir);
        Assert.True(File.Exists(Path.Combine(dir, "config.json")));
        using var loaded = Checkpoint.Load(Cpu, dir);
        Assert.Equal(Config, loaded.Config);
        Assert.Equal(flat, loaded.DownloadParameters());   // bit-exact: float32 in, float32 out
    }

    [Fact]
    public void SavedFileHasHuggingFaceNamesAndConv1DLayout()
    {
        var layout = new ParameterLayout(Config);
        var flat = Gpt2TestData.RandomParameters(layout, seed: 32);
        using var model = new Gpt2Model(Cpu, Config, flat);
        Checkpoint.Save(model, dir);
        var tensors = SafeTensors.Read(Path.Combine(dir, Checkpoint.WeightsFile));
        Assert.Equal(ParameterLayout.NamesAndShapes(Config).Select(x => x.Name).Order(), tensors.Keys.Order());
        var attn = tensors["h.1.attn.c_attn.weight"];
        Assert.Equal(new long[] { 8, 24 }, attn.Shape);   // [in, out]
        var spec = layout["h.1.attn.c_attn.weight"];     // ours: [out = 24, in = 8]
        for (int o = 0; o < 24; o++)
            for (int k = 0; k < 8; k++)
                Assert.Equal(flat[spec.Offset + o * 8 + k], attn.Data[k * 24 + o]);
        Assert.Equal(new long[] { 19, 8 }, tensors["wte.weight"].Shape);
    }

    /// <summary>Writes the parameters the way a Hugging Face export may: "transformer." prefix, mask buffers, a tied lm_head.</summary>
    void WriteHuggingFaceStyle(float[] flat, Func<NamedTensor, NamedTensor?>? edit = null)
    {
        Directory.CreateDirectory(dir);
        var layout = new ParameterLayout(Config);
        var list = new List<NamedTensor>();
        foreach (var (name, shape, kind) in ParameterLayout.NamesAndShapes(Config))
        {
            var spec = layout[name];
            var data = flat[(int)spec.Offset..(int)(spec.Offset + spec.Length)];
            NamedTensor t;
            if (spec.TransposedInFile)
            {
                // Conv1D stores [in, out], written out here independently of the checkpoint code.
                int outs = shape[0], ins = shape[1];
                var tr = new float[data.Length];
                for (int o = 0; o < outs; o++) for (int k = 0; k < ins; k++) tr[k * outs + o] = data[o * ins + k];
                t = new NamedTensor("transformer." + name, [ins, outs], tr);
            }
            else t = new NamedTensor("transformer." + name, shape.Select(s => (long)s).ToArray(), data);
            var edited = edit is null ? t : edit(t);
            if (edited is not null) list.Add(edited);
        }
        for (int l = 0; l < Config.Layers; l++)
        {
            list.Add(new NamedTensor($"transformer.h.{l}.attn.bias", [1, 1, 8, 8], new float[64]));
            list.Add(new NamedTensor($"transformer.h.{l}.attn.masked_bias", [1], [-1e4f]));
        }
        var wte = list.First(t => t.Name == "transformer.wte.weight");
        list.Add(new NamedTensor("lm_head.weight", wte.Shape, wte.Data));
        SafeTensors.Write(Path.Combine(dir, "model.safetensors"), list, new Dictionary<string, string> { ["format"] = "pt" });
        Config.Save(dir);
    }

    [Fact]
    public void LoadsHuggingFaceNamesWithPrefixBuffersAndTiedHead()
    {
        var flat = Gpt2TestData.RandomParameters(new ParameterLayout(Config), seed: 33);
        WriteHuggingFaceStyle(flat);
        using var loaded = Checkpoint.Load(Cpu, dir);
        Assert.Equal(flat, loaded.DownloadParameters());
    }

    [Fact]
    public void MissingTensorErrorNamesItAndItsShape()
    {
        WriteHuggingFaceStyle(Gpt2TestData.RandomParameters(new ParameterLayout(Config), 34),
            t => t.Name == "transformer.h.1.mlp.c_fc.bias" ? null : t);
        var e = Assert.Throws<ModelFormatException>(() => Checkpoint.Load(Cpu, dir));
        Assert.Contains("h.1.mlp.c_fc.bias", e.Message);
        Assert.Contains("[32]", e.Message);
    }

    [Fact]
    public void MisShapedTensorErrorNamesItAndTheExpectedShape()
    {
        // Our [out, in] orientation instead of Conv1D's [in, out].
        WriteHuggingFaceStyle(Gpt2TestData.RandomParameters(new ParameterLayout(Config), 35),
            t => t.Name == "transformer.h.0.mlp.c_proj.weight" ? t with { Shape = [8, 32] } : t);
        var e = Assert.Throws<ModelFormatException>(() => Checkpoint.Load(Cpu, dir));
        Assert.Contains("h.0.mlp.c_proj.weight", e.Message);
        Assert.Contains("[32, 8]", e.Message);
    }

    [Fact]
    public void UntiedHeadIsRejected()
    {
        WriteHuggingFaceStyle(Gpt2TestData.RandomParameters(new ParameterLayout(Config), 36));
        var path = Path.Combine(dir, "model.safetensors");
        var tensors = SafeTensors.Read(path).Values.ToList();
        var head = tensors.First(t => t.Name == "lm_head.weight");
        tensors.Remove(head);
        var other = (float[])head.Data.Clone(); other[0] += 1;
        tensors.Add(head with { Data = other });
        SafeTensors.Write(path, tensors);
        var e = Assert.Throws<ModelFormatException>(() => Checkpoint.Load(Cpu, dir));
        Assert.Contains("lm_head.weight", e.Message);
    }

    [Fact]
    public void OptimizerStateRoundTrips()
    {
        var layout = new ParameterLayout(Config);
        using var model = new Gpt2Model(Cpu, Config, Gpt2TestData.RandomParameters(layout, 37));
        using var opt = new AdamWOptimizer(model);
        var m = Gpt2TestData.RandomParameters(layout, 38); var v = Array.ConvertAll(Gpt2TestData.RandomParameters(layout, 39), Math.Abs);
        opt.Restore(m, v, step: 17, skipped: 2);
        Checkpoint.Save(model, dir, opt);
        using var opt2 = new AdamWOptimizer(model);
        Assert.True(Checkpoint.LoadOptimizer(opt2, model, dir));
        Assert.Equal(m, opt2.DownloadM());
        Assert.Equal(v, opt2.DownloadV());
        Assert.Equal(17, opt2.Step);
        Assert.Equal(2, opt2.SkippedSteps);
    }
}
