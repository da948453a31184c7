namespace ArcherIlgpu.Rl.Metrics;

/// <summary>Evaluation metrics over n samples per problem of which c are correct.</summary>
public static class PassAtK
{
    /// <summary>
    /// Unbiased pass@k (Chen et al. 2021): 1 − C(n−c, k)/C(n, k), the probability that k samples drawn
    /// without replacement include a correct one. Computed as 1 − Π_{i=n−c+1}^{n} (1 − k/i), which never
    /// forms a large binomial.
    /// </summary>
    public static double Estimate(int n, int c, int k)
    {
        if (n < 1) throw new ArgumentOutOfRangeException(nameof(n), n, "n must be >= 1");
        if (c < 0 || c > n) throw new ArgumentOutOfRangeException(nameof(c), c, $"c must be in 0..n ({n})");
        if (k < 1 || k > n) throw new ArgumentOutOfRangeException(nameof(k), k, $"k must be in 1..n ({n})");
        if (n - c < k) return 1.0;
        double noneCorrect = 1.0;
        for (int i = n - c + 1; i <= n; i++) noneCorrect *= 1.0 - (double)k / i;
        return 1.0 - noneCorrect;
    }

    /// <summary>avg@n: the share of correct samples, c/n.</summary>
    public static double AverageAtN(int n, int c)
    {
        if (n < 1) throw new ArgumentOutOfRangeException(nameof(n), n, "n must be >= 1");
        if (c < 0 || c > n) throw new ArgumentOutOfRangeException(nameof(c), c, $"c must be in 0..n ({n})");
        return (double)c / n;
    }

    /// <summary>Mean pass@k over problems, each given as (n, c).</summary>
    public static double Mean(IEnumerable<(int N, int Correct)> problems, int k)
    {
        double sum = 0; int count = 0;
        foreach (var (n, c) in problems) { sum += Estimate(n, c, k); count++; }
        return count == 0 ? 0 : sum / count;
    }
}

/// <summary>Text statistics logged by Archer's reward manager.</summary>
public static class TextMetrics
{
    /// <summary>
    /// Archer's repetition ratio: split the lower-cased text on whitespace and form n-grams of words (n = 20);
    /// the ratio is the share of n-gram occurrences that already occurred earlier in the same text, or 0 when
    /// the text has fewer than n words.
    /// </summary>
    public static double RepetitionRatio(string text, int n = 20)
    {
        if (n < 1) throw new ArgumentOutOfRangeException(nameof(n), n, "n must be >= 1");
        var words = text.ToLowerInvariant().Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
        if (words.Length < n) return 0.0;
        var seen = new HashSet<string>(StringComparer.Ordinal);
        int total = words.Length - n + 1, repeated = 0;
        for (int i = 0; i < total; i++)
            if (!seen.Add(string.Join('\u0001', words, i, n))) repeated++;
        return (double)repeated / total;
    }
}
