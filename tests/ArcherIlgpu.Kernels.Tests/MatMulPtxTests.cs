using System.Text.RegularExpressions;

namespace ArcherIlgpu.Kernels.Tests;

/// <summary>
/// Compiles the GEMM kernels to PTX for an H100 (sm_90) without a GPU or driver, and checks the
/// instructions the design depends on: mma.sync of the right shape and types, 128-bit shared-memory
/// reads in the float32 kernel, FMA. Setting ARCHER_PTX_DIR keeps the PTX for reading.
/// </summary>
public class MatMulPtxTests
{
    // The CUDA backend's settings (PtxCompile); ARCHER_PTX_DIR keeps the PTX.
    static string CompilePtx(string kernel) => PtxCompile.Kernel(kernel);

    static int Count(string ptx, string pattern) => Regex.Matches(ptx, pattern).Count;

    [Fact]
    public void TiledKernel_ReadsSharedMemoryAsVectors_AndUsesFma()
    {
        var ptx = CompilePtx("TiledGemmKernel");
        Assert.True(Count(ptx, @"ld\.shared\.v4\.f32") >= 4, "expected 128-bit shared loads for the A and B vectors");
        // 64 multiply-adds per depth, as mul + add that ptxas contracts to FFMA (no call: MathF.FusedMultiplyAdd
        // compiles to an unresolved extern FusedMultiplyAdd function in ILGPU 1.5.3's PTX).
        Assert.True(Count(ptx, @"mul(\.ftz)?\.f32") >= 64, "expected the 8×8 block's products inline");
        Assert.DoesNotContain("call", ptx);
        Assert.DoesNotContain(".extern", ptx);
        Assert.DoesNotContain("shfl", ptx);
    }

    [Theory]
    [InlineData("Tf32GemmKernel", "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32", 32)]
    [InlineData("Bf16GemmKernel", "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32", 16)]
    [InlineData("Tf32GemmVec4Kernel", "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32", 32)]
    [InlineData("Bf16GemmVec4Kernel", "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32", 16)]
    public void TensorKernel_EmitsOnlyItsMmaSync_AndNoEmulation(string kernel, string instruction, int expected)
    {
        var ptx = CompilePtx(kernel);
        // 16 fragments per warp per step: TF32 takes two k8 steps per 16-deep slice, BF16 one k16 step.
        Assert.Equal(expected, Count(ptx, Regex.Escape(instruction)));
        Assert.Equal(expected, Count(ptx, @"mma\.sync"));   // the other precision's branch folded away
        Assert.DoesNotContain(".extern", ptx);
        Assert.DoesNotContain("bar.warp", ptx);              // the emulation lives in other kernels
        Assert.Equal(2, Count(ptx, @"\.shared \.align"));    // the two operand tiles, no emulation scratch
    }

    /// <summary>
    /// The vec4 tensor kernels stage each slice with four 128-bit global loads per thread (two per
    /// operand) and call nothing. (Their PTX does use .local: CudaAsm.EmitRef stages every mma.sync
    /// operand through a 4-byte local slot, as in the scalar-load kernels; whether ptxas turns those
    /// into registers shows only in SASS, as LDL/STL: see notes/gemm.md.)
    /// </summary>
    [Theory]
    [InlineData("Tf32GemmVec4Kernel")]
    [InlineData("Bf16GemmVec4Kernel")]
    public void TensorVec4Kernel_LoadsGlobalMemoryAsVectors_WithoutLocalMemory(string kernel)
    {
        var ptx = CompilePtx(kernel);
        Assert.True(Count(ptx, @"ld\.global\.v4\.f32") >= 4, "expected 128-bit global loads for both quads of A and B");
        Assert.DoesNotContain("call", ptx);
        Assert.DoesNotContain(".extern", ptx);
    }
}
