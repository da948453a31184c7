namespace ArcherIlgpu.Kernels.Tests.Reference;

/// <summary>SwiGLU over the fused [gate (I) | up (I)] row in float64: y = silu(g) · u, silu(g) = g / (1 + e^(−g)).</summary>
public static class SwiGluReference
{
    public static double Silu(double g) => g / (1.0 + Math.Exp(-g));

    /// <summary>d/dg of <see cref="Silu"/>: with s = 1 / (1 + e^(−g)), (g s)' = s + g s (1 − s).</summary>
    public static double SiluDerivative(double g)
    {
        double s = 1.0 / (1.0 + Math.Exp(-g));
        return s + g * s * (1.0 - s);
    }

    public static double[] Forward(double[] gateUp, int N, int I)
    {
        var y = new double[N * I];
        for (int n = 0; n < N; n++)
            for (int i = 0; i < I; i++)
                y[n * I + i] = Silu(gateUp[n * 2 * I + i]) * gateUp[n * 2 * I + I + i];
        return y;
    }

    /// <summary>Gradient of sum(dy ⊙ y) with respect to gateUp [N, 2I]: dg = dy u silu'(g), du = dy silu(g).</summary>
    public static double[] Backward(double[] dy, double[] gateUp, int N, int I)
    {
        var d = new double[N * 2 * I];
        for (int n = 0; n < N; n++)
            for (int i = 0; i < I; i++)
            {
                double g = gateUp[n * 2 * I + i], u = gateUp[n * 2 * I + I + i], dyi = dy[n * I + i];
                d[n * 2 * I + i] = dyi * u * SiluDerivative(g);
                d[n * 2 * I + I + i] = dyi * Silu(g);
            }
        return d;
    }
}
