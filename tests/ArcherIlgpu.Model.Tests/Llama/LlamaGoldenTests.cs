using System.Text.Json;
using ArcherIlgpu.Model.Llama;
using ArcherIlgpu.Model.Tests.Gpt2;
using Xunit;

namespace ArcherIlgpu.Model.Tests.Llama;

/// <summary>
/// Golden numbers from an independent implementation: benchmarks/golden/make_tiny_llama.py, a pure-Python
/// float64 transcription of Hugging Face's modeling_llama / qwen2 / qwen3 with its own reverse-mode
/// autodiff (checked there by finite differences to 1e-6). Each folder is a Hugging Face checkpoint
/// (llama: BF16 in two shards with an index; qwen2 / qwen3 / llama3: one float32 file) that we load by name.
/// llama3 is a model_type "llama" with Llama 3.1's rope_scaling (rope_type "llama3"), its head size and
/// rope_theta chosen so that some RoPE pairs are kept, some blended and some scaled; without the scaling its
/// logits move by up to 2.1, far outside the tolerance below.
/// </summary>
[Collection(Gpt2Collection.Name)]
public class LlamaGoldenTests
{
    public static IEnumerable<object[]> Cases()
    {
        foreach (var type in new[] { "llama", "qwen2", "qwen3", "llama3" })
            foreach (var row in ModelBackends.Names)
                yield return [type, (string)row[0]];
    }

    public static string GoldenDir(string type)
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            var candidate = Path.Combine(d.FullName, "tests", "ArcherIlgpu.Model.Tests", "TestData", "golden-tiny-" + type);
            if (Directory.Exists(candidate)) return candidate;
        }
        throw new DirectoryNotFoundException($"TestData/golden-tiny-{type} not found above " + AppContext.BaseDirectory);
    }

    /// <summary>The model_type in a golden folder's config.json (the folder name says which variant).</summary>
    public static string ModelTypeOf(string type) => type == "llama3" ? "llama" : type;

    public sealed record Golden(double Loss, double[] Logits, Dictionary<string, double[]> Grads, int B, int T, int[] Inputs, int[] Targets);

    public static Golden Read(string type)
    {
        var dir = GoldenDir(type);
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "golden.json")));
        var root = doc.RootElement;
        var grads = new Dictionary<string, double[]>();
        foreach (var g in root.GetProperty("grads").EnumerateObject())
            grads[g.Name] = g.Value.EnumerateArray().Select(v => v.GetDouble()).ToArray();
        var logits = root.GetProperty("logits").EnumerateArray().Select(v => v.GetDouble()).ToArray();
        var rows = File.ReadAllLines(Path.Combine(dir, "tokens.txt")).Where(l => l.Trim().Length > 0)
            .Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).ToArray()).ToArray();
        int B = rows.Length, T = rows[0].Length - 1;
        // Hugging Face's labels=input_ids: position t predicts token t+1, the mean over all B*T pairs.
        return new Golden(root.GetProperty("loss").GetDouble(), logits, grads, B, T,
            rows.SelectMany(r => r[..T]).ToArray(), rows.SelectMany(r => r[1..]).ToArray());
    }

    [SkippableTheory, MemberData(nameof(Cases))]
    public void LogitsLossAndGradientsMatchTheFloat64Reference(string type, string backendName)
    {
        var g = Read(type);
        using var model = (LlamaModel)Checkpoint.Load(ModelBackends.Get(backendName), GoldenDir(type));
        Assert.Equal(ModelTypeOf(type), model.Config.ModelType);
        Assert.Equal(type == "llama3", ((LlamaConfig)model.Config).RopeScaling is not null);

        var logits = model.ForwardLogits(g.B, g.T, g.Inputs);
        // float32 end to end vs float64: logits are O(1); measured ~1e-6 on cpu; 2e-5 leaves room for
        // other summation orders (ILGPU kernels, GPU tiles).
        double logitScale = g.Logits.Max(Math.Abs);
        Close.All(g.Logits, logits, 2e-5 * logitScale, 1e-5, $"{type} {backendName} logits");

        var batch = new TrainingBatch(g.B, g.T, g.Inputs, g.Targets, Enumerable.Repeat(1f, g.B * g.T).ToArray());
        model.ZeroGradients();
        double loss = model.ForwardBackward(batch, batch.WeightSum);
        Assert.True(Math.Abs(loss - g.Loss) <= 1e-5 * g.Loss, $"{type} {backendName} loss {loss}, reference {g.Loss}");

        var ours = Models.ToFileTensors(model.Config, model.DownloadGradients()).ToDictionary(t => t.Name, t => t.Data);
        Assert.Equal(g.Grads.Keys.Order(), ours.Keys.Order());
        foreach (var (name, expected) in g.Grads)
        {
            // float32 rounding relative to each tensor's scale, as in the GPT-2 golden test.
            double max = expected.Max(Math.Abs);
            Close.All(expected, ours[name], 2e-4 * max + 1e-7, 1e-3, $"{type} {backendName} {name}");
        }
    }
}
