using ArcherIlgpu.Kernels;
using ArcherIlgpu.Model.Generation;
using ArcherIlgpu.Model.Training;

using ArcherIlgpu.Model.Gpt2;
using ArcherIlgpu.Model.Llama;

namespace ArcherIlgpu.Model;

/// <summary>
/// The model-level part of <c>archer selfcheck</c>: a few training steps and a short generation of a
/// small model of each family (GPT-2; Qwen3 with grouped-query heads, q/k norm and H·D != C; Llama with
/// one key/value head and a separate head) on the device and on the <c>cpu</c> backend from the same
/// initial weights, compared step by step. The op-level checks (<see cref="SelfCheck"/>) show each kernel is right; this shows
/// they are wired together right on the device (buffers, strides, the optimizer, the KV cache).
/// </summary>
public static class ModelSelfCheck
{
    /// <summary>
    /// Losses after a few AdamW steps drift apart by float32 rounding amplified by the updates
    /// (lr 1e-3, so a step moves weights by ~1e-3 and rounding differences stay ~1e-6 of that);
    /// 1e-4 relative still catches any wiring error, which changes the loss at the first step.
    /// </summary>
    const double TrainingTolerance = 1e-4;

    public static List<SelfCheck.Result> Run(Backend device, Backend cpu, bool quick)
    {
        // Sizes that are multiples of nothing: V 61, C 36, D 12, T 19.
        int maxT = quick ? 24 : 40, layers = quick ? 1 : 2;
        IModelConfig[] configs =
        [
            new Gpt2Config(61, maxT, layers, 3, 36),
            new LlamaConfig("qwen3", 61, maxT, layers, Heads: 4, KvHeads: 2, HeadSize: 12, Channels: 36, Intermediate: 44,
                RopeTheta: 1e6, TiedHead: true, QkNorm: true),
            new LlamaConfig("llama", 61, maxT, layers, Heads: 3, KvHeads: 1, HeadSize: 12, Channels: 36, Intermediate: 44,
                RmsNormEps: 1e-5f, TiedHead: false),
        ];
        var results = new List<SelfCheck.Result>();
        foreach (var config in configs) results.AddRange(RunOne(device, cpu, config, quick));
        return results;
    }

    static List<SelfCheck.Result> RunOne(Backend device, Backend cpu, IModelConfig config, bool quick)
    {
        int B = 3, T = quick ? 11 : 19, steps = 3;
        string train = config.ModelType + "-train", generate = config.ModelType + "-generate";
        var batches = Enumerable.Range(0, steps).Select(s => RandomBatch(config, B, T, seed: 100 + s)).ToArray();
        var results = new List<SelfCheck.Result>();

        var (cpuLosses, cpuParams) = Train(cpu, config, batches);
        (double[] devLosses, float[] devParams) d;
        try { d = Train(device, config, batches); }
        catch (Exception e)
        {
            results.Add(new(train, Shape(config, B, T), $"threw {e.GetType().Name}: {e.Message}", double.NaN, TrainingTolerance));
            return results;
        }
        for (int s = 0; s < steps; s++)
            results.Add(new(train, Shape(config, B, T), $"loss step {s + 1}",
                Math.Abs(d.devLosses[s] - cpuLosses[s]) / Math.Max(1, Math.Abs(cpuLosses[s])), TrainingTolerance));
        results.Add(new(train, Shape(config, B, T), "parameters after training",
            MaxScaledDifference(cpuParams, d.devParams), TrainingTolerance));

        // Generation from the trained cpu weights: prompts of different lengths, greedy and sampled.
        int[][] prompts = [[1, 2], [3, 4, 5, 6, 7], [8, 9, 10, 11, 12, 13, 14, 15, 16]];
        foreach (var (name, options) in new[]
                 {
                     ("greedy", new SamplingOptions(MaxNewTokens: 8, Temperature: 0f)),
                     ("sampled T1 top-p 0.9", new SamplingOptions(MaxNewTokens: 8, Temperature: 1f, TopP: 0.9f, Seed: 42)),
                 })
        {
            var expected = Generate(cpu, config, cpuParams, prompts, options);
            GenerationResult actual;
            try { actual = Generate(device, config, cpuParams, prompts, options); }
            catch (Exception e)
            {
                results.Add(new(generate, name, $"threw {e.GetType().Name}: {e.Message}", double.NaN, 0));
                continue;
            }
            int mismatches = 0; double logProbError = 0;
            for (int r = 0; r < prompts.Length; r++)
            {
                if (!expected.Tokens[r].SequenceEqual(actual.Tokens[r])) mismatches++;
                else for (int i = 0; i < expected.LogProbs[r].Length; i++)
                        logProbError = Math.Max(logProbError, Math.Abs(expected.LogProbs[r][i] - actual.LogProbs[r][i]));
            }
            results.Add(new(generate, name, "rows with different tokens", mismatches, 0));
            results.Add(new(generate, name, "log-probs", logProbError, SelfCheck.DefaultTolerance));
        }
        return results;
    }

    static (double[] Losses, float[] Parameters) Train(Backend backend, IModelConfig config, TrainingBatch[] batches)
    {
        using var model = Models.Create(backend, config, seed: 7);
        using var trainer = new ModelTrainer(model, new LrSchedule(1e-3f, WarmupSteps: 0, TotalSteps: batches.Length, Kind: "constant"));
        var losses = batches.Select(b => trainer.TrainStep(b).Loss).ToArray();
        return (losses, model.DownloadParameters());
    }

    static GenerationResult Generate(Backend backend, IModelConfig config, float[] parameters, int[][] prompts, SamplingOptions options)
    {
        using var model = Models.Create(backend, config, parameters);
        using var generator = new Generator(model);
        return generator.Generate(prompts, options);
    }

    static TrainingBatch RandomBatch(IModelConfig config, int B, int T, int seed)
    {
        var rng = new Random(seed);
        var inputs = new int[B * T]; var targets = new int[B * T]; var weights = new float[B * T];
        for (int i = 0; i < B * T; i++)
        {
            inputs[i] = rng.Next(config.VocabSize);
            targets[i] = rng.Next(config.VocabSize);
            weights[i] = i % T < 3 ? 0f : 1f;   // the first positions play the prompt: masked out
        }
        return new TrainingBatch(B, T, inputs, targets, weights);
    }

    static double MaxScaledDifference(float[] expected, float[] actual)
    {
        double scale = 1, err = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            scale = Math.Max(scale, Math.Abs(expected[i]));
            err = Math.Max(err, Math.Abs((double)expected[i] - actual[i]));
        }
        return err / scale;
    }

    static string Shape(IModelConfig c, int B, int T) => $"L{c.Layers} C{c.Channels} B{B} T{T}";
}
