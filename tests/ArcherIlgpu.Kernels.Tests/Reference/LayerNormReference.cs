namespace ArcherIlgpu.Kernels.Tests.Reference;

/// <summary>LayerNorm over the last axis in float64: y = (x - mean) / sqrt(var + eps) * w + b, biased variance.</summary>
public static class LayerNormReference
{
    public static (double[] output, double[] mean, double[] rstd) Forward(double[] x, double[] w, double[] b, int N, int C, double eps)
    {
        var y = new double[N * C]; var mean = new double[N]; var rstd = new double[N];
        for (int n = 0; n < N; n++)
        {
            double m = 0;
            for (int c = 0; c < C; c++) m += x[n * C + c];
            m /= C;
            double v = 0;
            for (int c = 0; c < C; c++) v += (x[n * C + c] - m) * (x[n * C + c] - m);
            v /= C;
            double r = 1.0 / Math.Sqrt(v + eps);
            for (int c = 0; c < C; c++) y[n * C + c] = (x[n * C + c] - m) * r * w[c] + b[c];
            mean[n] = m; rstd[n] = r;
        }
        return (y, mean, rstd);
    }

    /// <summary>
    /// Gradients of sum(dy ⊙ y). Derivation: y = x̂ w + b, x̂ = (x - m) r. With g = dy w,
    /// dx_i = r (g_i - (1/C) Σ g - x̂_i (1/C) Σ g x̂) (the mean and the variance each depend on every x_i);
    /// dw = Σ_n dy x̂, db = Σ_n dy.
    /// </summary>
    public static (double[] dx, double[] dw, double[] db) Backward(double[] dy, double[] x, double[] w, int N, int C, double eps)
    {
        var (_, mean, rstd) = Forward(x, w, new double[C], N, C, eps);
        var dx = new double[N * C]; var dw = new double[C]; var db = new double[C];
        for (int n = 0; n < N; n++)
        {
            double sumG = 0, sumGX = 0;
            for (int c = 0; c < C; c++)
            {
                double xhat = (x[n * C + c] - mean[n]) * rstd[n];
                double g = dy[n * C + c] * w[c];
                sumG += g; sumGX += g * xhat;
                dw[c] += dy[n * C + c] * xhat;
                db[c] += dy[n * C + c];
            }
            for (int c = 0; c < C; c++)
            {
                double xhat = (x[n * C + c] - mean[n]) * rstd[n];
                double g = dy[n * C + c] * w[c];
                dx[n * C + c] = rstd[n] * (g - sumG / C - xhat * sumGX / C);
            }
        }
        return (dx, dw, db);
    }
}
