using System.Reflection;

namespace ArcherIlgpu.Kernels.Tests;

/// <summary>
/// Compiles every GPU kernel of <see cref="IlgpuBackend"/> to PTX for an H100/H200 (sm_90) without a GPU
/// or driver. A kernel that ILGPU cannot lower (a BCL call it does not know, a throw, stackalloc) fails
/// here instead of at its first launch on a GPU machine. With ARCHER_PTX_DIR set this writes the PTX
/// that benchmarks/gpu/run-all.sh assembles with `ptxas -v` and disassembles on the GPU machine.
/// </summary>
public class GpuKernelsPtxTests
{
    static string[] KernelNames() => typeof(IlgpuBackend).GetMethods(BindingFlags.NonPublic | BindingFlags.Static)
        .Where(m => m.Name.EndsWith("Kernel", StringComparison.Ordinal) && !m.IsGenericMethodDefinition)
        .Select(m => m.Name).Distinct().Order(StringComparer.Ordinal).ToArray();

    public static TheoryData<string> Kernels() => new(KernelNames());

    [Fact]
    public void TheBackendHasKernelsToCompile() => Assert.True(KernelNames().Length >= 40, $"found {KernelNames().Length} kernels");

    [Theory]
    [MemberData(nameof(Kernels))]
    public void CompilesToPtxWithNoUnresolvedCall(string kernel) => Assert.Contains(".entry", PtxCompile.KernelWithoutCalls(kernel));
}
