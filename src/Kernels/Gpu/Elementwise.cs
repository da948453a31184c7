using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace ArcherIlgpu.Kernels;

public sealed partial class IlgpuBackend
{
    Action<KernelConfig, ArrayView<float>, int, ArrayView<float>>? geluForwardKernel;
    Action<KernelConfig, ArrayView<float>, ArrayView<float>, int, ArrayView<float>>? geluBackwardKernel;
    Action<KernelConfig, ArrayView<float>, ArrayView<float>, int, ArrayView<float>>? residualForwardKernel;
    Action<KernelConfig, ArrayView<float>, int, ArrayView<float>, ArrayView<float>>? residualBackwardKernel;

    protected override void GeluForwardCore(Buf<float> input, int n, Buf<float> output)
    {
        if (n == 0) return;
        geluForwardKernel ??= Accelerator.LoadStreamKernel<ArrayView<float>, int, ArrayView<float>>(GeluForwardKernel);
        geluForwardKernel(Linear(n), input.View, n, output.View);
    }

    protected override void GeluBackwardCore(Buf<float> dOutput, Buf<float> input, int n, Buf<float> dInput)
    {
        if (n == 0) return;
        geluBackwardKernel ??= Accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, int, ArrayView<float>>(GeluBackwardKernel);
        geluBackwardKernel(Linear(n), dOutput.View, input.View, n, dInput.View);
    }

    protected override void ResidualForwardCore(Buf<float> a, Buf<float> b, int n, Buf<float> output)
    {
        if (n == 0) return;
        residualForwardKernel ??= Accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, int, ArrayView<float>>(ResidualForwardKernel);
        residualForwardKernel(Linear(n), a.View, b.View, n, output.View);
    }

    protected override void ResidualBackwardCore(Buf<float> dOutput, int n, Buf<float> dA, Buf<float> dB)
    {
        if (n == 0) return;
        residualBackwardKernel ??= Accelerator.LoadStreamKernel<ArrayView<float>, int, ArrayView<float>, ArrayView<float>>(ResidualBackwardKernel);
        residualBackwardKernel(Linear(n), dOutput.View, n, dA.View, dB.View);
    }

    // ------------------------------------------------------------------ kernels (one thread per element)

    /// <summary>
    /// tanh(k (x + a x³)) as 1 - 2 / (exp(2u) + 1): under fast math exp is ex2.approx (a few ulp) where
    /// tanh would be tanh.approx (about 2^-11 relative), and it saturates to ±1 cleanly at large |u|.
    /// </summary>
    static float GeluTanh(float x)
    {
        float u = CpuBackend.GeluScale * (x + CpuBackend.GeluCubic * x * x * x);
        return 1f - 2f / (XMath.Exp(2f * u) + 1f);
    }

    static void GeluForwardKernel(ArrayView<float> input, int n, ArrayView<float> output)
    {
        int i = Grid.GlobalIndex.X;
        if (i >= n) return;
        float x = input[i];
        output[i] = 0.5f * x * (1f + GeluTanh(x));
    }

    static void GeluBackwardKernel(ArrayView<float> dOutput, ArrayView<float> input, int n, ArrayView<float> dInput)
    {
        int i = Grid.GlobalIndex.X;
        if (i >= n) return;
        float x = input[i], t = GeluTanh(x);
        float grad = 0.5f * (1f + t) + 0.5f * x * (1f - t * t) * CpuBackend.GeluScale * (1f + 3f * CpuBackend.GeluCubic * x * x);
        dInput[i] = dOutput[i] * grad;
    }

    static void ResidualForwardKernel(ArrayView<float> a, ArrayView<float> b, int n, ArrayView<float> output)
    {
        int i = Grid.GlobalIndex.X;
        if (i < n) output[i] = a[i] + b[i];
    }

    static void ResidualBackwardKernel(ArrayView<float> dOutput, int n, ArrayView<float> dA, ArrayView<float> dB)
    {
        int i = Grid.GlobalIndex.X;
        if (i >= n) return;
        float g = dOutput[i];
        dA[i] += g;
        dB[i] += g;
    }
}
