using ArcherIlgpu.Kernels.Tests.Reference;
using MathNet.Numerics.Distributions;

namespace ArcherIlgpu.Kernels.Tests;

/// <summary>
/// Sampling: greedy is the argmax; draw frequencies match the intended (top-k / top-p restricted)
/// distribution by a chi-square test; excluded tokens never appear; backends draw identical tokens;
/// seeds reproduce and decorrelate draws; the reported log-prob is the full-vocabulary one.
/// Every draw comes from a fixed seed, so each test is deterministic; the chi-square bound is the
/// p = 1e-4 critical value, so a correct sampler would fail it for one seed in 10,000.
/// </summary>
public class SamplingTests
{
    [Fact]
    public void StreamHashGivesTheSameUniformsAsTheFullKey()
    {
        // The cpu sampler hoists the (seed, row, position) mixing out of its loop over the vocabulary;
        // the draw must stay bit-identical to CounterRng.Uniform, which the ILGPU kernel uses.
        foreach (var (seed, row, position) in new[] { (0UL, 0, 0), (42UL, 3, 17), (ulong.MaxValue, int.MaxValue, 1023) })
        {
            ulong stream = CounterRng.StreamHash(seed, row, position);
            foreach (int index in new[] { 0, 1, 7, 50256, int.MaxValue })
                Assert.Equal(CounterRng.Uniform(seed, row, position, index), CounterRng.UniformInStream(stream, index));
        }
    }

    /// <summary>log softmax in float32 over ≤ 127 logits of magnitude ≤ 4 (see ClassifierHeadTests): a few ulps of values ≤ 15.</summary>
    const double LogProbAtol = 1e-5, LogProbRtol = 1e-5;

    sealed record Draws(int[] Tokens, float[] LogProbs);

    /// <summary>Samples every row of logits [N, V] with rows[n] = rowBase + n and positions[n] = position.</summary>
    static Draws Run(Backend backend, float[] logits, int N, int V, float temperature, int topK, float topP, ulong seed,
        int[]? rowIds = null, int[]? positions = null)
    {
        rowIds ??= Enumerable.Range(0, N).ToArray();
        positions ??= Enumerable.Range(0, N).Select(n => 3 * n + 1).ToArray();
        var tokens = backend.Allocate<int>(N).All;
        var logProbs = backend.Allocate<float>(N).All;
        backend.Sample(backend.Upload<float>(logits), backend.Upload<int>(rowIds), backend.Upload<int>(positions), N, V,
            temperature, topK, topP, seed, tokens, logProbs);
        return new Draws(backend.ToArray(tokens), backend.ToArray(logProbs));
    }

    static float[] Repeat(float[] row, int times) => Enumerable.Range(0, times).SelectMany(_ => row).ToArray();

    /// <summary>Full-vocabulary log softmax(z/T)[token] per row (T = 0 reports at T = 1).</summary>
    static double[] ExpectedLogProbs(float[] logits, int V, int[] tokens, float temperature)
    {
        double invT = temperature == 0 ? 1 : 1.0 / temperature;
        return tokens.Select((t, n) =>
            ClassifierHeadReference.LogSoftmax(TestData.ToDouble(logits[(n * V)..((n + 1) * V)]), invT)[t]).ToArray();
    }

    [SkippableTheory, MemberData(nameof(TestBackends.Names), MemberType = typeof(TestBackends))]
    public void Greedy_IsTheLowestArgMax_WithTemperatureOneLogProb(string name)
    {
        var backend = TestBackends.Get(name);
        foreach (int V in Awkward.Sizes)
        {
            const int N = 5;
            var logits = TestData.Floats(40 + V, N * V, 3.0);
            if (V > 2) { logits[V + 2] = 9f; logits[V + V - 1] = 9f; }   // row 1: a tie, the lower id must win
            var draws = Run(backend, logits, N, V, 0f, 3, 0.5f, 7);     // top-k/top-p are irrelevant when greedy
            var expected = Enumerable.Range(0, N).Select(n => SamplingReference.ArgMax(logits.AsSpan(n * V, V))).ToArray();
            Assert.Equal(expected, draws.Tokens);
            Check.Close(ExpectedLogProbs(logits, V, expected, 0f), draws.LogProbs, LogProbAtol, LogProbRtol, $"{name} greedy log p V={V}");
        }
    }

    /// <summary>
    /// Backends that can afford thousands of rows. The ILGPU CPU simulator (one OS thread per GPU thread,
    /// a System.Threading.Barrier per group barrier) takes about a second per sampled row here, so it is
    /// held to these statistics through <see cref="Draws_AreIdenticalToTheCpuBackend"/> instead.
    /// </summary>
    static readonly string[] FastBackends = ["cpu", "cuda"];

    public static IEnumerable<object[]> FrequencyCases()
    {
        foreach (var backend in FastBackends)
        {
            yield return [backend, 1.0f, 0, 1.0f];     // plain softmax
            yield return [backend, 0.7f, 3, 1.0f];     // top-k
            yield return [backend, 1.3f, 0, 0.8f];     // top-p
            yield return [backend, 1.0f, 5, 0.6f];     // both
        }
    }

    [SkippableTheory, MemberData(nameof(FrequencyCases))]
    public void Frequencies_MatchTheRestrictedSoftmax_ChiSquare(string name, float temperature, int topK, float topP)
    {
        var backend = TestBackends.Get(name);
        // Many independent draws of one distribution: one row each, distinct (row, position) keys.
        const int draws = 20000;
        float[] row = [1.2f, -0.3f, 0.4f, 2.0f, -1.5f, 0.9f, 0.0f];
        int V = row.Length;
        var p = SamplingReference.Distribution(row, temperature, topK, topP);
        var result = Run(backend, Repeat(row, draws), draws, V, temperature, topK, topP, 1234);

        var counts = new long[V];
        foreach (int t in result.Tokens) counts[t]++;
        double chi2 = 0; int categories = 0;
        for (int v = 0; v < V; v++)
        {
            if (p[v] == 0) { Assert.True(counts[v] == 0, $"{name}: excluded token {v} drawn {counts[v]} times"); continue; }
            double expected = p[v] * draws;
            chi2 += (counts[v] - expected) * (counts[v] - expected) / expected;
            categories++;
        }
        double critical = categories > 1 ? ChiSquared.InvCDF(categories - 1, 1 - 1e-4) : 0;
        Assert.True(chi2 <= critical, $"{name} T={temperature} k={topK} p={topP}: chi² {chi2:F2} > {critical:F2}; " +
            $"counts [{string.Join(", ", counts)}], expected [{string.Join(", ", p.Select(x => (x * draws).ToString("F0")))}]");
    }

    public static IEnumerable<object[]> FilterCases()
    {
        foreach (var backend in FastBackends)
        {
            yield return [backend, 1.0f, 4, 1.0f];
            yield return [backend, 0.8f, 0, 0.5f];
            yield return [backend, 1.5f, 10, 0.9f];
        }
    }

    [SkippableTheory, MemberData(nameof(FilterCases))]
    public void TopKAndTopP_NeverEmitExcludedTokens(string name, float temperature, int topK, float topP)
    {
        var backend = TestBackends.Get(name);
        // Different random rows, so the cut falls in different places.
        const int N = 300, V = 127;
        var logits = TestData.Floats(77, N * V, 3.0);
        var draws = Run(backend, logits, N, V, temperature, topK, topP, 99);
        for (int n = 0; n < N; n++)
        {
            var p = SamplingReference.Distribution(logits.AsSpan(n * V, V), temperature, topK, topP);
            Assert.True(p[draws.Tokens[n]] > 0, $"{name} row {n}: token {draws.Tokens[n]} is outside the allowed set");
        }
        Check.Close(ExpectedLogProbs(logits, V, draws.Tokens, temperature), draws.LogProbs, LogProbAtol, LogProbRtol,
            $"{name} full-vocabulary log p");
    }

    /// <summary>Plain, top-k, top-p and both, at awkward vocabularies; few rows, for the simulator's sake.</summary>
    public static IEnumerable<object[]> SettingsNotCpu()
    {
        foreach (var backend in new[] { "ilgpu-cpu", "cuda" })
        {
            yield return [backend, 7, 1.0f, 0, 1.0f];
            yield return [backend, 33, 0.6f, 5, 1.0f];
            yield return [backend, 33, 1.2f, 0, 0.7f];
            yield return [backend, 127, 0.9f, 20, 0.95f];
            yield return [backend, 127, 0.15f, 0, 1.0f];   // logits/T span ~40: most racers are pruned, differently per backend
        }
    }

    [SkippableTheory, MemberData(nameof(SettingsNotCpu))]
    public void Draws_AreIdenticalToTheCpuBackend(string name, int V, float temperature, int topK, float topP)
    {
        var backend = TestBackends.Get(name);
        var cpu = TestBackends.Get("cpu");
        int N = name == "ilgpu-cpu" ? 4 : 256;
        var logits = TestData.Floats(V * 3 + topK, N * V, 3.0);
        var ours = Run(backend, logits, N, V, temperature, topK, topP, 2024);
        var reference = Run(cpu, logits, N, V, temperature, topK, topP, 2024);
        Assert.Equal(reference.Tokens, ours.Tokens);
        // same token, log p from differently ordered float32 sums: a few ulps
        Check.Close(TestData.ToDouble(reference.LogProbs), ours.LogProbs, 1e-5, 1e-5, $"{name} vs cpu log p");
    }

    [SkippableTheory, MemberData(nameof(TestBackends.Names), MemberType = typeof(TestBackends))]
    public void Seeds_Reproduce_Decorrelate_AndDoNotDependOnBatchOrder(string name)
    {
        var backend = TestBackends.Get(name);
        int N = name == "ilgpu-cpu" ? 8 : 64;
        const int V = 7;
        var logits = Repeat(TestData.Floats(5, V, 0.2), N);   // nearly uniform: draws spread over all tokens
        var a = Run(backend, logits, N, V, 1f, 0, 1f, 42).Tokens;
        var again = Run(backend, logits, N, V, 1f, 0, 1f, 42).Tokens;
        var other = Run(backend, logits, N, V, 1f, 0, 1f, 43).Tokens;
        Assert.Equal(a, again);
        // two independent draws over 7 near-uniform tokens agree with probability ≈ 1/7 each; all N agreeing
        // by chance has probability ≈ 7^-N (1e-7 for N = 8)
        int same = a.Zip(other).Count(x => x.First == x.Second);
        Assert.True(same < N, $"{name}: seeds 42 and 43 agree on all {N} draws");
        if (N >= 64) Assert.True(same < N / 3, $"{name}: seeds 42 and 43 agree on {same} of {N} draws");   // mean 9, sd 2.8

        // The draw belongs to (seed, row, position), not to the slot in the batch.
        var rowIds = Enumerable.Range(0, N).ToArray();
        var positions = Enumerable.Range(0, N).Select(n => 3 * n + 1).ToArray();
        var reversed = Run(backend, logits, N, V, 1f, 0, 1f, 42, rowIds.Reverse().ToArray(), positions.Reverse().ToArray()).Tokens;
        Assert.Equal(a, reversed.Reverse().ToArray());
    }

    [SkippableTheory, MemberData(nameof(TestBackends.Names), MemberType = typeof(TestBackends))]
    public void TinyTopP_KeepsOnlyTheMostLikelyToken(string name)
    {
        var backend = TestBackends.Get(name);
        int N = name == "ilgpu-cpu" ? 2 : 6;
        const int V = 33;
        var logits = TestData.Floats(8, N * V, 3.0);
        var draws = Run(backend, logits, N, V, 1f, 0, 1e-6f, 3);
        var expected = Enumerable.Range(0, N).Select(n => SamplingReference.ArgMax(logits.AsSpan(n * V, V))).ToArray();
        Assert.Equal(expected, draws.Tokens);
    }
}
