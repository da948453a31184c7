namespace ArcherIlgpu.Kernels.Tests.Reference;

/// <summary>float64 matmul with bias, straight from the definition out[n, o] = sum_k in[n, k] W[o, k] + b[o].</summary>
public static class MatMulReference
{
    /// <param name="bias">[OC] or null</param>
    public static double[] Forward(double[] input, double[] weight, double[]? bias, int N, int K, int OC)
    {
        var output = new double[N * OC];
        for (int n = 0; n < N; n++)
            for (int o = 0; o < OC; o++)
            {
                double sum = bias is null ? 0 : bias[o];
                for (int k = 0; k < K; k++) sum += input[n * K + k] * weight[o * K + k];
                output[n * OC + o] = sum;
            }
        return output;
    }

    /// <summary>Gradients of sum(dOutput ⊙ out) with respect to input, weight and bias.</summary>
    public static (double[] dInput, double[] dWeight, double[] dBias) Backward(
        double[] dOutput, double[] input, double[] weight, int N, int K, int OC)
    {
        var dInput = new double[N * K];
        var dWeight = new double[OC * K];
        var dBias = new double[OC];
        for (int n = 0; n < N; n++)
            for (int o = 0; o < OC; o++)
            {
                double g = dOutput[n * OC + o];
                dBias[o] += g;
                for (int k = 0; k < K; k++)
                {
                    dInput[n * K + k] += g * weight[o * K + k];
                    dWeight[o * K + k] += g * input[n * K + k];
                }
            }
        return (dInput, dWeight, dBias);
    }
}
