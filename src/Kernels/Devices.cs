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
        foreach (var (name, _) in ProbeGpus()) names.Add(name);
        names.Add("cpu");
        names.Add("ilgpu-cpu");
        return names;
    }

    /// <summary>One line per usable device, for <c>archer devices</c>.</summary>
    public static IReadOnlyList<string> Describe()
    {
        var lines = new List<string>();
        foreach (var (name, desc) in ProbeGpus()) lines.Add($"{name,-10} {desc}");
        lines.Add($"{"cpu",-10} managed SIMD backend, {Environment.ProcessorCount} threads, " +
                  $"{(System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated ? "AVX-512" : System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated ? "AVX2" : "128-bit SIMD")}");
        lines.Add($"{"ilgpu-cpu",-10} ILGPU CPU accelerator (simulates a GPU; for verifying kernels at tiny sizes)");
        return lines;
    }

    static List<(string Name, string Description)> ProbeGpus()
    {
        RegisterCudaResolver();
        var found = new List<(string, string)>();
        try
        {
            using var context = Context.Create(b => b.Cuda().OpenCL());
            foreach (var d in context.GetCudaDevices())
                if (!found.Exists(f => f.Item1 == "cuda")) found.Add(("cuda", $"{d.Name}, {d.MemorySize / (1 << 20)} MiB"));
            foreach (var d in context.GetCLDevices())
                if (!found.Exists(f => f.Item1 == "opencl")) found.Add(("opencl", $"{d.Name}, {d.MemorySize / (1 << 20)} MiB"));
        }
        catch (Exception e) when (e is DllNotFoundException or TypeInitializationException or EntryPointNotFoundException or InvalidOperationException)
        {
            // No driver: no GPU devices.
        }
        return found;
    }

    /// <summary>
    /// Creates the named backend. <paramref name="name"/> null or "auto" honours ARCHER_DEVICE, then
    /// picks cuda, opencl, cpu in that order.
    /// </summary>
    public static Backend Create(string? name = null)
    {
        name = string.IsNullOrWhiteSpace(name) ? "auto" : name.Trim().ToLowerInvariant();
        if (name == "auto")
        {
            var env = Environment.GetEnvironmentVariable(EnvironmentVariable);
            if (!string.IsNullOrWhiteSpace(env) && env.Trim().ToLowerInvariant() != "auto")
            {
                try { return Create(env); }
                catch (DeviceNotFoundException e) { throw new DeviceNotFoundException($"{EnvironmentVariable}={env}: {e.Message}"); }
            }
            var gpus = ProbeGpus();
            return gpus.Count > 0 ? Create(gpus[0].Name) : new CpuBackend();
        }
        switch (name)
        {
            case "cpu": return new CpuBackend();
            case "ilgpu-cpu": return IlgpuBackend.CreateCpu();
            case "cuda":
            case "opencl":
                RegisterCudaResolver();
                var backend = IlgpuBackend.TryCreateGpu(name);
                if (backend is not null) return backend;
                throw new DeviceNotFoundException(
                    $"device '{name}' is not available on this machine; available devices: {string.Join(", ", Available())}");
            default:
                throw new DeviceNotFoundException(
                    $"unknown device '{name}'; valid names: {string.Join(", ", AllNames)} (available here: {string.Join(", ", Available())})");
        }
    }
}
