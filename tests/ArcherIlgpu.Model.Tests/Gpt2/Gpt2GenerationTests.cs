using ArcherIlgpu.Model.Generation;
using ArcherIlgpu.Model.Gpt2;
using Xunit;

namespace ArcherIlgpu.Model.Tests.Gpt2;

[Collection(Gpt2Collection.Name)]
public class Gpt2GenerationTests
{
    static readonly int[][] Prompts = [[1, 2, 3], [4], [5, 6]];

    static (Gpt2Model Model, ParameterLayout Layout, float[] Flat) Make(string backendName, int seed)
    {
        var c = ModelBackends.ConfigFor(backendName);
        var layout = new ParameterLayout(c);
        var flat = Gpt2TestData.RandomParameters(layout, seed);
        return (new Gpt2Model(ModelBackends.Get(backendName), c, flat), layout, flat);
    }

    [SkippableTheory, MemberData(nameof(ModelBackends.Names), MemberType = typeof(ModelBackends))]
    public void CachedDecodingGivesTheLogitsOfTheFullForward(string backendName)
    {
        var (model, _, _) = Make(backendName, seed: 21);
        using var _m = model;
        var c = model.Config;
        int V = c.VocabSize, B = Prompts.Length;
        // Each row continues with fixed tokens until the context is full.
        var full = new int[B][];
        for (int b = 0; b < B; b++)
            full[b] = Prompts[b].Concat(Enumerable.Range(0, c.MaxT - Prompts[b].Length).Select(i => (7 * b + 3 * i + 1) % V)).ToArray();
        var fullLogits = model.ForwardLogits(B, c.MaxT, full.SelectMany(r => r).ToArray());
        float[] Expected(int b, int pos) => fullLogits.AsSpan((b * c.MaxT + pos) * V, V).ToArray();

        // Decoding sums attention in another order than the full forward (one query against the cache
        // vs a causal block) and runs matmuls on [B, C] instead of [B*T, C] (other tiles), so they agree
        // to float32 rounding of O(1) logits: measured 3e-7 on cpu; 1e-5 leaves room for other devices.
        const double atol = 1e-5, rtol = 1e-5;
        using var gen = new Generator(model);
        var logits = gen.Prefill(Prompts.Select(p => (IReadOnlyList<int>)p).ToList());
        var pos = Prompts.Select(p => p.Length - 1).ToArray();
        for (int step = 0; ; step++)
        {
            for (int b = 0; b < B; b++)
                Close.All(Array.ConvertAll(Expected(b, pos[b]), v => (double)v), logits.AsSpan(b * V, V), atol, rtol, $"row {b} position {pos[b]} (step {step})");
            if (pos.Max() + 1 >= c.MaxT) break;
            for (int b = 0; b < B; b++) pos[b]++;
            logits = gen.Step(Enumerable.Range(0, B).Select(b => full[b][pos[b]]).ToArray(), pos);
        }
    }

    [Fact]
    public void GreedyGenerationFollowsTheReferenceArgmax()
    {
        var (model, layout, flat) = Make("cpu", seed: 22);
        using var _m = model;
        var c = model.Config;
        var reference = Gpt2TestData.Reference(c, layout, flat);
        using var gen = new Generator(model);
        var result = gen.Generate(Prompts.Select(p => (IReadOnlyList<int>)p).ToList(), new SamplingOptions(MaxNewTokens: 6, Temperature: 0));
        for (int b = 0; b < Prompts.Length; b++)
        {
            var seq = Prompts[b].ToList();
            foreach (var token in result.Tokens[b])
            {
                var z = reference.Logits(1, seq.Count, seq.ToArray());
                int best = 0;
                for (int v = 1; v < c.VocabSize; v++) if (z[(seq.Count - 1) * c.VocabSize + v] > z[(seq.Count - 1) * c.VocabSize + best]) best = v;
                Assert.Equal(best, token);
                seq.Add(token);
            }
            Assert.Equal(6, result.Tokens[b].Length);
        }
    }

    [SkippableFact]
    public void GreedyGenerationIsIdenticalOnCpuAndIlgpuCpu()
    {
        // The very tiny config both backends can run; prompts of different lengths, until the context is full.
        var c = ModelBackends.ConfigFor("ilgpu-cpu");
        var flat = Gpt2TestData.RandomParameters(new ParameterLayout(c), seed: 23);
        using var onCpu = new Gpt2Model(ModelBackends.Get("cpu"), c, flat);
        using var ilgpu = new Gpt2Model(ModelBackends.Get("ilgpu-cpu"), c, flat);
        var prompts = new[] { new[] { 1, 2, 3 }, new[] { 4 } }.Select(p => (IReadOnlyList<int>)p).ToList();
        var options = new SamplingOptions(MaxNewTokens: 4, Temperature: 0);
        using var g1 = new Generator(onCpu);
        using var g2 = new Generator(ilgpu);
        var r1 = g1.Generate(prompts, options);
        var r2 = g2.Generate(prompts, options);
        for (int b = 0; b < prompts.Count; b++) Assert.Equal(r1.Tokens[b], r2.Tokens[b]);
        Assert.Equal(2, r1.Tokens[0].Length); // context 5: 3 prompt tokens leave room for 2
        Assert.Equal(4, r1.Tokens[1].Length);
    }

    [Fact]
    public void ASeedReproducesASampledBatchAndItsLogProbsAreTheTrainingLogProbs()
    {
        var (model, _, _) = Make("cpu", seed: 24);
        using var _m = model;
        var c = model.Config;
        var prompts = Prompts.Select(p => (IReadOnlyList<int>)p).ToList();
        var options = new SamplingOptions(MaxNewTokens: 8, Temperature: 0.9f, TopK: 20, TopP: 0.95f, Seed: 77, EndToken: 0);
        using var gen = new Generator(model);
        var a = gen.Generate(prompts, options);
        var b = gen.Generate(prompts, options);
        var other = gen.Generate(prompts, options with { Seed = 78 });
        for (int r = 0; r < prompts.Count; r++)
        {
            Assert.Equal(a.Tokens[r], b.Tokens[r]);
            Assert.Equal(a.LogProbs[r], b.LogProbs[r]);
            Assert.Equal(a.Ended[r], b.Ended[r]);
            Assert.True(a.Tokens[r].Length >= 1 && a.Tokens[r].Length <= 8);
            if (a.Ended[r]) Assert.Equal(0, a.Tokens[r][^1]);
        }
        Assert.False(Enumerable.Range(0, prompts.Count).All(r => a.Tokens[r].SequenceEqual(other.Tokens[r])), "another seed drew the same batch");

        // The RL trainer recomputes each sampled token's log-prob with the training forward at the same temperature.
        for (int r = 0; r < prompts.Count; r++)
        {
            var seq = Prompts[r].Concat(a.Tokens[r]).ToArray();
            int T = seq.Length - 1;
            var lp = new float[T]; var ent = new float[T];
            model.ForwardTokenLogProbs(1, T, seq[..T], seq[1..], options.Temperature, lp, ent);
            var expected = lp[(Prompts[r].Length - 1)..].Select(v => (double)v).ToArray();
            // Decode vs full forward logits differ by float32 rounding (see the cached-decoding test).
            Close.All(expected, a.LogProbs[r], 2e-5, 1e-5, $"row {r} sampled log-probs");
        }
    }

    [Fact]
    public void GenerationRejectsBadPrompts()
    {
        var (model, _, _) = Make("cpu", seed: 25);
        using var _m = model;
        using var gen = new Generator(model);
        var e = Assert.Throws<ArgumentException>(() => gen.Generate([Array.Empty<int>()], new SamplingOptions()));
        Assert.Contains("prompt 0 is empty", e.Message);
        e = Assert.Throws<ArgumentException>(() => gen.Generate([new[] { 1, 999 }], new SamplingOptions()));
        Assert.Contains("999", e.Message);
    }
}
