using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace ArcherIlgpu.Kernels;

public sealed partial class IlgpuBackend
{
    // Groups of the first SumOfSquares pass: enough to fill a large GPU several times over, few enough
    // that one group adds their partials in the second pass. The count depends only on n, so the
    // summation order (and the result) is fixed for a given size on a given device.
    const int SquaresGroups = 1024;
    const int SquaresGroupSize = 256;   // shared-memory tree width; launches use min(this, MaxGroupSize)

    Action<KernelConfig, ArrayView<float>, int, ArrayView<double>>? squaresPartialKernel;
    Action<KernelConfig, ArrayView<double>, int, ArrayView<float>>? squaresFinalKernel;
    Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int,
        float, float, float, float, float, float, float, float>? adamWKernel;
    DeviceBuffer<double>? squaresPartials;

    /// <summary>
    /// Two passes, no atomics: groups sum grid-strided elements in double and write one partial each,
    /// then a single group adds the partials. Float atomics would be faster to write but their order,
    /// and so the norm's last bits, would change from run to run.
    /// </summary>
    protected override void SumOfSquaresCore(Buf<float> grads, Buf<float> normSquared)
    {
        int n = (int)grads.Length;
        squaresPartialKernel ??= Accelerator.LoadStreamKernel<ArrayView<float>, int, ArrayView<double>>(SquaresPartialKernel);
        squaresFinalKernel ??= Accelerator.LoadStreamKernel<ArrayView<double>, int, ArrayView<float>>(SquaresFinalKernel);
        squaresPartials ??= Allocate<double>(SquaresGroups);
        int group = Math.Min(SquaresGroupSize, MaxGroupSize);
        int groups = (int)Math.Clamp((n + (long)group - 1) / group, 1, SquaresGroups);
        var partials = squaresPartials.All.View;
        squaresPartialKernel(new KernelConfig(groups, group), grads.View, n, partials);
        squaresFinalKernel(new KernelConfig(1, group), partials, groups, normSquared.View);
    }

    /// <summary>
    /// The norm is read on the device by every thread, so clipping and the non-finite skip need no
    /// host round trip; the bias corrections are host scalars (they depend only on step).
    /// </summary>
    protected override void AdamWCore(Buf<float> parameters, Buf<float> grads, Buf<float> m, Buf<float> v,
        Buf<float> normSquared, float maxNorm, float lr, float beta1, float beta2, float eps,
        float weightDecay, int step)
    {
        long n = parameters.Length;
        if (n == 0) return;
        adamWKernel ??= Accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
            ArrayView<float>, int, float, float, float, float, float, float, float, float>(AdamWKernel);
        var h = AdamWScalars.Create(0f, 0f, lr, beta1, beta2, eps, weightDecay, step);
        adamWKernel(Linear(n), parameters.View, grads.View, m.View, v.View, normSquared.View, (int)n,
            maxNorm, lr, beta1, beta2, eps, weightDecay, h.InvCorrection1, h.InvCorrection2);
    }

    // ------------------------------------------------------------------ kernels

    /// <summary>Fixed-order tree over shared memory: thread 0 ends with the group's sum.</summary>
    static double SquaresGroupSum(double value, ArrayView<double> scratch)
    {
        int tid = Group.IdxX;
        scratch[tid] = value;
        Group.Barrier();
        for (int half = Group.DimX / 2; half > 0; half /= 2)
        {
            if (tid < half) scratch[tid] += scratch[tid + half];
            Group.Barrier();
        }
        return scratch[0];
    }

    static void SquaresPartialKernel(ArrayView<float> grads, int n, ArrayView<double> partials)
    {
        var scratch = SharedMemory.Allocate<double>(SquaresGroupSize);
        int stride = Grid.DimX * Group.DimX;
        double sum = 0.0;
        for (int i = Grid.GlobalIndex.X; i < n; i += stride)
        {
            double g = grads[i];
            sum += g * g;
        }
        double total = SquaresGroupSum(sum, scratch);
        if (Group.IdxX == 0) partials[Grid.IdxX] = total;
    }

    static void SquaresFinalKernel(ArrayView<double> partials, int count, ArrayView<float> normSquared)
    {
        var scratch = SharedMemory.Allocate<double>(SquaresGroupSize);
        double sum = 0.0;
        for (int i = Group.IdxX; i < count; i += Group.DimX) sum += partials[i];
        double total = SquaresGroupSum(sum, scratch);
        if (Group.IdxX == 0) normSquared[0] = (float)total;
    }

    static void AdamWKernel(ArrayView<float> parameters, ArrayView<float> grads, ArrayView<float> m, ArrayView<float> v,
        ArrayView<float> normSquared, int n, float maxNorm, float lr, float beta1, float beta2, float eps, float weightDecay,
        float invCorrection1, float invCorrection2)
    {
        int i = Grid.GlobalIndex.X;
        if (i >= n) return;
        float norm2 = normSquared[0];
        if (!(XMath.Abs(norm2) <= float.MaxValue)) return;   // NaN or ±Inf: skip the step, change nothing
        float clip = maxNorm > 0f ? XMath.Min(1f, maxNorm / (XMath.Sqrt(norm2) + 1e-6f)) : 1f;
        float g = grads[i] * clip;
        float mi = beta1 * m[i] + (1f - beta1) * g;
        float vi = beta2 * v[i] + (1f - beta2) * g * g;
        float p = parameters[i];
        parameters[i] = p - lr * (mi * invCorrection1 / (XMath.Sqrt(vi * invCorrection2) + eps) + weightDecay * p);
        m[i] = mi;
        v[i] = vi;
    }
}
