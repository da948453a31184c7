using ArcherIlgpu.Model.Llama;
using ArcherIlgpu.Model.Tests.Gpt2;
using ArcherIlgpu.Model.Training;
using Xunit;

namespace ArcherIlgpu.Model.Tests.Llama;

/// <summary>
/// DESIGN.md: no allocation inside forward or backward after the first call at a size. On the cpu
/// backend a training step used to allocate in proportion to the model: Parallel.For's replica tasks
/// and loop state on every parallel loop, and the GEMM makes two loops per 384-deep K slice, so the
/// tied head's dInput (K = V = 151936) alone made 792 of them. This holds the steady state down.
/// </summary>
[Collection(Gpt2Collection.Name)]   // not in parallel with other tests: the allocation count is process-wide
public class CpuTrainingAllocationTests
{
    [Fact]
    public void SecondTrainingStep_WithAQwenSizedVocabulary_AllocatesAlmostNothing()
    {
        // Qwen2.5's vocabulary on a tiny body (9.8M parameters, nearly all of them the tied embedding).
        var config = new LlamaConfig("qwen2", VocabSize: 151936, MaxT: 64, Layers: 2, Heads: 2, KvHeads: 1, HeadSize: 32,
            Channels: 64, Intermediate: 128, RopeTheta: 1e6, TiedHead: true, QkvBias: true);
        using var model = Models.Create(ModelBackends.Get("cpu"), config, seed: 5);
        using var trainer = new ModelTrainer(model, new LrSchedule(1e-4f, Kind: "constant"));
        const int B = 2, T = 16;
        var rng = new Random(11);
        var batch = new TrainingBatch(B, T,
            Enumerable.Range(0, B * T).Select(_ => rng.Next(config.VocabSize)).ToArray(),
            Enumerable.Range(0, B * T).Select(_ => rng.Next(config.VocabSize)).ToArray(),
            Enumerable.Repeat(1f, B * T).ToArray());

        trainer.TrainStep(batch);   // the first step allocates activations and scratch (27 MB here)
        long before = GC.GetTotalAllocatedBytes(precise: true);
        var result = trainer.TrainStep(batch);
        long allocated = GC.GetTotalAllocatedBytes(precise: true) - before;

        Assert.False(result.Skipped);
        // Measured: about 20 KB (the ops' closures, the trainer's small per-step arrays); with
        // Parallel.For under the ops, 698 KB (1.4 MB at C = 256). 256 KB leaves room for the runtime's
        // own allocations and catches any per-step cost that grows with V or the parameter count.
        Assert.True(allocated < 256 * 1024, $"second training step allocated {allocated:N0} bytes");
    }
}
