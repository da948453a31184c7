using ArcherIlgpu.Rl.Metrics;
using MathNet.Numerics;

namespace ArcherIlgpu.Rl.Tests;

public class MetricTests
{
    /// <summary>pass@k by enumerating every k-subset of n samples of which the first c are correct.</summary>
    static double BruteForce(int n, int c, int k)
    {
        long total = 0, hit = 0;
        for (int mask = 0; mask < 1 << n; mask++)
        {
            if (System.Numerics.BitOperations.PopCount((uint)mask) != k) continue;
            total++;
            if ((mask & ((1 << c) - 1)) != 0) hit++;
        }
        return (double)hit / total;
    }

    [Fact]
    public void PassAtKMatchesSubsetEnumeration()
    {
        for (int n = 1; n <= 10; n++)
            for (int c = 0; c <= n; c++)
                for (int k = 1; k <= n; k++)
                    // Exact counts vs a product of ≤ 10 factors: ~1e-15 relative.
                    Assert.Equal(BruteForce(n, c, k), PassAtK.Estimate(n, c, k), 1e-12);
    }

    [Fact]
    public void PassAtKIsStableForLargeN()
    {
        // n = 1000 would overflow doubles as C(1000, 500); compare with MathNet's log-binomials.
        foreach (var (n, c, k) in new[] { (1000, 3, 500), (1000, 1, 64), (512, 100, 256), (64, 0, 64) })
        {
            double expected = 1 - Math.Exp(SpecialFunctions.BinomialLn(n - c, k) - SpecialFunctions.BinomialLn(n, k));
            if (n - c < k) expected = 1;
            // Log-gamma differences of values ~1e3 lose ~1e-12 relative.
            Assert.Equal(expected, PassAtK.Estimate(n, c, k), 1e-9);
        }
        Assert.Equal(0.0, PassAtK.Estimate(64, 0, 64));
        Assert.Equal(1.0, PassAtK.Estimate(64, 1, 64));
    }

    [Fact]
    public void AverageAndMean()
    {
        Assert.Equal(0.25, PassAtK.AverageAtN(8, 2));
        // pass@1 = c/n; mean over two problems.
        Assert.Equal((0.25 + 1.0) / 2, PassAtK.Mean([(8, 2), (4, 4)], 1), 1e-12);
        Assert.Throws<ArgumentOutOfRangeException>(() => PassAtK.Estimate(4, 5, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => PassAtK.Estimate(4, 1, 5));
    }

    [Fact]
    public void RepetitionRatioOfWordTwentyGrams()
    {
        Assert.Equal(0.0, TextMetrics.RepetitionRatio("only a few words here"));
        var words = Enumerable.Range(0, 20).Select(i => $"w{i}").ToArray();
        // Exactly 20 distinct words: one 20-gram, not repeated.
        Assert.Equal(0.0, TextMetrics.RepetitionRatio(string.Join(" ", words)));
        // The same 20 words twice (40 words): 21 20-grams; the last one repeats the first, and the 19 in
        // between are rotations, all new → 1/21. Case and whitespace are ignored.
        var twice = string.Join(" ", words) + "\n  " + string.Join(" ", words).ToUpperInvariant();
        Assert.Equal(1.0 / 21, TextMetrics.RepetitionRatio(twice), 1e-12);
        // One word repeated 25 times: 6 20-grams, all equal → 5 repeats of 6.
        Assert.Equal(5.0 / 6, TextMetrics.RepetitionRatio(string.Join(" ", Enumerable.Repeat("again", 25))), 1e-12);
    }

    [Fact]
    public void ArLoptiReweightingAndSplit()
    {
        // π_old = 0.25: A' = (0.3·0.25 + 0.7)·2 = 1.55; π_old = 1: A' = A.
        float[] old = [MathF.Log(0.25f), 0f, MathF.Log(0.6f), MathF.Log(0.1f)];
        float[] mask = [1, 1, 1, 0];
        var a = new float[4];
        ArLopti.ReweightAdvantages([2, -1, 1, 5], old, mask, 0.3f, a);
        Assert.Equal(1.55f, a[0], 1e-6f);
        Assert.Equal(-1f, a[1], 1e-6f);
        Assert.Equal(0.88f, a[2], 1e-6f);
        Assert.Equal(0f, a[3]);

        var low = new float[4]; var high = new float[4];
        int n = ArLopti.SplitLowProbability(old, mask, 0.5f, low, high);
        Assert.Equal(1, n);
        Assert.Equal(new[] { 1f, 0f, 0f, 0f }, low);
        Assert.Equal(new[] { 0f, 1f, 1f, 0f }, high);
    }
}
