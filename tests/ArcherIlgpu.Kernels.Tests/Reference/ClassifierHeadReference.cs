namespace ArcherIlgpu.Kernels.Tests.Reference;

/// <summary>
/// Float64 classifier head, written from the definitions with plain loops: softmax with the maximum
/// subtracted, logsumexp, entropy −Σ p log p (with 0 log 0 = 0 for masked −∞ logits).
/// </summary>
public static class ClassifierHeadReference
{
    /// <summary>log softmax(z·invT) of one row.</summary>
    public static double[] LogSoftmax(ReadOnlySpan<double> z, double invT)
    {
        double max = double.NegativeInfinity;
        foreach (double v in z) max = Math.Max(max, v * invT);
        double sum = 0;
        foreach (double v in z) sum += Math.Exp(v * invT - max);
        double logSum = max + Math.Log(sum);
        var result = new double[z.Length];
        for (int i = 0; i < z.Length; i++) result[i] = z[i] * invT - logSum;
        return result;
    }

    /// <summary>losses[n] = w (logsumexp − z[t]) and dLogits = w (softmax − onehot); weight 0 rows are all zero.</summary>
    public static (double[] Losses, double[] DLogits) CrossEntropy(double[] logits, int[] targets, double[] weights, int N, int V)
    {
        var losses = new double[N];
        var d = new double[(long)N * V];
        for (int n = 0; n < N; n++)
        {
            if (weights[n] == 0) continue;
            var logp = LogSoftmax(logits.AsSpan(n * V, V), 1.0);
            losses[n] = -weights[n] * logp[targets[n]];
            for (int v = 0; v < V; v++)
                d[n * V + v] = weights[n] * (Math.Exp(logp[v]) - (v == targets[n] ? 1 : 0));
        }
        return (losses, d);
    }

    public static double CrossEntropyTotal(double[] logits, int[] targets, double[] weights, int N, int V)
        => CrossEntropy(logits, targets, weights, N, V).Losses.Sum();

    public static (double[] LogProbs, double[] Entropies) LogProbEntropy(double[] logits, int[] tokens, int N, int V, double temperature)
    {
        var logProbs = new double[N];
        var entropies = new double[N];
        for (int n = 0; n < N; n++)
        {
            var logp = LogSoftmax(logits.AsSpan(n * V, V), 1.0 / temperature);
            logProbs[n] = logp[tokens[n]];
            double h = 0;
            foreach (double lp in logp)
                if (!double.IsNegativeInfinity(lp)) h -= Math.Exp(lp) * lp;
            entropies[n] = h;
        }
        return (logProbs, entropies);
    }

    /// <summary>Σ_n g_n log p_n[token_n], whose gradient TokenLogProbBackward computes.</summary>
    public static double WeightedLogProbTotal(double[] logits, int[] tokens, double[] g, int N, int V, double temperature)
    {
        var (logProbs, _) = LogProbEntropy(logits, tokens, N, V, temperature);
        double total = 0;
        for (int n = 0; n < N; n++) total += g[n] * logProbs[n];
        return total;
    }

    /// <summary>d[n, v] = g_n (onehot − p_v) / T.</summary>
    public static double[] LogProbBackward(double[] logits, int[] tokens, double[] g, int N, int V, double temperature)
    {
        var d = new double[(long)N * V];
        for (int n = 0; n < N; n++)
        {
            var logp = LogSoftmax(logits.AsSpan(n * V, V), 1.0 / temperature);
            for (int v = 0; v < V; v++)
                d[n * V + v] = g[n] * ((v == tokens[n] ? 1 : 0) - Math.Exp(logp[v])) / temperature;
        }
        return d;
    }
}
