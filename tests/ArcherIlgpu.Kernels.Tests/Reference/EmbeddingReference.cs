namespace ArcherIlgpu.Kernels.Tests.Reference;

/// <summary>Token + position embedding in float64, plain loops.</summary>
public static class EmbeddingReference
{
    public static double[] Forward(int[] tokens, int[] positions, double[] wte, double[] wpe, int N, int C)
    {
        var output = new double[N * C];
        for (int n = 0; n < N; n++)
            for (int c = 0; c < C; c++)
                output[n * C + c] = wte[tokens[n] * C + c] + wpe[positions[n] * C + c];
        return output;
    }

    /// <summary>Gradients of sum(dOutput ⊙ output) with respect to wte [V, C] and wpe [maxT, C].</summary>
    public static (double[] dWte, double[] dWpe) Backward(double[] dOutput, int[] tokens, int[] positions, int N, int C, int V, int maxT)
    {
        var dWte = new double[V * C];
        var dWpe = new double[maxT * C];
        for (int n = 0; n < N; n++)
            for (int c = 0; c < C; c++)
            {
                dWte[tokens[n] * C + c] += dOutput[n * C + c];
                dWpe[positions[n] * C + c] += dOutput[n * C + c];
            }
        return (dWte, dWpe);
    }

    /// <summary>Token embedding alone (rotary models): output[n, :] = wte[tokens[n], :].</summary>
    public static double[] TokenForward(int[] tokens, double[] wte, int N, int C)
    {
        var output = new double[N * C];
        for (int n = 0; n < N; n++)
            for (int c = 0; c < C; c++)
                output[n * C + c] = wte[tokens[n] * C + c];
        return output;
    }

    /// <summary>Gradient of sum(dOutput ⊙ output) with respect to wte [V, C].</summary>
    public static double[] TokenBackward(double[] dOutput, int[] tokens, int N, int C, int V)
    {
        var dWte = new double[V * C];
        for (int n = 0; n < N; n++)
            for (int c = 0; c < C; c++)
                dWte[tokens[n] * C + c] += dOutput[n * C + c];
        return dWte;
    }
}
