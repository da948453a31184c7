using ArcherIlgpu.Kernels;
using ArcherIlgpu.Model.Gpt2;
using Xunit;

namespace ArcherIlgpu.Model.Tests.Gpt2;

/// <summary>
/// Issue 14 item 3 and 4: the RL step's changing T re-carves the activations from one arena instead of
/// reallocating them; a model that is only run forward never gets a gradient buffer; a log-prob backward
/// takes the handle of its forward and refuses it once a later forward overwrote the logits.
/// </summary>
[Collection(Gpt2Collection.Name)]
public class ActivationReuseTests
{
    const int V = 16;
    static Gpt2Config Config => new(VocabSize: V, MaxT: 16, Layers: 1, Heads: 2, Channels: 8);

    static float[] LogProbs(CausalLm model, Activations a, int[] inputs, int[] targets)
    {
        model.Backend.Upload(a.Tokens, inputs);
        model.Backend.Upload(a.Targets, targets);
        model.ForwardTokenLogProbs(a, 1f);
        return model.Backend.ToArray(a.LogProbs);
    }

    [Fact]
    public void ShrinkingAndGrowingBackToASeenShape_AllocatesNothing_AndGivesTheFreshModelsLogProbs()
    {
        using var backend = new CpuBackend();   // its own: the byte counters are per backend
        var flat = Gpt2TestData.RandomParameters(new ParameterLayout(Config), seed: 3);
        using var model = new Gpt2Model(backend, Config, flat);
        using var fresh = new Gpt2Model(backend, Config, flat);
        var inputs = Gpt2TestData.Tokens(1, 2 * 7, V); var targets = Gpt2TestData.Tokens(2, 2 * 7, V);

        model.TrainingActivations(2, 12);   // the largest shape first: the arena is sized for it
        long before = backend.TotalAllocatedBytes;
        model.TrainingActivations(2, 5);
        var a = model.TrainingActivations(2, 7);   // stale contents from the other shapes
        var reused = LogProbs(model, a, inputs, targets);
        Assert.Equal(before, backend.TotalAllocatedBytes);

        var expected = LogProbs(fresh, fresh.TrainingActivations(2, 7), inputs, targets);
        Assert.Equal(expected, reused);   // bit for bit: same ops over the same N, whatever the buffers held
    }

    [Fact]
    public void AModelOnlyRunForward_HasNoGradientBuffer()
    {
        using var backend = new CpuBackend();
        using var model = new Gpt2Model(backend, Config, seed: 4);
        long parameterBytes = model.ParameterCount * sizeof(float);
        Assert.Equal(parameterBytes, backend.LiveBytes);
        var a = model.InferenceActivations(2, 6);
        LogProbs(model, a, Gpt2TestData.Tokens(1, 12, V), Gpt2TestData.Tokens(2, 12, V));
        Assert.False(a.HasGradients);
        long forward = backend.LiveBytes;
        model.ZeroGradients();   // the first use allocates the gradient buffer, and only that
        Assert.Equal(forward + parameterBytes, backend.LiveBytes);
    }

    [Fact]
    public void ABackwardAfterALaterForward_Throws()
    {
        using var backend = new CpuBackend();
        using var model = new Gpt2Model(backend, Config, seed: 5);
        var inputs = Gpt2TestData.Tokens(1, 6, V); var targets = Gpt2TestData.Tokens(2, 6, V);
        var lp = new float[6]; var ent = new float[6];
        var first = model.ForwardTokenLogProbs(1, 6, inputs, targets, 0.7f, lp, ent);
        var second = model.ForwardTokenLogProbs(1, 6, targets, inputs, 1f, lp, ent);
        var dlp = new float[6];
        var e = Assert.Throws<InvalidOperationException>(() => model.BackwardFromLogProbs(first, dlp));
        Assert.Contains("overwritten", e.Message);

        model.BackwardFromLogProbs(second, dlp);   // its own forward: fine, once
        Assert.Throws<InvalidOperationException>(() => model.BackwardFromLogProbs(second, dlp));
        // A pass over activations an arena has handed to another shape is stale too.
        var third = model.ForwardTokenLogProbs(1, 6, inputs, targets, 1f, lp, ent);
        model.TrainingActivations(1, 4);
        Assert.Throws<InvalidOperationException>(() => model.BackwardFromLogProbs(third));
    }
}
