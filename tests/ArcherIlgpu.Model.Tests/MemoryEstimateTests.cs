using ArcherIlgpu.Kernels;
using ArcherIlgpu.Model.Generation;
using ArcherIlgpu.Model.Gpt2;
using ArcherIlgpu.Model.Llama;
using ArcherIlgpu.Model.Training;
using Xunit;

namespace ArcherIlgpu.Model.Tests;

/// <summary>
/// The memory estimate against what the backend really allocated (it counts every buffer's bytes), and
/// its refusals: overflow, one buffer too large, not enough memory.
/// </summary>
public class MemoryEstimateTests
{
    // The estimate mirrors every buffer the activations, the KV cache, the model and AdamW allocate; what it
    // leaves out is a few scalars and per-row buffers (the gradient norm, the sampler's rows) and Llama's RoPE
    // tables (MaxT·D floats, under 1% here). So it must match the allocation within 2%.
    const double Tolerance = 0.02;

    public static TheoryData<string> Families => ["tiny", "llama-tiny", "qwen3-tiny"];

    static void AssertClose(long estimated, long measured)
    {
        Assert.True(measured > 0);
        double ratio = (double)estimated / measured;
        Assert.True(Math.Abs(ratio - 1) <= Tolerance, $"estimated {estimated:N0} bytes, allocated {measured:N0} (ratio {ratio:F4})");
    }

    [Theory, MemberData(nameof(Families))]
    public void TrainingMatchesTheBytesTheBackendAllocated(string preset)
    {
        using var backend = new CpuBackend();
        var config = Models.Preset(preset);
        const int B = 3, T = 17;
        using var model = Models.Create(backend, config, seed: 1);
        using var trainer = new ModelTrainer(model, new LrSchedule(1e-3f));
        var rng = new Random(2);
        var tokens = Enumerable.Range(0, B * T).Select(_ => rng.Next(config.VocabSize)).ToArray();
        trainer.TrainStep(new TrainingBatch(B, T, tokens, tokens, Enumerable.Repeat(1f, B * T).ToArray()));

        var estimate = new MemoryEstimate("test").Model(config, optimizer: true).Training(config, B, T);
        AssertClose(estimate.DeviceBytes, backend.PeakBytes);
    }

    [Theory, MemberData(nameof(Families))]
    public void GenerationMatchesTheBytesTheBackendAllocated(string preset)
    {
        using var backend = new CpuBackend();
        var config = Models.Preset(preset);
        const int rows = 5, promptT = 7;
        using var model = Models.Create(backend, config, seed: 1);
        using var generator = new Generator(model);
        var prompts = Enumerable.Range(0, rows).Select(r => (IReadOnlyList<int>)Enumerable.Range(1, promptT).ToArray()).ToList();
        generator.Generate(prompts, new SamplingOptions(MaxNewTokens: 4, Seed: 3));

        var estimate = new MemoryEstimate("test").Model(config, optimizer: false).Generation(config, rows, promptT);
        AssertClose(estimate.DeviceBytes, backend.PeakBytes);
    }

    [Fact]
    public void HandWorkedSizesOfTheTinyGpt2()
    {
        // tiny: V 64, MaxT 64, L 2, H 2, C 32. Logits of a [2×8] batch: 16·64 floats = 4096 bytes; the KV cache of
        // 3 rows: 2 (K, V) · 2 layers · 3 · 64 positions · 32 channels · 4 bytes = 98,304 bytes.
        var c = Gpt2Config.Preset("tiny");
        var training = new MemoryEstimate("test").Training(c, 2, 8);
        Assert.Equal(4096, training.Parts.Single(p => p.Name.Contains("logits")).Bytes);
        var generation = new MemoryEstimate("test").Generation(c, 3, 5);
        Assert.Equal(98_304, generation.Parts.Single(p => p.Name == "KV cache").Bytes);
    }

    [Fact]
    public void APassOfMoreThan2To31PositionsIsRefusedNamingTheSettings()
    {
        var e = Assert.Throws<SizeLimitException>(() => new MemoryEstimate("--batch-size 100000000").Training(Gpt2Config.Preset("tiny"), 100_000_000, 64));
        Assert.Contains("--batch-size 100000000", e.Message);
        Assert.Contains("6,400,000,000 positions", e.Message);
    }

    [Fact]
    public void ABufferLargerThanAnArrayIsRefused()
    {
        // 40,000,000 positions fit an int, but their logits (× 64) do not fit one buffer.
        var e = Assert.Throws<SizeLimitException>(() => new MemoryEstimate("--samples 40000000").Training(Gpt2Config.Preset("tiny"), 40_000_000, 1));
        Assert.Contains("--samples 40000000", e.Message);
        Assert.Contains("the logits", e.Message);
    }

    [Fact]
    public void AnOverflowingSizeIsRefusedNotWrapped()
    {
        var huge = new LlamaConfig("llama", VocabSize: 64, MaxT: int.MaxValue, Layers: int.MaxValue, Heads: 4, KvHeads: 2, HeadSize: 8, Channels: 32, Intermediate: 64);
        var e = Assert.Throws<SizeLimitException>(() => new MemoryEstimate("n_layer").Generation(huge, int.MaxValue, 1));
        Assert.Contains("n_layer", e.Message);
    }

    [Fact]
    public void WhatDoesNotFitIsRefusedWithTheEstimateItsLargestPartsAndWhatIsAvailable()
    {
        var estimate = new MemoryEstimate("rl.prompts_per_step=64")
            .Add("small", () => 1 << 20).Add("big", () => 3L << 30).Add("middle", () => 512L << 20);
        estimate.RequireFits("cpu", hostMemory: true, capacityBytes: 4L << 30);   // 3.5 GiB fits 4 GiB
        var e = Assert.Throws<SizeLimitException>(() => estimate.RequireFits("cpu", hostMemory: true, capacityBytes: 2L << 30));
        Assert.Equal("rl.prompts_per_step=64 needs about 3.5 GiB of memory on cpu (big 3 GiB, middle 512 MiB, small 1 MiB), but 2 GiB is available; use smaller values", e.Message);
    }

    [Fact]
    public void OnADeviceHostPartsAreCheckedAgainstHostMemory()
    {
        var estimate = new MemoryEstimate("s").Add("weights", () => 3L << 30).Add("rollouts", () => 1 << 20, host: true);
        estimate.RequireFits("cuda", hostMemory: false, capacityBytes: 4L << 30);
        var e = Assert.Throws<SizeLimitException>(() => estimate.RequireFits("cuda", hostMemory: false, capacityBytes: 2L << 30));
        Assert.Contains("of cuda device memory (weights 3 GiB)", e.Message);
    }

    /// <summary>The estimate counts parameters from the config's formula; it must equal the layout the model allocates, for every preset.</summary>
    [Fact]
    public void TheConfigsParameterCountIsTheLayoutsLength()
    {
        foreach (string name in Models.PresetNames)
        {
            long layout = Models.Preset(name) switch
            {
                Gpt2Config g => new ParameterLayout(g).TotalLength,
                LlamaConfig l => new LlamaLayout(l).TotalLength,
                var other => throw new InvalidOperationException(other.ModelType),
            };
            Assert.True(layout == Models.Preset(name).ParameterCount, $"{name}: layout {layout}, config {Models.Preset(name).ParameterCount}");
        }
    }
}
