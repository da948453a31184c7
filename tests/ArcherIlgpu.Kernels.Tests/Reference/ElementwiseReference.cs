namespace ArcherIlgpu.Kernels.Tests.Reference;

/// <summary>GELU (GPT-2 tanh form) and the residual add in float64.</summary>
public static class ElementwiseReference
{
    static readonly double K = Math.Sqrt(2.0 / Math.PI);
    const double A = 0.044715;

    public static double Gelu(double x) => 0.5 * x * (1.0 + Math.Tanh(K * (x + A * x * x * x)));

    /// <summary>d/dx of <see cref="Gelu"/>: 0.5 (1 + tanh u) + 0.5 x sech²(u) u', u = K (x + A x³), u' = K (1 + 3 A x²).</summary>
    public static double GeluDerivative(double x)
    {
        double u = K * (x + A * x * x * x);
        double t = Math.Tanh(u);
        return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * K * (1.0 + 3.0 * A * x * x);
    }

    public static double[] GeluForward(double[] x) => Array.ConvertAll(x, Gelu);

    public static double[] GeluBackward(double[] dy, double[] x)
    {
        var dx = new double[x.Length];
        for (int i = 0; i < x.Length; i++) dx[i] = dy[i] * GeluDerivative(x[i]);
        return dx;
    }

    public static double[] ResidualForward(double[] a, double[] b)
    {
        var y = new double[a.Length];
        for (int i = 0; i < a.Length; i++) y[i] = a[i] + b[i];
        return y;
    }
}
