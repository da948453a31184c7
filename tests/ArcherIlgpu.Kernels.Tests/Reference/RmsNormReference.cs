namespace ArcherIlgpu.Kernels.Tests.Reference;

/// <summary>
/// RMSNorm over the last axis in float64 (Hugging Face's LlamaRMSNorm): y = x / sqrt(mean(x²) + eps) · w;
/// and Qwen3's QK-norm: the same over each D-wide q and k head of the fused [q (H·D) | k (Hkv·D) | v (Hkv·D)] row.
/// </summary>
public static class RmsNormReference
{
    public static (double[] output, double[] rstd) Forward(double[] x, double[] w, int N, int C, double eps)
    {
        var y = new double[N * C]; var rstd = new double[N];
        for (int n = 0; n < N; n++)
        {
            double squares = 0;
            for (int c = 0; c < C; c++) squares += x[n * C + c] * x[n * C + c];
            double r = 1.0 / Math.Sqrt(squares / C + eps);
            for (int c = 0; c < C; c++) y[n * C + c] = x[n * C + c] * r * w[c];
            rstd[n] = r;
        }
        return (y, rstd);
    }

    /// <summary>
    /// Gradients of sum(dy ⊙ y). With r = (mean(x²) + eps)^(-1/2), ∂r/∂x_j = −r³ x_j / C, so
    /// dx_j = r dy_j w_j − x_j r³ (1/C) Σ_i dy_i w_i x_i; dw = Σ_n dy x r.
    /// </summary>
    public static (double[] dx, double[] dw) Backward(double[] dy, double[] x, double[] w, int N, int C, double eps)
    {
        var (_, rstd) = Forward(x, w, N, C, eps);
        var dx = new double[N * C]; var dw = new double[C];
        for (int n = 0; n < N; n++)
        {
            double r = rstd[n], dot = 0;
            for (int c = 0; c < C; c++) dot += dy[n * C + c] * w[c] * x[n * C + c];
            for (int c = 0; c < C; c++)
            {
                dx[n * C + c] = r * dy[n * C + c] * w[c] - x[n * C + c] * r * r * r * dot / C;
                dw[c] += dy[n * C + c] * x[n * C + c] * r;
            }
        }
        return (dx, dw);
    }

    /// <summary>Row width of the fused projection: H query heads, Hkv key heads, Hkv value heads, D each.</summary>
    public static int Width(int H, int Hkv, int D) => (H + 2 * Hkv) * D;

    /// <summary>QK-norm: rstd [N, H + Hkv]; value heads copied.</summary>
    public static (double[] output, double[] rstd) QkForward(double[] qkv, double[] qw, double[] kw, int N, int H, int Hkv, int D, double eps)
    {
        int W = Width(H, Hkv, D);
        var y = (double[])qkv.Clone(); var rstd = new double[N * (H + Hkv)];
        for (int n = 0; n < N; n++)
            for (int h = 0; h < H + Hkv; h++)
            {
                var (head, r) = Forward(Head(qkv, n, h, W, D), h < H ? qw : kw, 1, D, eps);
                Array.Copy(head, 0, y, n * W + h * D, D);
                rstd[n * (H + Hkv) + h] = r[0];
            }
        return (y, rstd);
    }

    /// <summary>Gradients of sum(dy ⊙ y) for <see cref="QkForward"/>: per head as RMSNorm; value heads pass dy through.</summary>
    public static (double[] dQkv, double[] dqw, double[] dkw) QkBackward(double[] dy, double[] qkv, double[] qw, double[] kw,
        int N, int H, int Hkv, int D, double eps)
    {
        int W = Width(H, Hkv, D);
        var dx = (double[])dy.Clone(); var dqw = new double[D]; var dkw = new double[D];
        for (int n = 0; n < N; n++)
            for (int h = 0; h < H + Hkv; h++)
            {
                var (dHead, dwHead) = Backward(Head(dy, n, h, W, D), Head(qkv, n, h, W, D), h < H ? qw : kw, 1, D, eps);
                Array.Copy(dHead, 0, dx, n * W + h * D, D);
                var target = h < H ? dqw : dkw;
                for (int d = 0; d < D; d++) target[d] += dwHead[d];
            }
        return (dx, dqw, dkw);
    }

    static double[] Head(double[] rows, int n, int h, int W, int D) => rows.AsSpan(n * W + h * D, D).ToArray();
}
