using System.Reflection;
using ILGPU;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using ILGPU.Runtime.Cuda;

namespace ArcherIlgpu.Kernels.Tests;

/// <summary>
/// Compiles one <see cref="IlgpuBackend"/> kernel to PTX for an H100 without a GPU, with the CUDA
/// backend's settings (fast math, O2). The ILGPU CPU accelerator runs kernels as .NET code, so this
/// is the only check here that a kernel also compiles for CUDA. Setting ARCHER_PTX_DIR keeps each
/// kernel's PTX there (NAME.ptx), for `ptxas -v` and the SASS on a GPU machine (benchmarks/gpu/run-all.sh).
/// </summary>
public static class PtxCompile
{
    public static string Kernel(string name)
    {
        // A fresh context per kernel: a failed compile poisons its context (ilgpu-notes.md).
        using var context = Context.Create(b => b.EnableAlgorithms().Math(MathMode.Fast).Optimize(OptimizationLevel.O2));
        using var backend = new PTXBackend(context, new CudaCapabilityContext(CudaArchitecture.SM_90),
            CudaArchitecture.SM_90, CudaInstructionSet.ISA_80, null);
        var method = typeof(IlgpuBackend).GetMethod(name, BindingFlags.NonPublic | BindingFlags.Static)
            ?? throw new InvalidOperationException($"no kernel {name}");
        var ptx = ((PTXCompiledKernel)backend.Compile(EntryPointDescription.FromExplicitlyGroupedKernel(method), default)).PTXAssembly;
        if (Environment.GetEnvironmentVariable("ARCHER_PTX_DIR") is { Length: > 0 } dir)
        {
            Directory.CreateDirectory(dir);
            File.WriteAllText(Path.Combine(dir, name + ".ptx"), ptx);
        }
        return ptx;
    }

    /// <summary>Compiles and checks that nothing was left to an external function (an unresolved intrinsic).</summary>
    public static string KernelWithoutCalls(string name)
    {
        var ptx = Kernel(name);
        Assert.DoesNotContain(".extern", ptx);
        Assert.DoesNotContain("call", ptx);
        return ptx;
    }
}
