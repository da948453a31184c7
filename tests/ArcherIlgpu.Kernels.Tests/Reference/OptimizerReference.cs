namespace ArcherIlgpu.Kernels.Tests.Reference;

/// <summary>Gradient norm and AdamW (decoupled weight decay, global-norm clipping) in float64.</summary>
public static class OptimizerReference
{
    public static double SumOfSquares(float[] g)
    {
        double s = 0;
        foreach (float x in g) s += (double)x * x;
        return s;
    }

    /// <summary>One AdamW step in place on p, m, v; returns false (and changes nothing) for a non-finite norm.</summary>
    public static bool AdamW(double[] p, double[] g, double[] m, double[] v, double normSquared, double maxNorm,
        double lr, double beta1, double beta2, double eps, double weightDecay, int step)
    {
        if (!double.IsFinite(normSquared)) return false;
        double clip = maxNorm > 0 ? Math.Min(1.0, maxNorm / (Math.Sqrt(normSquared) + 1e-6)) : 1.0;
        double c1 = 1 - Math.Pow(beta1, step), c2 = 1 - Math.Pow(beta2, step);
        for (int i = 0; i < p.Length; i++)
        {
            double gi = g[i] * clip;
            m[i] = beta1 * m[i] + (1 - beta1) * gi;
            v[i] = beta2 * v[i] + (1 - beta2) * gi * gi;
            double mhat = m[i] / c1, vhat = v[i] / c2;
            p[i] -= lr * (mhat / (Math.Sqrt(vhat) + eps) + weightDecay * p[i]);
        }
        return true;
    }
}
