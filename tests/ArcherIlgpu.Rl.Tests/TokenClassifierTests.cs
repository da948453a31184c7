using MathNet.Numerics.Statistics;

namespace ArcherIlgpu.Rl.Tests;

public class TokenClassifierTests
{
    const byte N = TokenClass.None, L = TokenClass.Low, H = TokenClass.High;

    [Fact]
    public void QuantileByHand()
    {
        // n = 5, p = 0.8·4 = 3.2: 4 + 0.2·(5 − 4) = 4.2.
        Assert.Equal(4.2f, TokenClassifier.Quantile([1, 2, 3, 4, 5], 0.8), 1e-6f);
        // n = 4, p = 2.4: 30 + 0.4·10 = 34.
        Assert.Equal(34f, TokenClassifier.Quantile([10, 20, 30, 40], 0.8), 1e-5f);
        Assert.Equal(7f, TokenClassifier.Quantile([7], 0.8));
        Assert.True(float.IsNaN(TokenClassifier.Quantile([], 0.8)));
    }

    [Fact]
    public void QuantileMatchesMathNetR7()
    {
        // MathNet's QuantileDefinition.R7 is the same definition as numpy's 'linear' (Hyndman–Fan type 7).
        var rng = new Random(5);
        foreach (int n in new[] { 1, 2, 3, 7, 33, 127 })
            foreach (double rho in new[] { 0.1, 0.5, 0.8, 0.95 })
            {
                var x = Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 5)).ToArray();
                Array.Sort(x);
                double expected = SortedArrayStatistics.QuantileCustom(Array.ConvertAll(x, v => (double)v), rho, QuantileDefinition.R7);
                // The implementation rounds the float64 interpolation to float32: half an ulp of values ≤ 5.
                Assert.Equal(expected, TokenClassifier.Quantile(x, rho), 1e-6);
            }
    }

    static (float[] Tau, byte[] Classes) PerResponse(float[] h, float[] m, int rows, int T, double rho = 0.8,
        HighEntropyRule rule = HighEntropyRule.Greater)
    {
        var tau = new float[rows];
        var cls = new byte[rows * T];
        TokenClassifier.PerResponse(h, m, rows, T, rho, tau, cls, rule);
        return (tau, cls);
    }

    [Fact]
    public void PerResponseByHandWithPaddingAndStrictInequality()
    {
        // Row 0: valid [1, 2, 3, 4, 5] → τ = 4.2 → only 5 is high. Row 1: valid [0.5, 0.1], padding holds a huge
        // entropy that must be ignored: τ = 0.1 + 0.8·0.4 = 0.42 → 0.5 high.
        float[] h = [3, 1, 5, 2, 4, 0.5f, 0.1f, 99, 99, 99];
        float[] m = [1, 1, 1, 1, 1, 1, 1, 0, 0, 0];
        var (tau, cls) = PerResponse(h, m, 2, 5);
        Assert.Equal(4.2f, tau[0], 1e-6f);
        Assert.Equal(0.42f, tau[1], 1e-6f);
        Assert.Equal(new[] { L, L, H, L, L, H, L, N, N, N }, cls);
    }

    [Fact]
    public void TiesGoLow()
    {
        // All equal: τ equals every entropy, so none is strictly above it.
        var (tau, cls) = PerResponse([2, 2, 2, 2], [1, 1, 1, 1], 1, 4);
        Assert.Equal(2f, tau[0]);
        Assert.All(cls, c => Assert.Equal(L, c));
        // Sorted [1, 3, 3, 3, 3]: p = 3.2 falls between two 3s, τ = 3 exactly; the 3s are low.
        var (_, cls2) = PerResponse([3, 3, 1, 3, 3], [1, 1, 1, 1, 1], 1, 5);
        Assert.All(cls2, c => Assert.Equal(L, c));
        // The paper's ≥ sends the ties high.
        var (_, cls3) = PerResponse([3, 3, 1, 3, 3], [1, 1, 1, 1, 1], 1, 5, rule: HighEntropyRule.GreaterOrEqual);
        Assert.Equal(new[] { H, H, L, H, H }, cls3);
    }

    [Fact]
    public void OneTokenResponseHasNoHighToken()
    {
        var (tau, cls) = PerResponse([1.7f, 0, 0], [1, 0, 0], 1, 3);
        Assert.Equal(1.7f, tau[0]);
        Assert.Equal(new[] { L, N, N }, cls);
    }

    [Fact]
    public void EmptyRowIsInNeitherClassAndHasNaNThreshold()
    {
        var (tau, cls) = PerResponse([1, 2, 5, 6], [0, 0, 1, 1], 2, 2);
        Assert.True(float.IsNaN(tau[0]));
        Assert.Equal(new[] { N, N, L, H }, cls);
    }

    [Fact]
    public void PerResponseMatchesIndependentReferenceOnRandomRows()
    {
        var rng = new Random(11);
        const int rows = 9, T = 33;
        var h = new float[rows * T];
        var m = new float[rows * T];
        for (int i = 0; i < rows; i++)
        {
            int len = i * 4 % (T + 1);
            for (int t = 0; t < T; t++)
            {
                // Coarse values (multiples of 0.25) make ties common.
                h[i * T + t] = rng.Next(12) * 0.25f;
                m[i * T + t] = t < len ? 1 : 0;
            }
        }
        var (tau, cls) = PerResponse(h, m, rows, T);
        for (int i = 0; i < rows; i++)
        {
            var valid = Enumerable.Range(0, T).Where(t => m[i * T + t] > 0).Select(t => (double)h[i * T + t]).ToArray();
            if (valid.Length == 0) { Assert.True(float.IsNaN(tau[i])); continue; }
            double expectedTau = Statistics.QuantileCustom(valid, 0.8, QuantileDefinition.R7);
            Assert.Equal(expectedTau, tau[i], 1e-6);
            for (int t = 0; t < T; t++)
            {
                byte want = m[i * T + t] > 0 ? (h[i * T + t] > expectedTau + 1e-9 ? H : L) : N;
                Assert.Equal(want, cls[i * T + t]);
            }
            // About the top 20% (fewer with ties).
            Assert.True(cls.Skip(i * T).Take(T).Count(c => c == H) <= Math.Ceiling(0.2 * valid.Length));
        }
    }

    [Fact]
    public void BatchLevelKeepsTheTopShareWithTiesKept()
    {
        // Valid entropies 1..10 (two rows, padding ignored): τ = 1 + 0.8·9 = 8.2 → 9 and 10 high (top 20%).
        float[] h = [1, 2, 3, 4, 5, 50, 6, 7, 8, 9, 10, 50];
        float[] m = [1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 0];
        var cls = new byte[12];
        float tau = TokenClassifier.BatchLevel(h, m, 0.8, cls);
        Assert.Equal(8.2f, tau, 1e-5f);
        Assert.Equal(new[] { L, L, L, L, L, N, L, L, L, H, H, N }, cls);
        // A low-entropy response gets no high token at all with a batch threshold — the paper's complaint.
        Assert.Equal(0, TokenClassifier.Count(cls.AsSpan(0, 6)).High);

        // Ties at the threshold are kept (≥): all equal → every valid token high.
        var cls2 = new byte[3];
        TokenClassifier.BatchLevel([4, 4, 4], [1, 1, 1], 0.8, cls2);
        Assert.Equal(new[] { H, H, H }, cls2);

        var cls3 = new byte[2];
        Assert.True(float.IsNaN(TokenClassifier.BatchLevel([1, 2], [0, 0], 0.8, cls3)));
        Assert.Equal(new[] { N, N }, cls3);
    }

    [Fact]
    public void RejectsRhoOutsideTheOpenInterval()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => PerResponse([1], [1], 1, 1, rho: 1.0));
        Assert.Throws<ArgumentOutOfRangeException>(() => PerResponse([1], [1], 1, 1, rho: 0.0));
    }
}
