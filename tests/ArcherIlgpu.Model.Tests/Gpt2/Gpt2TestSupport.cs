using ArcherIlgpu.Kernels;
using ArcherIlgpu.Model.Gpt2;
using ArcherIlgpu.Model.Tests.Gpt2.Reference;
using Xunit;

namespace ArcherIlgpu.Model.Tests.Gpt2;

/// <summary>ILGPU accelerators are driven from one thread at a time: every GPT-2 test class joins this collection.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class Gpt2Collection { public const string Name = "Gpt2"; }

/// <summary>One backend of each kind per test process (creating an ILGPU context and compiling kernels is the expensive part).</summary>
public static class ModelBackends
{
    /// <summary>cpu, ilgpu-cpu, and cuda (skipped without an NVIDIA GPU).</summary>
    public static IEnumerable<object[]> Names => ArcherIlgpu.Tests.Shared.SharedBackends.Names;

    public static Backend Get(string name) => ArcherIlgpu.Tests.Shared.SharedBackends.Get(name);

    /// <summary>
    /// The test config for a backend: ilgpu-cpu simulates every GPU thread with an OS thread, so it
    /// gets a very tiny model; the others a tiny one that still has several heads, layers and tiles.
    /// </summary>
    public static Gpt2Config ConfigFor(string backend) => backend == "ilgpu-cpu"
        ? new Gpt2Config(VocabSize: 11, MaxT: 5, Layers: 1, Heads: 2, Channels: 8)
        : new Gpt2Config(VocabSize: 37, MaxT: 12, Layers: 2, Heads: 2, Channels: 16);
}

public static class Gpt2TestData
{
    /// <summary>
    /// Parameters that exercise every path: GPT-2 init has zero biases and unit LayerNorm weights,
    /// which would hide a wrong bias or LN-weight gradient, so everything is randomised here.
    /// </summary>
    public static float[] RandomParameters(ParameterLayout layout, int seed, double scale = 0.3)
    {
        var rng = new Random(seed);
        var flat = new float[layout.TotalLength];
        foreach (var spec in layout.Specs)
            for (long i = spec.Offset; i < spec.Offset + spec.Length; i++)
            {
                double u = rng.NextDouble() * 2 - 1;
                flat[i] = (float)(spec.Kind == ParameterKind.NormWeight ? 1 + scale * u : scale * u);
            }
        return flat;
    }

    /// <summary>The flat buffer as the reference's name -> double[] dictionary (same [OC, K] orientation).</summary>
    public static Dictionary<string, double[]> ByName(ParameterLayout layout, float[] flat)
        => layout.Specs.ToDictionary(s => s.Name, s => Array.ConvertAll(flat[(int)s.Offset..(int)(s.Offset + s.Length)], v => (double)v));

    public static Gpt2Reference Reference(Gpt2Config c, ParameterLayout layout, float[] flat, Func<double, double>? operand = null)
        => new(c.VocabSize, c.MaxT, c.Layers, c.Heads, c.Channels, c.LayerNormEps, ByName(layout, flat), operand);

    public static int[] Tokens(int seed, int n, int vocab)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => rng.Next(vocab)).ToArray();
    }

    /// <summary>A loss mask with some zeros (prompt-like positions) and one fractional weight.</summary>
    public static float[] Mask(int B, int T)
    {
        var w = new float[B * T];
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++) w[b * T + t] = t < 1 + b % 2 ? 0f : 1f;
        w[^1] = 0.5f;
        return w;
    }
}

public static class Close
{
    /// <summary>|actual - expected| &lt;= atol + rtol |expected| elementwise, with the first failure in the message.</summary>
    public static void All(ReadOnlySpan<double> expected, ReadOnlySpan<float> actual, double atol, double rtol, string what)
    {
        Assert.True(expected.Length == actual.Length, $"{what}: length {actual.Length}, expected {expected.Length}");
        int bad = 0, first = -1; double worst = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            double err = Math.Abs(actual[i] - expected[i]);
            if (!(err <= atol + rtol * Math.Abs(expected[i])))
            {
                bad++; if (first < 0) first = i;
                worst = Math.Max(worst, double.IsNaN(err) ? double.PositiveInfinity : err);
            }
        }
        Assert.True(bad == 0, $"{what}: {bad} of {expected.Length} out of tolerance (atol {atol}, rtol {rtol}); " +
            $"first at {first}: got {(first >= 0 ? actual[first] : 0)}, expected {(first >= 0 ? expected[first] : 0)}; worst error {worst}");
    }
}
