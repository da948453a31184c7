using System.Reflection;
using ILGPU;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using ILGPU.Runtime.Cuda;

namespace ArcherIlgpu.Kernels.Tests;

/// <summary>
/// Compiles every GPU kernel of <see cref="IlgpuBackend"/> to PTX for an H100/H200 (sm_90) without a GPU
/// or driver. A kernel that ILGPU cannot lower (a BCL call it does not know, a throw, stackalloc) fails
/// here instead of at its first launch on a GPU machine. Setting ARCHER_PTX_DIR keeps the PTX, which the
/// GPU call assembles with `ptxas -v` and disassembles (benchmarks/gpu/run-all.sh).
/// </summary>
public class GpuKernelsPtxTests
{
    public static string Compile(string kernel)
    {
        // A fresh context per kernel: a failed compile poisons its context (ilgpu-notes.md).
        using var context = Context.Create(b => b.EnableAlgorithms().Math(MathMode.Fast32BitOnly).Optimize(OptimizationLevel.O2));
        using var backend = new PTXBackend(context, new CudaCapabilityContext(CudaArchitecture.SM_90),
            CudaArchitecture.SM_90, CudaInstructionSet.ISA_80, null);
        var method = typeof(IlgpuBackend).GetMethod(kernel, BindingFlags.NonPublic | BindingFlags.Static)
            ?? throw new InvalidOperationException($"no kernel {kernel}");
        var compiled = (PTXCompiledKernel)backend.Compile(EntryPointDescription.FromExplicitlyGroupedKernel(method), default);
        var dir = Environment.GetEnvironmentVariable("ARCHER_PTX_DIR");
        if (!string.IsNullOrEmpty(dir)) { Directory.CreateDirectory(dir); File.WriteAllText(Path.Combine(dir, kernel + ".ptx"), compiled.PTXAssembly); }
        return compiled.PTXAssembly;
    }

    /// <summary>Every private static method of the backend named *Kernel: the kernels it launches.</summary>
    static string[] KernelNames() => typeof(IlgpuBackend).GetMethods(BindingFlags.NonPublic | BindingFlags.Static)
        .Where(m => m.Name.EndsWith("Kernel", StringComparison.Ordinal) && !m.IsGenericMethodDefinition)
        .Select(m => m.Name).Distinct().Order(StringComparer.Ordinal).ToArray();

    public static TheoryData<string> Kernels() => new(KernelNames());

    [Fact]
    public void TheBackendHasKernelsToCompile() => Assert.True(KernelNames().Length >= 40, $"found {KernelNames().Length} kernels");

    [Theory]
    [MemberData(nameof(Kernels))]
    public void CompilesToPtxWithNoUnresolvedCall(string kernel)
    {
        var ptx = Compile(kernel);
        Assert.Contains(".entry", ptx);
        Assert.DoesNotContain(".extern", ptx);   // an unresolved BCL call (e.g. MathF.FusedMultiplyAdd) fails at load
    }
}
