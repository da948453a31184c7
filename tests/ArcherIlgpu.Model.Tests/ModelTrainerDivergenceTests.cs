using ArcherIlgpu.Kernels;
using ArcherIlgpu.Model.Gpt2;
using ArcherIlgpu.Model.Training;
using Xunit;

namespace ArcherIlgpu.Model.Tests;

/// <summary>A loss that stays non-finite stops training after <see cref="ModelTrainer.MaxConsecutiveSkippedSteps"/> skipped steps.</summary>
public class ModelTrainerDivergenceTests
{
    static TrainingBatch RandomBatch(Gpt2Config config, int B, int T, int seed)
    {
        var rng = new Random(seed);
        var tokens = Enumerable.Range(0, B * T).Select(_ => rng.Next(config.VocabSize)).ToArray();
        return new TrainingBatch(B, T, tokens, tokens.Skip(1).Append(0).ToArray(), Enumerable.Repeat(1f, B * T).ToArray());
    }

    [Fact]
    public void AFarTooHighLearningRateStopsAfterTenSkippedStepsInARowWithFiniteWeights()
    {
        using var backend = new CpuBackend();
        var config = Gpt2Config.Preset("tiny");
        using var model = new Gpt2Model(backend, config, seed: 1);
        using var trainer = new ModelTrainer(model, new LrSchedule(1e10f, Kind: "constant"));
        var batch = RandomBatch(config, 4, 16, seed: 2);

        var results = new List<TrainStepResult>();
        var e = Assert.Throws<TrainingDivergedException>(() => { for (int s = 0; s < 100; s++) results.Add(trainer.TrainStep(batch)); });

        // The steps before the throw: some applied, then only skipped ones; the throwing step is the 10th skipped in a row.
        int trailingSkipped = results.AsEnumerable().Reverse().TakeWhile(r => r.Skipped).Count();
        Assert.Equal(ModelTrainer.MaxConsecutiveSkippedSteps - 1, trailingSkipped);
        Assert.True(results.Count < 100);
        Assert.Contains($"{ModelTrainer.MaxConsecutiveSkippedSteps} consecutive steps", e.Message);
        Assert.Contains($"up to step {results.Count + 1}", e.Message);
        Assert.Contains("lower the learning rate", e.Message);
        Assert.All(model.DownloadParameters(), x => Assert.True(float.IsFinite(x)));   // nothing non-finite written
    }

    [Fact]
    public void AnOrdinaryLearningRateNeverSkips()
    {
        using var backend = new CpuBackend();
        var config = Gpt2Config.Preset("tiny");
        using var model = new Gpt2Model(backend, config, seed: 1);
        using var trainer = new ModelTrainer(model, new LrSchedule(1e-3f, Kind: "constant"));
        var batch = RandomBatch(config, 4, 16, seed: 2);
        for (int s = 0; s < 20; s++) Assert.False(trainer.TrainStep(batch).Skipped);
    }
}
