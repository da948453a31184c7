namespace ArcherIlgpu.Kernels.Tests.Reference;

/// <summary>
/// The distribution <see cref="Backend.Sample"/> is meant to draw from, in float64 by sorting:
/// softmax(z / T); keep the k largest logits (and any tied with the k-th); renormalise; keep the
/// smallest most-likely prefix whose mass reaches topP (and any tied with its last token); renormalise.
/// </summary>
public static class SamplingReference
{
    public static double[] Distribution(ReadOnlySpan<float> logits, double temperature, int topK, double topP)
    {
        int V = logits.Length;
        var z = new double[V];
        for (int v = 0; v < V; v++) z[v] = logits[v];
        var order = Enumerable.Range(0, V).OrderByDescending(v => z[v]).ThenBy(v => v).ToArray();
        var allowed = new bool[V];
        int kept = topK > 0 && topK < V ? topK : V;
        double kth = z[order[kept - 1]];
        for (int v = 0; v < V; v++) allowed[v] = z[v] >= kth;

        var p = new double[V];
        double max = z[order[0]], sum = 0;
        for (int v = 0; v < V; v++) if (allowed[v]) sum += p[v] = Math.Exp((z[v] - max) / temperature);
        for (int v = 0; v < V; v++) p[v] /= sum;

        if (topP < 1)
        {
            double cumulative = 0, cut = double.PositiveInfinity;
            foreach (int v in order)
            {
                if (!allowed[v]) break;
                cumulative += p[v];
                if (cumulative >= topP) { cut = z[v]; break; }
            }
            if (double.IsPositiveInfinity(cut)) cut = double.NegativeInfinity;   // rounding kept the sum below topP: keep all
            double kept2 = 0;
            for (int v = 0; v < V; v++) { if (z[v] < cut) p[v] = 0; kept2 += p[v]; }
            for (int v = 0; v < V; v++) p[v] /= kept2;
        }
        return p;
    }

    /// <summary>Lowest index of the largest logit.</summary>
    public static int ArgMax(ReadOnlySpan<float> logits)
    {
        int best = 0;
        for (int v = 1; v < logits.Length; v++) if (logits[v] > logits[best]) best = v;
        return best;
    }
}
