using System.Text.Json;
using ArcherIlgpu.Model.Gpt2;
using Xunit;

namespace ArcherIlgpu.Model.Tests.Gpt2;

/// <summary>
/// Golden numbers from an independent implementation: Hugging Face transformers' GPT2LMHeadModel in
/// float64 (benchmarks/golden/make_tiny_gpt2.py), loaded from the Hugging Face folder it saved.
/// transformers casts the logits to float32 before its cross-entropy, so the golden loss and
/// gradients carry float32 rounding of the logits (~1e-7 relative).
/// </summary>
[Collection(Gpt2Collection.Name)]
public class Gpt2GoldenTests
{
    static string GoldenDir()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            var candidate = Path.Combine(d.FullName, "tests", "ArcherIlgpu.Model.Tests", "TestData", "golden-tiny-gpt2");
            if (Directory.Exists(candidate)) return candidate;
        }
        throw new DirectoryNotFoundException("TestData/golden-tiny-gpt2 not found above " + AppContext.BaseDirectory);
    }

    sealed record Golden(double Loss, Dictionary<string, double[]> Grads, int B, int T, int[] Inputs, int[] Targets);

    static Golden Read()
    {
        var dir = GoldenDir();
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "golden.json")));
        var grads = new Dictionary<string, double[]>();
        foreach (var g in doc.RootElement.GetProperty("grads").EnumerateObject())
            grads[g.Name] = g.Value.EnumerateArray().Select(v => v.GetDouble()).ToArray();
        var rows = File.ReadAllLines(Path.Combine(dir, "tokens.txt")).Where(l => l.Trim().Length > 0)
            .Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).ToArray()).ToArray();
        int B = rows.Length, T = rows[0].Length - 1;
        // Hugging Face's labels=input_ids: position t predicts token t+1, the mean over all B*(T) pairs.
        return new Golden(doc.RootElement.GetProperty("loss").GetDouble(), grads, B, T,
            rows.SelectMany(r => r[..T]).ToArray(), rows.SelectMany(r => r[1..]).ToArray());
    }

    /// <summary>Our gradient (flat layout) in the file's layout, by name.</summary>
    static Dictionary<string, float[]> InFileLayout(ParameterLayout layout, float[] flat)
        => Gpt2Checkpoint.ToHuggingFace(layout, flat).ToDictionary(t => t.Name, t => t.Data);

    [Fact]
    public void ReferenceMatchesHuggingFace()
    {
        var g = Read();
        using var model = (Gpt2Model)Checkpoint.Load(ModelBackends.Get("cpu"), GoldenDir());
        var c = model.Config;
        var flat = model.DownloadParameters();
        var reference = Gpt2TestData.Reference(c, model.Layout, flat);
        var weights = Enumerable.Repeat(1.0 / (g.B * g.T), g.B * g.T).ToArray();
        var (loss, grads) = reference.LossAndGradients(g.B, g.T, g.Inputs, g.Targets, weights);
        // float64 vs float64-with-float32-logits: ~1e-7 relative.
        Assert.True(Math.Abs(loss - g.Loss) <= 1e-6 * g.Loss, $"reference loss {loss}, Hugging Face {g.Loss}");
        var refFlat = new float[model.Layout.TotalLength];
        foreach (var spec in model.Layout.Specs)
            for (int i = 0; i < spec.Length; i++) refFlat[spec.Offset + i] = (float)grads[spec.Name][i];
        foreach (var (name, ours) in InFileLayout(model.Layout, refFlat))
        {
            double max = g.Grads[name].Max(Math.Abs);
            Close.All(g.Grads[name], ours, 1e-6 * max + 1e-9, 1e-5, "reference " + name);
        }
    }

    /// <summary>cpu and cuda; ilgpu-cpu runs the same kernels against the reference in Gpt2ModelTests at a size it can afford.</summary>
    [SkippableTheory, InlineData("cpu"), InlineData("cuda")]
    public void ModelMatchesHuggingFace(string backendName)
    {
        var g = Read();
        using var model = (Gpt2Model)Checkpoint.Load(ModelBackends.Get(backendName), GoldenDir());
        var batch = new TrainingBatch(g.B, g.T, g.Inputs, g.Targets, Enumerable.Repeat(1f, g.B * g.T).ToArray());
        model.ZeroGradients();
        double loss = model.ForwardBackward(batch, batch.WeightSum);
        // float32 end to end vs float64 with float32 logits: measured 1.7e-7 relative; 2e-6 allows other devices' orders.
        Assert.True(Math.Abs(loss - g.Loss) <= 2e-6 * g.Loss, $"{backendName} loss {loss}, Hugging Face {g.Loss}");
        foreach (var (name, ours) in InFileLayout(model.Layout, model.DownloadGradients()))
        {
            // As in Gpt2ModelTests: float32 rounding relative to each tensor's scale.
            double max = g.Grads[name].Max(Math.Abs);
            Close.All(g.Grads[name], ours, 2e-4 * max + 1e-7, 1e-3, $"{backendName} {name}");
        }
    }
}
