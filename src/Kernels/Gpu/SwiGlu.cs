using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace ArcherIlgpu.Kernels;

// SwiGLU over the fused [gate (I) | up (I)] row, one thread per output element: consecutive threads
// read consecutive gate and up floats, so both reads and the write are coalesced.
public sealed partial class IlgpuBackend
{
    Action<KernelConfig, ArrayView<float>, int, int, ArrayView<float>>? swiGluForwardKernel;
    Action<KernelConfig, ArrayView<float>, ArrayView<float>, int, int, ArrayView<float>>? swiGluBackwardKernel;

    protected override void SwiGluForwardCore(Buf<float> gateUp, int N, int I, Buf<float> output)
    {
        if (N == 0 || I == 0) return;
        swiGluForwardKernel ??= Accelerator.LoadStreamKernel<ArrayView<float>, int, int, ArrayView<float>>(SwiGluForwardKernel);
        swiGluForwardKernel(Linear((long)N * I), gateUp.View, N, I, output.View);
    }

    protected override void SwiGluBackwardCore(Buf<float> dOutput, Buf<float> gateUp, int N, int I, Buf<float> dGateUp)
    {
        if (N == 0 || I == 0) return;
        swiGluBackwardKernel ??= Accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, int, int, ArrayView<float>>(
            SwiGluBackwardKernel);
        swiGluBackwardKernel(Linear((long)N * I), dOutput.View, gateUp.View, N, I, dGateUp.View);
    }

    // ------------------------------------------------------------------ kernels

    /// <summary>
    /// sigmoid(g) = 1 / (1 + exp(−g)): exp overflows to +inf for g below about −88 and the reciprocal
    /// is then 0, the limit; under fast math (ex2.approx, rcp.approx) the same holds. Products of s with
    /// finite g and u stay finite, so g = ±100 gives no NaN or inf.
    /// </summary>
    static float SwiGluSigmoid(float g) => 1f / (1f + XMath.Exp(-g));

    /// <summary>Element i = (n, j) reads gate at n·2I + j and up at n·2I + I + j.</summary>
    static long SwiGluGateIndex(long i, int I)
    {
        long n = i / I;
        return i + n * I;
    }

    static void SwiGluForwardKernel(ArrayView<float> gateUp, int N, int I, ArrayView<float> output)
    {
        long i = Grid.GlobalIndex.X;
        if (i >= (long)N * I) return;
        long gi = SwiGluGateIndex(i, I);
        float g = gateUp[gi];
        output[i] = g * SwiGluSigmoid(g) * gateUp[gi + I];
    }

    /// <summary>dg = dy · u · s (1 + g (1 − s)), du = dy · g · s; dGateUp is overwritten.</summary>
    static void SwiGluBackwardKernel(ArrayView<float> dOutput, ArrayView<float> gateUp, int N, int I, ArrayView<float> dGateUp)
    {
        long i = Grid.GlobalIndex.X;
        if (i >= (long)N * I) return;
        long gi = SwiGluGateIndex(i, I);
        float g = gateUp[gi], u = gateUp[gi + I], s = SwiGluSigmoid(g), ds = dOutput[i] * s;
        dGateUp[gi] = ds * u * (1f + g * (1f - s));
        dGateUp[gi + I] = ds * g;
    }
}
