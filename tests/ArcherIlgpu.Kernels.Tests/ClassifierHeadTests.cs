using ArcherIlgpu.Kernels.Tests.Reference;

namespace ArcherIlgpu.Kernels.Tests;

/// <summary>
/// Cross-entropy, token log-prob/entropy and the log-prob backward on every backend against the float64
/// reference; the reference's gradients against finite differences; closed forms for hand-worked rows.
///
/// Tolerances: the kernels work in float32 on logits of magnitude ≤ 4 and rows of ≤ 50257 terms. A
/// softmax probability carries a relative error of a few float ulps (1e-7 each) plus the relative error
/// of the row sum, about 1e-6 for long pairwise/strided sums, so gradients (|d| ≤ |w| ≤ 1.5) are held to
/// atol 2e-6; a loss or log-prob is max + log(sum) − z with terms ≤ ~15, each good to ~1 ulp (1e-6), so
/// atol 1e-5 with rtol 1e-5.
/// </summary>
public class ClassifierHeadTests
{
    const double LossAtol = 1e-5, LossRtol = 1e-5;
    const double GradAtol = 2e-6, GradRtol = 1e-5;

    /// <summary>Awkward shapes; the ILGPU CPU simulator runs one OS thread per GPU thread, so it gets a few small ones.</summary>
    static IEnumerable<(int N, int V)> Shapes(string backend)
    {
        if (backend == "ilgpu-cpu") return [(1, 1), (4, 33), (2, 127)];
        var shapes = from n in Awkward.Sizes from v in Awkward.Sizes select (n, v);
        return shapes.Concat([(7, 1000), (2, 50257)]);
    }

    /// <summary>Targets in range, except at weight-0 rows, which get out-of-range targets that must not be read.</summary>
    static (float[] Logits, int[] Targets, float[] Weights) Batch(int N, int V, int seed)
    {
        var logits = TestData.Floats(seed, (long)N * V, 4.0);
        var targets = TestData.Ints(seed + 1, N, V);
        var weights = TestData.Floats(seed + 2, N, 0.5);
        for (int n = 0; n < N; n++)
        {
            weights[n] += 1f;                                             // weights in [0.5, 1.5]
            if (n % 3 == 1) { weights[n] = 0f; targets[n] = n % 2 == 0 ? -7 : V + 3; }
        }
        return (logits, targets, weights);
    }

    [SkippableTheory, MemberData(nameof(TestBackends.Names), MemberType = typeof(TestBackends))]
    public void CrossEntropy_MatchesReference_WithIgnoredRowsAndInPlaceGradient(string name)
    {
        var backend = TestBackends.Get(name);
        foreach (var (N, V) in Shapes(name))
        {
            var (logits, targets, weights) = Batch(N, V, 100 + N * 7 + V);
            var (refLoss, refGrad) = ClassifierHeadReference.CrossEntropy(TestData.ToDouble(logits), targets, TestData.ToDouble(weights), N, V);
            string shape = $"N={N} V={V}";

            var z = backend.Upload<float>(logits);
            var t = backend.Upload<int>(targets);
            var w = backend.Upload<float>(weights);
            var losses = backend.Upload<float>(Enumerable.Repeat(float.NaN, N).ToArray());
            var d = backend.Upload<float>(Enumerable.Repeat(float.NaN, N * V).ToArray());   // must be overwritten
            backend.CrossEntropyForwardBackward(z, t, w, N, V, losses, d);
            Check.Close(refLoss, backend.ToArray(losses), LossAtol, LossRtol, $"{name} CE loss {shape}");
            Check.Close(refGrad, backend.ToArray(d), GradAtol, GradRtol, $"{name} CE dLogits {shape}");

            // OVERWRITTEN, not accumulated: a second call leaves the same gradient.
            backend.CrossEntropyForwardBackward(z, t, w, N, V, losses, d);
            Check.Close(refGrad, backend.ToArray(d), GradAtol, GradRtol, $"{name} CE dLogits second call {shape}");

            // Loss only.
            var lossOnly = backend.Allocate<float>(N).All;
            backend.CrossEntropyForwardBackward(z, t, w, N, V, lossOnly, default);
            Check.Close(refLoss, backend.ToArray(lossOnly), LossAtol, LossRtol, $"{name} CE loss without gradient {shape}");

            // In place: the gradient replaces the logits.
            backend.CrossEntropyForwardBackward(z, t, w, N, V, losses, z);
            Check.Close(refLoss, backend.ToArray(losses), LossAtol, LossRtol, $"{name} CE loss in place {shape}");
            Check.Close(refGrad, backend.ToArray(z), GradAtol, GradRtol, $"{name} CE dLogits in place {shape}");
        }
    }

    [Fact]
    public void CrossEntropyReference_GradientMatchesFiniteDifferences()
    {
        const int N = 4, V = 7;
        var (logits, targets, weights) = Batch(N, V, 5);
        var x = TestData.ToDouble(logits);
        var w = TestData.ToDouble(weights);
        var numeric = FiniteDifference.Gradient(z => ClassifierHeadReference.CrossEntropyTotal(z, targets, w, N, V), x);
        var (_, analytic) = ClassifierHeadReference.CrossEntropy(x, targets, w, N, V);
        // central differences with h = 1e-5 on a smooth float64 function: truncation ~h² ≈ 1e-10, rounding ~1e-16/h ≈ 1e-11
        Check.Close(numeric, analytic, 1e-8, 1e-6, "CE reference gradient vs finite differences");
    }

    [SkippableTheory, MemberData(nameof(TestBackends.Names), MemberType = typeof(TestBackends))]
    public void TokenLogProbEntropy_MatchesReference_AtSeveralTemperatures(string name)
    {
        var backend = TestBackends.Get(name);
        foreach (var (N, V) in Shapes(name))
            foreach (float temperature in name == "ilgpu-cpu" ? [0.7f] : new[] { 1f, 0.7f, 1.8f })
            {
                var logits = TestData.Floats(200 + N + V, (long)N * V, 4.0);
                var tokens = TestData.Ints(300 + N + V, N, V);
                var (refLp, refH) = ClassifierHeadReference.LogProbEntropy(TestData.ToDouble(logits), tokens, N, V, temperature);
                var (lp, h) = RunLogProbEntropy(backend, logits, tokens, N, V, temperature);
                string what = $"{name} N={N} V={V} T={temperature}";
                // logits/T ≤ 4/0.7 ≈ 6: the loss tolerance's terms scale by 1/T, still within atol 1e-5 + rtol
                Check.Close(refLp, lp, LossAtol, LossRtol, $"logProb {what}");
                // H = log S − Σ e·x / S: two terms ≤ ln V + 6, each a few ulps
                Check.Close(refH, h, LossAtol, LossRtol, $"entropy {what}");
            }
    }

    static (float[] LogProbs, float[] Entropies) RunLogProbEntropy(Backend backend, float[] logits, int[] tokens, int N, int V, float temperature)
    {
        var lp = backend.Allocate<float>(N).All;
        var h = backend.Allocate<float>(N).All;
        backend.TokenLogProbEntropy(backend.Upload<float>(logits), backend.Upload<int>(tokens), N, V, temperature, lp, h);
        return (backend.ToArray(lp), backend.ToArray(h));
    }

    [SkippableTheory, MemberData(nameof(TestBackends.Names), MemberType = typeof(TestBackends))]
    public void TokenLogProbEntropy_HandWorkedDistributions(string name)
    {
        var backend = TestBackends.Get(name);
        // Uniform logits over V tokens: every log p = −ln V, H = ln V (any constant logit, any temperature).
        foreach (int V in new[] { 1, 7, 127 })
        {
            var (lp, h) = RunLogProbEntropy(backend, Enumerable.Repeat(2.5f, 2 * V).ToArray(), [0, V - 1], 2, V, 0.7f);
            // exact sums of V ones: only the float log rounding (1 ulp of ln 127 ≈ 5e-7) remains
            Check.Close([-Math.Log(V), -Math.Log(V)], lp, 1e-6, 1e-6, $"{name} uniform log p V={V}");
            Check.Close([Math.Log(V), Math.Log(V)], h, 1e-6, 1e-6, $"{name} uniform entropy V={V}");
        }

        // One huge logit: p ≈ 1 on it (others e^-60 ≈ 1e-26): log p ≈ 0 and H ≈ 0, log p of another token = −60.
        {
            const int V = 33;
            var row = new float[V]; row[5] = 60f;
            var (lp, h) = RunLogProbEntropy(backend, [.. row, .. row], [5, 6], 2, V, 1f);
            Check.Close([0, -60], lp, 1e-5, 1e-6, $"{name} one-hot log p");   // ulp of 60 is 4e-6
            Check.Close([0, 0], h, 1e-6, 0, $"{name} one-hot entropy");
        }

        // Two points (V = 2): p = σ((a − b)/T), H = −p ln p − (1 − p) ln(1 − p).
        foreach (float temperature in new[] { 1f, 0.5f, 2f })
        {
            float a = 1.3f, b = -0.4f;
            double p = 1 / (1 + Math.Exp(-(a - b) / (double)temperature));
            var (lp, h) = RunLogProbEntropy(backend, [a, b, a, b], [0, 1], 2, 2, temperature);
            double entropy = -p * Math.Log(p) - (1 - p) * Math.Log(1 - p);
            // closed form against float32 arithmetic on O(1) values: a few ulps
            Check.Close([Math.Log(p), Math.Log(1 - p)], lp, 1e-6, 1e-5, $"{name} two-point log p T={temperature}");
            Check.Close([entropy, entropy], h, 1e-6, 1e-5, $"{name} two-point entropy T={temperature}");
        }

        // Masked vocabulary: −∞ logits have p = 0 and add nothing to the entropy (0 log 0 = 0, not NaN).
        {
            var row = new[] { 0.5f, float.NegativeInfinity, -1f, float.NegativeInfinity, 2f, 0f, float.NegativeInfinity };
            var (refLp, refH) = ClassifierHeadReference.LogProbEntropy(TestData.ToDouble(row), [4], 1, row.Length, 1.0);
            var (lp, h) = RunLogProbEntropy(backend, row, [4], 1, row.Length, 1f);
            Check.Close(refLp, lp, LossAtol, LossRtol, $"{name} masked log p");
            Check.Close(refH, h, LossAtol, LossRtol, $"{name} masked entropy");
        }
    }

    [SkippableTheory, MemberData(nameof(TestBackends.Names), MemberType = typeof(TestBackends))]
    public void Temperature_ZeroScoresAsOne_NegativeIsRejected(string name)
    {
        var backend = TestBackends.Get(name);
        const int N = 3, V = 7;
        var logits = TestData.Floats(9, N * V, 3.0);
        int[] tokens = [1, 4, 6];
        var (lp0, h0) = RunLogProbEntropy(backend, logits, tokens, N, V, 0f);
        var (refLp, refH) = ClassifierHeadReference.LogProbEntropy(TestData.ToDouble(logits), tokens, N, V, 1.0);
        Check.Close(refLp, lp0, LossAtol, LossRtol, $"{name} T=0 log p as T=1");
        Check.Close(refH, h0, LossAtol, LossRtol, $"{name} T=0 entropy as T=1");
        Assert.Throws<ArgumentOutOfRangeException>(() => RunLogProbEntropy(backend, logits, tokens, N, V, -1f));
    }

    [SkippableTheory, MemberData(nameof(TestBackends.Names), MemberType = typeof(TestBackends))]
    public void TokenLogProbBackward_MatchesReference_InPlaceAndOverwriting(string name)
    {
        var backend = TestBackends.Get(name);
        foreach (var (N, V) in Shapes(name))
            foreach (float temperature in name == "ilgpu-cpu" ? [0.7f] : new[] { 1f, 0.7f })
            {
                var logits = TestData.Floats(400 + N + V, (long)N * V, 4.0);
                var tokens = TestData.Ints(500 + N + V, N, V);
                var g = TestData.Floats(600 + N + V, N, 1.0);
                for (int n = 1; n < N; n += 4) { g[n] = 0f; tokens[n] = -1; }   // masked: token must not be read
                var expected = ClassifierHeadReference.LogProbBackward(TestData.ToDouble(logits), tokens, TestData.ToDouble(g), N, V, temperature);
                string what = $"{name} N={N} V={V} T={temperature}";

                var z = backend.Upload<float>(logits);
                var t = backend.Upload<int>(tokens);
                var dg = backend.Upload<float>(g);
                var d = backend.Upload<float>(Enumerable.Repeat(float.NaN, N * V).ToArray());
                // |d| ≤ |g|/T ≤ 1.43: the gradient tolerance scaled by 1/T
                double atol = GradAtol / temperature;
                backend.TokenLogProbBackward(z, t, dg, N, V, temperature, d);
                Check.Close(expected, backend.ToArray(d), atol, GradRtol, $"dLogits {what}");
                backend.TokenLogProbBackward(z, t, dg, N, V, temperature, d);
                Check.Close(expected, backend.ToArray(d), atol, GradRtol, $"dLogits second call (overwrites) {what}");
                backend.TokenLogProbBackward(z, t, dg, N, V, temperature, z);
                Check.Close(expected, backend.ToArray(z), atol, GradRtol, $"dLogits in place {what}");
            }
    }

    [Fact]
    public void LogProbBackwardReference_MatchesFiniteDifferences()
    {
        const int N = 3, V = 7;
        const double temperature = 0.7;
        var x = TestData.ToDouble(TestData.Floats(11, N * V, 3.0));
        var tokens = TestData.Ints(12, N, V);
        var g = TestData.ToDouble(TestData.Floats(13, N, 1.0));
        var numeric = FiniteDifference.Gradient(z => ClassifierHeadReference.WeightedLogProbTotal(z, tokens, g, N, V, temperature), x);
        var analytic = ClassifierHeadReference.LogProbBackward(x, tokens, g, N, V, temperature);
        // central differences, h = 1e-5: truncation ~h²·|f'''| ≈ 1e-10, rounding ≈ 1e-11
        Check.Close(numeric, analytic, 1e-8, 1e-6, "log-prob backward reference vs finite differences");
    }
}
