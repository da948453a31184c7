using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using ILGPU.Runtime.OpenCL;

namespace ArcherIlgpu.Kernels;

/// <summary>
/// The ILGPU backend: the same kernels on CUDA, OpenCL 2.0+ or ILGPU's CPU accelerator
/// (<c>ilgpu-cpu</c>, which simulates a GPU with OS threads: exact, but only usable at tiny sizes).
/// Each op family lives in its own partial file (Gpu/*.cs) with its kernels, forward beside backward,
/// and loads them once, the first time they are used.
/// All work goes on <see cref="Stream"/> in order; only <see cref="Download{T}"/> and
/// <see cref="Synchronize"/> wait for it.
/// </summary>
public sealed partial class IlgpuBackend : Backend
{
    readonly Context context;
    internal readonly Accelerator Accelerator;
    internal AcceleratorStream Stream => Accelerator.DefaultStream;
    readonly string name;

    IlgpuBackend(Context context, Accelerator accelerator, string name)
    {
        this.context = context; Accelerator = accelerator; this.name = name;
    }

    public override string Name => name;
    public override MatMulPrecision Precision => EffectiveMatMulPrecision;
    public override bool BuffersInHostMemory => Accelerator.AcceleratorType == AcceleratorType.CPU;

    /// <summary>Whether this backend runs on a CUDA GPU (where the tensor-core precisions are native).</summary>
    public bool IsCuda => Accelerator.AcceleratorType == AcceleratorType.Cuda;
    public override long MemoryCapacity => BuffersInHostMemory ? base.MemoryCapacity : Accelerator.MemorySize;
    public override string Description =>
        $"{Accelerator.Name} ({Accelerator.AcceleratorType}, {Accelerator.MemorySize / (1 << 20)} MiB, " +
        $"warp {Accelerator.WarpSize}, max group {Accelerator.MaxNumThreadsPerGroup})";

    /// <summary>
    /// Warp size and the largest group the kernels may use: CUDA-like 32 x 8 on the CPU accelerator,
    /// so shuffles and shared-memory tiles run exactly as they would on a GPU.
    /// </summary>
    internal int MaxGroupSize => Math.Min(256, Accelerator.MaxNumThreadsPerGroup);
    internal int WarpSize => Accelerator.WarpSize;

    internal static IlgpuBackend CreateCpu()
    {
        // 32 threads per warp (as on NVIDIA), 8 warps per multiprocessor (groups of up to 256), one
        // multiprocessor: every simulated thread is an OS thread, so more would only add switching.
        var context = Context.Create(b => b.CPU(new CPUDevice(32, 8, 1)).EnableAlgorithms().Optimize(OptimizationLevel.O1));
        var accelerator = context.CreateCPUAccelerator(0, CPUAcceleratorMode.Parallel);
        return new IlgpuBackend(context, accelerator, "ilgpu-cpu");
    }

    internal static IlgpuBackend? TryCreateGpu(string name)
    {
        Context? context = null;
        try
        {
            context = Context.Create(b =>
            {
                if (name == "cuda") b.Cuda(); else b.OpenCL();
                // Fast (approximate) float32 intrinsics, but doubles stay doubles: the few kernels that
                // accumulate in double (SumOfSquares, the sampler's nucleus mass) rely on it, and
                // Fast32BitOnly would silently demote them (and double buffers) to float.
                b.EnableAlgorithms().Math(MathMode.Fast).Optimize(OptimizationLevel.O2);
            });
            var devices = new List<Device>();
            if (name == "cuda") foreach (var d in context.GetCudaDevices()) devices.Add(d);
            else foreach (var d in context.GetCLDevices()) devices.Add(d);
            if (devices.Count == 0) { context.Dispose(); return null; }
            var device = devices[Devices.LocalGpuIndex(devices.Count, Environment.GetEnvironmentVariable)];
            return new IlgpuBackend(context, device.CreateAccelerator(context), name);
        }
        catch (Exception e) when (e is DllNotFoundException or TypeInitializationException or EntryPointNotFoundException)
        {
            context?.Dispose();
            return null;
        }
    }

    // ---------------------------------------------------------------- memory

    public override DeviceBuffer<T> Allocate<T>(long length)
    {
        var buffer = Accelerator.Allocate1D<T>(Math.Max(length, 1));
        buffer.MemSetToZero(Stream);
        return new DeviceBuffer<T>(this, buffer, length);
    }

    public override void Upload<T>(Buf<T> dst, ReadOnlySpan<T> src)
    {
        CheckLength(dst.Length, src.Length);
        if (src.Length == 0) return;
        dst.View.CopyFromCPU(Stream, src);
        NoteUpload<T>(src.Length);
    }

    public override void Download<T>(Buf<T> src, Span<T> dst)
    {
        CheckLength(src.Length, dst.Length);
        if (dst.Length == 0) return;
        src.View.CopyToCPU(Stream, dst);
        Stream.Synchronize();
        NoteDownload<T>(dst.Length);
    }

    public override void Zero<T>(Buf<T> dst)
    {
        if (dst.Length > 0) dst.View.MemSetToZero(Stream);
    }

    public override void Copy<T>(Buf<T> src, Buf<T> dst)
    {
        CheckLength(dst.Length, src.Length);
        if (src.Length > 0) src.View.CopyTo(Stream, dst.View);
    }

    public override void Synchronize() => Stream.Synchronize();

    static void CheckLength(long expected, long actual)
    {
        if (expected != actual) throw new ArgumentException($"length mismatch: buffer has {expected} elements, host span {actual}");
    }

    /// <summary>Launch shape for "one group per row" kernels: a power of two up to the device limit.</summary>
    internal int RowGroupSize(int rowLength)
    {
        int g = WarpSize;
        while (g < MaxGroupSize && g < rowLength) g *= 2;
        return Math.Min(g, MaxGroupSize);
    }

    /// <summary>1D launch covering n threads with groups of the warp size times 4 (GPU-friendly).</summary>
    internal KernelConfig Linear(long n)
    {
        int group = Math.Min(MaxGroupSize, WarpSize * 4);
        long groups = Math.Max(1, (n + group - 1) / group);
        return new KernelConfig((int)groups, group);
    }

    public override void Dispose()
    {
        splitWorkspace?.Dispose();
        Accelerator.Dispose();
        context.Dispose();
    }
}
