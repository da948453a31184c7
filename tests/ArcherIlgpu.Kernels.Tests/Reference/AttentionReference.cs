namespace ArcherIlgpu.Kernels.Tests.Reference;

/// <summary>
/// Float64 causal grouped-query attention written the plain way: for every query head, find its key/value
/// head (h / (H / Hkv)), build the full score matrix, an explicit softmax per row, then the weighted sum
/// of values. Independent of both backends' online softmax and of their loop order (they loop over
/// key/value heads in the backward; this loops over query heads and scatters).
/// </summary>
public static class AttentionReference
{
    /// <summary>Where things sit in a qkv row [q (H·D) | k (Hkv·D) | v (Hkv·D)] of a [B, T, W] tensor.</summary>
    sealed record Layout(int T, int H, int Hkv, int D)
    {
        public int W => (H + 2 * Hkv) * D;
        public int KvHead(int h) => h / (H / Hkv);
        public int Q(int b, int t, int h, int d) => (b * T + t) * W + h * D + d;
        public int K(int b, int t, int kvh, int d) => (b * T + t) * W + H * D + kvh * D + d;
        public int V(int b, int t, int kvh, int d) => (b * T + t) * W + (H + Hkv) * D + kvh * D + d;
        public int Out(int b, int t, int h, int d) => (b * T + t) * H * D + h * D + d;
    }

    /// <summary>qkv [B, T, (H + 2Hkv)·D] -> output [B, T, H·D], logSumExp [B, H, T].</summary>
    public static (double[] Output, double[] LogSumExp) Forward(double[] qkv, int B, int T, int H, int Hkv, int D)
    {
        var at = new Layout(T, H, Hkv, D);
        var output = new double[B * T * H * D];
        var lse = new double[B * H * T];
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++)
            {
                int kvh = at.KvHead(h);
                var (p, rowLse) = Probabilities(qkv, at, b, h);
                for (int t = 0; t < T; t++)
                {
                    lse[(b * H + h) * T + t] = rowLse[t];
                    for (int d = 0; d < D; d++)
                    {
                        double o = 0;
                        for (int s = 0; s <= t; s++) o += p[t, s] * qkv[at.V(b, s, kvh, d)];
                        output[at.Out(b, t, h, d)] = o;
                    }
                }
            }
        return (output, lse);
    }

    /// <summary>Gradient of sum(dOutput ⊙ output) with respect to qkv [B, T, (H + 2Hkv)·D].</summary>
    public static double[] Backward(double[] dOutput, double[] qkv, int B, int T, int H, int Hkv, int D)
    {
        var at = new Layout(T, H, Hkv, D);
        double scale = 1.0 / Math.Sqrt(D);
        var dQkv = new double[qkv.Length];
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++)
            {
                int kvh = at.KvHead(h);
                var (p, _) = Probabilities(qkv, at, b, h);
                for (int t = 0; t < T; t++)
                {
                    // dP[t, s] = dO_t · v_s; softmax backward: dS = P (dP - sum_s' P dP).
                    var dP = new double[t + 1];
                    double rowDot = 0;
                    for (int s = 0; s <= t; s++)
                    {
                        for (int d = 0; d < D; d++) dP[s] += dOutput[at.Out(b, t, h, d)] * qkv[at.V(b, s, kvh, d)];
                        rowDot += p[t, s] * dP[s];
                    }
                    for (int s = 0; s <= t; s++)
                    {
                        double dScore = p[t, s] * (dP[s] - rowDot) * scale;
                        for (int d = 0; d < D; d++)
                        {
                            dQkv[at.Q(b, t, h, d)] += dScore * qkv[at.K(b, s, kvh, d)];
                            dQkv[at.K(b, s, kvh, d)] += dScore * qkv[at.Q(b, t, h, d)];
                            dQkv[at.V(b, s, kvh, d)] += p[t, s] * dOutput[at.Out(b, t, h, d)];
                        }
                    }
                }
            }
        return dQkv;
    }

    /// <summary>
    /// qkv [B, T, (H + 2Hkv)·D] with every key/value head repeated for each query head of its group, as
    /// [B, T, 3·H·D] (Hugging Face's repeat_kv): multi-head attention on it is grouped-query attention.
    /// </summary>
    public static double[] RepeatKv(double[] qkv, int B, int T, int H, int Hkv, int D)
    {
        var at = new Layout(T, H, Hkv, D);
        var mha = new Layout(T, H, H, D);
        var x = new double[B * T * 3 * H * D];
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++)
                for (int h = 0; h < H; h++)
                    for (int d = 0; d < D; d++)
                    {
                        x[mha.Q(b, t, h, d)] = qkv[at.Q(b, t, h, d)];
                        x[mha.K(b, t, h, d)] = qkv[at.K(b, t, at.KvHead(h), d)];
                        x[mha.V(b, t, h, d)] = qkv[at.V(b, t, at.KvHead(h), d)];
                    }
        return x;
    }

    /// <summary>Full softmax matrix P[t, s] (zero above the diagonal) of query head h in sequence b, and each row's log-sum-exp.</summary>
    static (double[,] P, double[] Lse) Probabilities(double[] qkv, Layout at, int b, int h)
    {
        int T = at.T, kvh = at.KvHead(h);
        double scale = 1.0 / Math.Sqrt(at.D);
        var p = new double[T, T];
        var lse = new double[T];
        for (int t = 0; t < T; t++)
        {
            var scores = new double[t + 1];
            for (int s = 0; s <= t; s++)
            {
                double dot = 0;
                for (int d = 0; d < at.D; d++) dot += qkv[at.Q(b, t, h, d)] * qkv[at.K(b, s, kvh, d)];
                scores[s] = dot * scale;
            }
            double max = scores.Max();
            double sum = 0;
            for (int s = 0; s <= t; s++) { p[t, s] = Math.Exp(scores[s] - max); sum += p[t, s]; }
            for (int s = 0; s <= t; s++) p[t, s] /= sum;
            lse[t] = max + Math.Log(sum);
        }
        return (p, lse);
    }
}
