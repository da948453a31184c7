using System.Runtime.InteropServices;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using ILGPU.Runtime.OpenCL;

namespace ArcherIlgpu.Kernels;

/// <summary>Thrown when a device is asked for that this machine does not have.</summary>
public sealed class DeviceNotFoundException(string message) : Exception(message);

/// <summary>
/// Finds devices and creates backends. Names: <c>cpu</c> (managed SIMD), <c>ilgpu-cpu</c> (ILGPU's
/// CPU accelerator running the GPU kernels, for verification), <c>cuda</c>, <c>opencl</c>, and
/// <c>auto</c> (cuda, then opencl, then cpu). The <c>ARCHER_DEVICE</c> variable overrides auto.
/// </summary>
public static class Devices
{
    public const string EnvironmentVariable = "ARCHER_DEVICE";
    public static readonly string[] AllNames = ["auto", "cpu", "ilgpu-cpu", "cuda", "opencl"];

    static int resolverRegistered;

    /// <summary>
    /// ILGPU imports the CUDA driver as "cuda", which .NET probes as libcuda.so; a driver-only machine
    /// has just libcuda.so.1. Map the name before any context is created (not under WSL, where ILGPU
    /// installs its own resolver).
    /// </summary>
    static void RegisterCudaResolver()
    {
        if (Interlocked.Exchange(ref resolverRegistered, 1) == 1) return;
        if (!OperatingSystem.IsLinux() || File.Exists("/proc/sys/fs/binfmt_misc/WSLInterop")) return;
        try
        {
            NativeLibrary.SetDllImportResolver(typeof(Context).Assembly, (name, _, _) =>
                name == "cuda" && NativeLibrary.TryLoad("libcuda.so.1", out var h) ? h
                : name == "OpenCL" && NativeLibrary.TryLoad("libOpenCL.so.1", out var cl) ? cl
                : IntPtr.Zero);
        }
        catch (InvalidOperationException) { /* a resolver was already set for ILGPU's assembly */ }
    }

    /// <summary>The device names usable on this machine, best first, e.g. ["cuda", "cpu", "ilgpu-cpu"].</summary>
    public static IReadOnlyList<string> Available()
    {
        var names = new List<string>();
        foreach (var gpu in ProbeGpus()) names.Add(gpu.Name);
        names.Add("cpu");
        names.Add("ilgpu-cpu");
        return names;
    }

    /// <summary>One line per usable device, for <c>archer devices</c>.</summary>
    public static IReadOnlyList<string> Describe()
    {
        var lines = new List<string>();
        foreach (var gpu in ProbeGpus()) lines.Add($"{gpu.Name,-10} {gpu.Description}");
        lines.Add($"{"cpu",-10} managed SIMD backend, {Environment.ProcessorCount} threads, " +
                  $"{(System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated ? "AVX-512" : System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated ? "AVX2" : "128-bit SIMD")}");
        lines.Add($"{"ilgpu-cpu",-10} ILGPU CPU accelerator (simulates a GPU; for verifying kernels at tiny sizes)");
        return lines;
    }

    static List<(string Name, string Description, long MemoryBytes)> ProbeGpus()
    {
        RegisterCudaResolver();
        var found = new List<(string Name, string Description, long MemoryBytes)>();
        try
        {
            using var context = Context.Create(b => b.Cuda().OpenCL());
            foreach (var d in context.GetCudaDevices())
                if (!found.Exists(f => f.Name == "cuda")) found.Add(("cuda", $"{d.Name}, {d.MemorySize / (1 << 20)} MiB", d.MemorySize));
            foreach (var d in context.GetCLDevices())
                if (!found.Exists(f => f.Name == "opencl")) found.Add(("opencl", $"{d.Name}, {d.MemorySize / (1 << 20)} MiB", d.MemorySize));
        }
        catch (Exception e) when (e is DllNotFoundException or TypeInitializationException or EntryPointNotFoundException or InvalidOperationException)
        {
            // No driver: no GPU devices.
        }
        return found;
    }

    /// <summary>
    /// Creates the named backend. <paramref name="name"/> null or "auto" honours ARCHER_DEVICE, then
    /// picks cuda, opencl, cpu in that order. An unknown name, or a device this machine lacks, is a
    /// <see cref="DeviceNotFoundException"/> listing the devices there are.
    /// </summary>
    /// <remarks>
    /// <paramref name="precision"/> is the matmul operand precision (null: the backend's default, i.e.
    /// float32 unless ARCHER_MATMUL says otherwise). TF32 and BF16 need tensor cores: <c>cuda</c>, or
    /// <c>ilgpu-cpu</c>, which then emulates each mma.sync exactly (slow; for verification at small sizes).
    /// The <c>cpu</c> and <c>opencl</c> backends compute in float32 only, and asking them for less is an
    /// <see cref="ArgumentException"/> rather than a silent float32 run.
    /// </remarks>
    public static Backend Create(string? name = null, MatMulPrecision? precision = null)
    {
        string device = Resolve(name);
        if (precision is { } p && p != MatMulPrecision.Float32 && device is "cpu" or "opencl")
            throw new ArgumentException($"--precision {PrecisionName(p)} needs tensor cores (device cuda, or ilgpu-cpu to emulate them); " +
                                        $"the {device} backend computes in fp32");
        switch (device)
        {
            case "cpu": return new CpuBackend();
            case "ilgpu-cpu": return WithPrecision(IlgpuBackend.CreateCpu(), precision);
            default:
                RegisterCudaResolver();
                return WithPrecision(IlgpuBackend.TryCreateGpu(device) ?? throw NotAvailable(device), precision);
        }
    }

    static IlgpuBackend WithPrecision(IlgpuBackend backend, MatMulPrecision? precision)
    {
        if (precision is not { } p) return backend;
        backend.MatMulPrecision = p;
        backend.EmulateTensorCores = p != MatMulPrecision.Float32 && backend.Accelerator.AcceleratorType == AcceleratorType.CPU;
        return backend;
    }

    /// <summary>
    /// Which of <paramref name="count"/> GPUs this process takes: under mpirun or srun, each rank on a
    /// machine takes its local rank's GPU (modulo the count, so 8 ranks on 4 GPUs share them two by two);
    /// a single process takes the first. The local rank comes from OpenMPI (OMPI_COMM_WORLD_LOCAL_RANK),
    /// MPICH (MPI_LOCALRANKID) or Slurm (SLURM_LOCALID), whichever is set.
    /// </summary>
    public static int LocalGpuIndex(int count, Func<string, string?> environment)
    {
        foreach (var variable in new[] { "OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID" })
            if (int.TryParse(environment(variable), out int rank) && rank >= 0) return rank % count;
        return 0;
    }

    /// <summary>The names <see cref="ParsePrecision"/> accepts, as the CLI shows them.</summary>
    public static readonly string[] PrecisionNames = ["fp32", "tf32", "bf16"];

    public static string PrecisionName(MatMulPrecision p) => PrecisionNames[(int)p];

    /// <summary>fp32, tf32 or bf16 (null or empty: null, the backend's default).</summary>
    public static MatMulPrecision? ParsePrecision(string? text) => string.IsNullOrWhiteSpace(text) ? null
        : Array.IndexOf(PrecisionNames, text.Trim().ToLowerInvariant()) is var i and >= 0 ? (MatMulPrecision)i
        : throw new ArgumentException($"--precision must be one of {string.Join(", ", PrecisionNames)}, not '{text}'");

    /// <summary>
    /// The device <see cref="Create"/> would pick for <paramref name="name"/>, without creating it: its name,
    /// whether its buffers live in host memory, and the bytes they can use (for checks before a job starts).
    /// </summary>
    public static (string Name, bool HostMemory, long CapacityBytes) Memory(string? name = null)
    {
        string device = Resolve(name);
        if (device is "cpu" or "ilgpu-cpu") return (device, true, GC.GetGCMemoryInfo().TotalAvailableMemoryBytes);
        var gpu = ProbeGpus().Find(g => g.Name == device);
        return gpu.Name is null ? throw NotAvailable(device) : (device, false, gpu.MemoryBytes);
    }

    /// <summary>The concrete device name (cpu, ilgpu-cpu, cuda, opencl) that <paramref name="name"/> stands for here.</summary>
    static string Resolve(string? name)
    {
        name = string.IsNullOrWhiteSpace(name) ? "auto" : name.Trim().ToLowerInvariant();
        if (name == "auto")
        {
            var env = Environment.GetEnvironmentVariable(EnvironmentVariable);
            if (!string.IsNullOrWhiteSpace(env) && env.Trim().ToLowerInvariant() != "auto")
            {
                try { return Resolve(env); }
                catch (DeviceNotFoundException e) { throw new DeviceNotFoundException($"{EnvironmentVariable}={env}: {e.Message}"); }
            }
            var gpus = ProbeGpus();
            return gpus.Count > 0 ? gpus[0].Name : "cpu";
        }
        if (!AllNames.Contains(name))
            throw new DeviceNotFoundException(
                $"unknown device '{name}'; valid names: {string.Join(", ", AllNames)} (available here: {string.Join(", ", Available())})");
        return name;
    }

    static DeviceNotFoundException NotAvailable(string device) =>
        new($"device '{device}' is not available on this machine; available devices: {string.Join(", ", Available())}");
}
