using ArcherIlgpu.Model.Gpt2;
using ArcherIlgpu.Rl.Algorithms;
using ArcherIlgpu.Rl.Tasks;
using ArcherIlgpu.Rl.Training;
using ArcherIlgpu.Rl.Tests.Training;

namespace ArcherIlgpu.Rl.Tests.Device;

[Collection(DeviceCollection.Name)]
public class UpdateTransferTests
{
    /// <summary>
    /// Issue 14: the update downloads once per optimizer step (the loss statistics and Σ g² together). Counted
    /// between consecutive optimizer steps of one training step (3 prompts in mini-batches of 1: 3 per epoch),
    /// leaving out the first, which also downloads the first mini-batch's log-probs for a diagnostic.
    /// </summary>
    [SkippableTheory, InlineData("cpu"), InlineData("ilgpu-cpu")]
    public void TheUpdateDownloadsOncePerOptimizerStep(string backendName)
    {
        var backend = TestBackends.Get(backendName);
        using var model = new Gpt2Model(backend, TinyArithmetic.ModelConfig, 5);
        var config = TinyArithmetic.Scaled("archer", groupSize: 2, prompts: 3, lr: 1e-3) with { Filter = GroupFilterMode.None, PpoEpochs = 1, MiniBatchPrompts = 1 };
        using var trainer = new RlTrainer(model, TinyArithmetic.Tokenizer, TinyArithmetic.Task, config, new RlTrainerOptions(Seed: 3));
        var downloads = new List<long>();
        trainer.BeforeOptimizerStep = _ => downloads.Add(backend.Transfers.D2HCalls);
        var metrics = trainer.Step().Metrics;
        Assert.Equal(3, downloads.Count);
        Assert.Equal(1, downloads[1] - downloads[0]);
        Assert.Equal(1, downloads[2] - downloads[1]);
        Assert.Equal(0, metrics["skipped/steps"]);
    }
}
