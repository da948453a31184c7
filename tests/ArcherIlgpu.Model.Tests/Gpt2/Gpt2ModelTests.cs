using ArcherIlgpu.Model.Gpt2;
using Xunit;

namespace ArcherIlgpu.Model.Tests.Gpt2;

/// <summary>The whole model on each backend against the float64 reference: loss, every gradient, log-probs.</summary>
[Collection(Gpt2Collection.Name)]
public class Gpt2ModelTests
{
    static (int B, int T) ShapeFor(string backend) => backend == "ilgpu-cpu" ? (2, 5) : (3, 11);

    // float32 forward/backward through L blocks vs float64. Measured on cpu and ilgpu-cpu: loss within
    // 2.5e-7 relative, gradients within ~1e-6 of each tensor's largest entry (near-cancelling sums in
    // the LayerNorm and attention backward lose digits relative to the tensor's scale, not to each
    // element). Tolerances are ~10-50x that, leaving room for other summation orders (cuda tiles).
    const double LossRtol = 2e-6;
    const double GradRelToMax = 5e-5, GradRtol = 1e-4;

    static void CheckGradients(ParameterLayout layout, Dictionary<string, double[]> expected, float[] actual, double factor, string what)
    {
        foreach (var spec in layout.Specs)
        {
            var e = expected[spec.Name];
            double max = e.Max(Math.Abs) * Math.Abs(factor);
            var scaled = Array.ConvertAll(e, v => v * factor);
            Close.All(scaled, actual.AsSpan((int)spec.Offset, (int)spec.Length), GradRelToMax * max + 1e-7, GradRtol, $"{what} {spec.Name}");
        }
    }

    [SkippableTheory, MemberData(nameof(ModelBackends.Names), MemberType = typeof(ModelBackends))]
    public void LossAndEveryGradientMatchReference(string backendName)
    {
        var backend = ModelBackends.Get(backendName);
        var c = ModelBackends.ConfigFor(backendName);
        var (B, T) = ShapeFor(backendName);
        var layout = new ParameterLayout(c);
        var flat = Gpt2TestData.RandomParameters(layout, seed: 11);
        using var model = new Gpt2Model(backend, c, flat);
        var batch = new TrainingBatch(B, T, Gpt2TestData.Tokens(1, B * T, c.VocabSize), Gpt2TestData.Tokens(2, B * T, c.VocabSize), Gpt2TestData.Mask(B, T));
        double total = batch.WeightSum;

        var reference = Gpt2TestData.Reference(c, layout, flat);
        var (refLoss, refGrads) = reference.LossAndGradients(B, T, batch.Inputs, batch.Targets, Array.ConvertAll(batch.Weights, w => w / total));

        model.ZeroGradients();
        double loss = model.ForwardBackward(batch, total);
        Assert.True(Math.Abs(loss - refLoss) <= LossRtol * Math.Abs(refLoss), $"loss {loss}, reference {refLoss}");
        CheckGradients(layout, refGrads, model.DownloadGradients(), 1, backendName);

        // Parameter gradients accumulate: a second backward doubles them.
        model.ForwardBackward(batch, total);
        CheckGradients(layout, refGrads, model.DownloadGradients(), 2, backendName + " after two backwards");
    }

    [SkippableTheory, MemberData(nameof(ModelBackends.Names), MemberType = typeof(ModelBackends))]
    public void TokenLogProbsEntropiesAndTheirBackwardMatchReference(string backendName)
    {
        var backend = ModelBackends.Get(backendName);
        var c = ModelBackends.ConfigFor(backendName);
        var (B, T) = ShapeFor(backendName);
        var layout = new ParameterLayout(c);
        var flat = Gpt2TestData.RandomParameters(layout, seed: 12);
        using var model = new Gpt2Model(backend, c, flat);
        var inputs = Gpt2TestData.Tokens(3, B * T, c.VocabSize);
        var targets = Gpt2TestData.Tokens(4, B * T, c.VocabSize);
        const float temperature = 0.8f;
        var reference = Gpt2TestData.Reference(c, layout, flat);
        var (refLp, refEnt) = reference.TokenLogProbs(B, T, inputs, targets, temperature);

        var lp = new float[B * T]; var ent = new float[B * T];
        var pass = model.ForwardTokenLogProbs(B, T, inputs, targets, temperature, lp, ent);
        // log-probs and entropies are O(log V) ~ 3; float32 logits carry ~1e-6 relative error (see LossRtol).
        Close.All(refLp, lp, 2e-5, 1e-5, "log-probs");
        Close.All(refEnt, ent, 2e-5, 1e-5, "entropies");

        // sum_n d_n logp_n with d_n = -w_n is exactly the weighted cross-entropy the reference differentiates.
        var w = Array.ConvertAll(Gpt2TestData.Mask(B, T), v => (double)v);
        var (_, refGrads) = reference.LossAndGradients(B, T, inputs, targets, w, temperature);
        model.ZeroGradients();
        model.BackwardFromLogProbs(pass, Array.ConvertAll(w, v => (float)-v));
        CheckGradients(layout, refGrads, model.DownloadGradients(), 1, backendName + " log-prob backward");
    }
}
