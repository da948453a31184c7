namespace ArcherIlgpu.Kernels.Tests.Reference;

/// <summary>
/// Float64 causal multi-head attention written the plain way: the full score matrix, an explicit
/// softmax per row, then the weighted sum of values. Independent of both backends' online softmax.
/// </summary>
public static class AttentionReference
{
    /// <summary>qkv [B, T, 3C] -> output [B, T, C], logSumExp [B, H, T].</summary>
    public static (double[] Output, double[] LogSumExp) Forward(double[] qkv, int B, int T, int C, int H)
    {
        int D = C / H;
        double scale = 1.0 / Math.Sqrt(D);
        var output = new double[B * T * C];
        var lse = new double[B * H * T];
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++)
            {
                var p = Probabilities(qkv, B, T, C, H, b, h);
                for (int t = 0; t < T; t++)
                {
                    double max = double.NegativeInfinity;
                    for (int s = 0; s <= t; s++) max = Math.Max(max, Score(qkv, T, C, D, b, h, t, s, scale));
                    double sum = 0;
                    for (int s = 0; s <= t; s++) sum += Math.Exp(Score(qkv, T, C, D, b, h, t, s, scale) - max);
                    lse[(b * H + h) * T + t] = max + Math.Log(sum);
                    for (int d = 0; d < D; d++)
                    {
                        double o = 0;
                        for (int s = 0; s <= t; s++) o += p[t, s] * qkv[Index(b, s, 2, h, d, T, C, D)];
                        output[(b * T + t) * C + h * D + d] = o;
                    }
                }
            }
        return (output, lse);
    }

    /// <summary>Gradient of sum(dOutput ⊙ output) with respect to qkv [B, T, 3C].</summary>
    public static double[] Backward(double[] dOutput, double[] qkv, int B, int T, int C, int H)
    {
        int D = C / H;
        double scale = 1.0 / Math.Sqrt(D);
        var dQkv = new double[qkv.Length];
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++)
            {
                var p = Probabilities(qkv, B, T, C, H, b, h);
                for (int t = 0; t < T; t++)
                {
                    // dP[t, s] = dO_t · v_s; softmax backward: dS = P (dP - sum_s' P dP).
                    var dP = new double[t + 1];
                    double rowDot = 0;
                    for (int s = 0; s <= t; s++)
                    {
                        for (int d = 0; d < D; d++) dP[s] += dOutput[(b * T + t) * C + h * D + d] * qkv[Index(b, s, 2, h, d, T, C, D)];
                        rowDot += p[t, s] * dP[s];
                    }
                    for (int s = 0; s <= t; s++)
                    {
                        double dScore = p[t, s] * (dP[s] - rowDot) * scale;
                        for (int d = 0; d < D; d++)
                        {
                            dQkv[Index(b, t, 0, h, d, T, C, D)] += dScore * qkv[Index(b, s, 1, h, d, T, C, D)];
                            dQkv[Index(b, s, 1, h, d, T, C, D)] += dScore * qkv[Index(b, t, 0, h, d, T, C, D)];
                            dQkv[Index(b, s, 2, h, d, T, C, D)] += p[t, s] * dOutput[(b * T + t) * C + h * D + d];
                        }
                    }
                }
            }
        return dQkv;
    }

    /// <summary>Full softmax matrix P[t, s] (zero above the diagonal) of head h in sequence b.</summary>
    static double[,] Probabilities(double[] qkv, int B, int T, int C, int H, int b, int h)
    {
        int D = C / H;
        double scale = 1.0 / Math.Sqrt(D);
        var p = new double[T, T];
        for (int t = 0; t < T; t++)
        {
            double max = double.NegativeInfinity;
            for (int s = 0; s <= t; s++) max = Math.Max(max, Score(qkv, T, C, D, b, h, t, s, scale));
            double sum = 0;
            for (int s = 0; s <= t; s++) { p[t, s] = Math.Exp(Score(qkv, T, C, D, b, h, t, s, scale) - max); sum += p[t, s]; }
            for (int s = 0; s <= t; s++) p[t, s] /= sum;
        }
        return p;
    }

    static double Score(double[] qkv, int T, int C, int D, int b, int h, int t, int s, double scale)
    {
        double dot = 0;
        for (int d = 0; d < D; d++) dot += qkv[Index(b, t, 0, h, d, T, C, D)] * qkv[Index(b, s, 1, h, d, T, C, D)];
        return dot * scale;
    }

    /// <summary>Element d of head h in part (0 q, 1 k, 2 v) of qkv[b, t].</summary>
    static int Index(int b, int t, int part, int h, int d, int T, int C, int D) => (b * T + t) * 3 * C + part * C + h * D + d;
}
