using ArcherIlgpu.Kernels;
using ArcherIlgpu.Model.Gpt2;
using ArcherIlgpu.Model.Training;
using ArcherIlgpu.Rl.Algorithms;
using ArcherIlgpu.Rl.Training;

namespace ArcherIlgpu.Rl.Tests.Training;

/// <summary>RL updates that stay non-finite stop training after <see cref="ModelTrainer.MaxConsecutiveSkippedSteps"/> skipped updates in a row.</summary>
public class RlDivergenceTests
{
    /// <summary>No filter, one epoch, 6 prompts in mini-batches of 2: three optimizer updates per training step.</summary>
    static RlTrainer ThreeUpdatesPerStep(Gpt2Model model)
    {
        var config = TinyArithmetic.Scaled("grpo", groupSize: 4, prompts: 6, lr: 1e-3) with { Filter = GroupFilterMode.None, PpoEpochs = 1, MiniBatchPrompts = 2 };
        return new RlTrainer(model, TinyArithmetic.Tokenizer, TinyArithmetic.Task, config, new RlTrainerOptions(Seed: 2));
    }

    [Fact]
    public void TenSkippedUpdatesInARowStopTraining()
    {
        using var backend = new CpuBackend();
        using var model = new Gpt2Model(backend, TinyArithmetic.ModelConfig, seed: 5);
        using var trainer = ThreeUpdatesPerStep(model);
        trainer.BeforeOptimizerStep = m => backend.Upload(m.Gradients.All.Slice(3, 1), new[] { float.NaN });
        var before = model.DownloadParameters();

        trainer.Step();   // updates 1-3
        trainer.Step();   // 4-6
        trainer.Step();   // 7-9
        var e = Assert.Throws<TrainingDivergedException>(() => trainer.Step());   // the 10th
        Assert.Contains("10 consecutive updates", e.Message);
        Assert.Contains("up to step 4", e.Message);
        Assert.Equal(10, trainer.SkippedOptimizerSteps);
        Assert.Equal(before, model.DownloadParameters());
    }

    [Fact]
    public void AnAppliedUpdateResetsTheCount()
    {
        using var backend = new CpuBackend();
        using var model = new Gpt2Model(backend, TinyArithmetic.ModelConfig, seed: 5);
        using var trainer = ThreeUpdatesPerStep(model);
        int update = 0;
        // Every 9th update is clean: nine skipped in a row at most, never ten.
        trainer.BeforeOptimizerStep = m => { if (++update % 9 != 0) backend.Upload(m.Gradients.All.Slice(3, 1), new[] { float.NaN }); };
        for (int s = 0; s < 7; s++) trainer.Step();
        Assert.Equal(21 - 2, trainer.SkippedOptimizerSteps);   // 21 updates, the 9th and 18th applied
    }
}
