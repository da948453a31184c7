using ArcherIlgpu.Model.Generation;
using ArcherIlgpu.Model.IO;
using ArcherIlgpu.Model.Llama;
using ArcherIlgpu.Model.Tests.Gpt2;
using Xunit;

namespace ArcherIlgpu.Model.Tests.Llama;

[Collection(Gpt2Collection.Name)]
public class LlamaModelTests
{
    /// <summary>
    /// KV-cached decoding must give the logits of the full forward: this holds RoPE at each row's own
    /// position in the decode step, keys cached already rotated, and grouped-query heads in the cache.
    /// </summary>
    [SkippableTheory, MemberData(nameof(LlamaGoldenTests.Cases), MemberType = typeof(LlamaGoldenTests))]
    public void CachedDecodingGivesTheLogitsOfTheFullForward(string type, string backendName)
    {
        using var model = Checkpoint.Load(ModelBackends.Get(backendName), LlamaGoldenTests.GoldenDir(type));
        int V = model.Config.VocabSize;
        int[][] prompts = [[1, 2, 3], [4], [5, 6, 7, 8, 9]];
        int B = prompts.Length, T = backendName == "ilgpu-cpu" ? 8 : 14;
        var full = new int[B][];
        for (int b = 0; b < B; b++)
            full[b] = prompts[b].Concat(Enumerable.Range(0, T - prompts[b].Length).Select(i => (7 * b + 3 * i + 1) % V)).ToArray();
        var fullLogits = model.ForwardLogits(B, T, full.SelectMany(r => r).ToArray());

        // Decoding sums attention in another order than the full forward and runs matmuls on [B, C]
        // (other tiles): float32 rounding of O(1) logits; 2e-5 as in the GPT-2 test plus the wider logits here.
        const double atol = 2e-5, rtol = 2e-5;
        using var gen = new Generator(model);
        var logits = gen.Prefill(prompts.Select(p => (IReadOnlyList<int>)p).ToList());
        var pos = prompts.Select(p => p.Length - 1).ToArray();
        for (int step = 0; ; step++)
        {
            for (int b = 0; b < B; b++)
                Close.All(Array.ConvertAll(fullLogits.AsSpan((b * T + pos[b]) * V, V).ToArray(), v => (double)v),
                    logits.AsSpan(b * V, V), atol, rtol, $"{type} row {b} position {pos[b]} (step {step})");
            if (pos.Max() + 1 >= T) break;
            for (int b = 0; b < B; b++) pos[b] = Math.Min(pos[b] + 1, T - 1);
            logits = gen.Step(Enumerable.Range(0, B).Select(b => full[b][pos[b]]).ToArray(), pos);
        }
    }

    [Theory, InlineData("llama"), InlineData("qwen2"), InlineData("qwen3"), InlineData("llama3")]
    public void SavedFolderReloadsExactlyWithHuggingFaceNames(string type)
    {
        var be = ModelBackends.Get("cpu");
        using var model = Checkpoint.Load(be, LlamaGoldenTests.GoldenDir(type));
        var dir = Path.Combine(Path.GetTempPath(), "archer-llama-" + Guid.NewGuid().ToString("N"));
        try
        {
            Checkpoint.Save(model, dir);
            using var again = Checkpoint.Load(be, dir);
            Assert.Equal(model.DownloadParameters(), again.DownloadParameters());
            Assert.Equal(model.Config, again.Config);
            // The names are exactly those of the reference folder (no lm_head.weight when tied).
            var expected = LlamaGoldenTests.Read(type).Grads.Keys.Order();
            Assert.Equal(expected, SafeTensorsFolder.Read(dir).Keys.Order());
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void TrainingStepsAgreeOnCpuAndIlgpuCpu()
    {
        // A few AdamW steps from the same weights: the backends differ only by float32 summation order.
        var c = (LlamaConfig)Models.Preset("qwen3-tiny");
        c = c with { VocabSize = 19, MaxT = 8, Layers = 1 };
        var flat = new LlamaLayout(c).Initialize(5);
        float[] Train(string backendName)
        {
            using var model = new LlamaModel(ModelBackends.Get(backendName), c, flat);
            using var trainer = new Training.ModelTrainer(model, new Training.LrSchedule(1e-2f, 0, 3));
            var rng = new Random(9);
            for (int step = 0; step < 3; step++)
            {
                int B = 2, T = 6;
                var inputs = Enumerable.Range(0, B * T).Select(_ => rng.Next(c.VocabSize)).ToArray();
                var targets = Enumerable.Range(0, B * T).Select(_ => rng.Next(c.VocabSize)).ToArray();
                trainer.TrainStep(new TrainingBatch(B, T, inputs, targets, Enumerable.Repeat(1f, B * T).ToArray()));
            }
            return model.DownloadParameters();
        }
        var cpu = Train("cpu");
        var ilgpu = Train("ilgpu-cpu");
        // Three steps of lr 1e-2: AdamW moves each weight by ~lr per step whatever the gradient's size, so
        // float32 differences in tiny gradients can flip a few updates' magnitudes; 1e-4 absolute holds them.
        Close.All(Array.ConvertAll(cpu, v => (double)v), ilgpu, 1e-4, 1e-4, "parameters after 3 steps");
        Assert.NotEqual(flat, cpu);
    }
}
