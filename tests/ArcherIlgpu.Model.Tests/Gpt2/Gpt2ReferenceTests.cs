using ArcherIlgpu.Model.Gpt2;
using Xunit;

namespace ArcherIlgpu.Model.Tests.Gpt2;

/// <summary>The float64 reference's backward against central finite differences of its own forward.</summary>
public class Gpt2ReferenceTests
{
    [Fact]
    public void ReferenceGradientsMatchFiniteDifferences()
    {
        var c = new Gpt2Config(VocabSize: 13, MaxT: 6, Layers: 2, Heads: 2, Channels: 8);
        var layout = new ParameterLayout(c);
        var flat = Gpt2TestData.RandomParameters(layout, seed: 3);
        var p = Gpt2TestData.ByName(layout, flat);
        int B = 2, T = 5;
        var inputs = Gpt2TestData.Tokens(1, B * T, c.VocabSize);
        var targets = Gpt2TestData.Tokens(2, B * T, c.VocabSize);
        var weights = Array.ConvertAll(Gpt2TestData.Mask(B, T), w => (double)w);
        const double temperature = 0.7; // exercises the temperature path of the log-prob gradient too
        var reference = new Reference.Gpt2Reference(c.VocabSize, c.MaxT, c.Layers, c.Heads, c.Channels, c.LayerNormEps, p);
        var (_, grads) = reference.LossAndGradients(B, T, inputs, targets, weights, temperature);

        var rng = new Random(5);
        foreach (var spec in layout.Specs)
        {
            var x = p[spec.Name];
            // A few entries of every tensor; wte rows of tokens that occur get both the embedding and the head path.
            for (int k = 0; k < 3; k++)
            {
                int i = spec.Name == "wte.weight" ? inputs[k] * c.Channels + k : rng.Next(x.Length);
                double orig = x[i];
                const double h = 1e-5;
                x[i] = orig + h; double up = reference.Loss(B, T, inputs, targets, weights, temperature);
                x[i] = orig - h; double down = reference.Loss(B, T, inputs, targets, weights, temperature);
                x[i] = orig;
                double fd = (up - down) / (2 * h);
                // Central differences in float64 with h = 1e-5: truncation ~h² * f''' ~ 1e-9, rounding ~1e-16/h = 1e-11.
                Assert.True(Math.Abs(fd - grads[spec.Name][i]) <= 1e-7 + 1e-6 * Math.Abs(fd),
                    $"{spec.Name}[{i}]: backward {grads[spec.Name][i]}, finite difference {fd}");
            }
        }
    }
}
