using System.Text.RegularExpressions;
using ArcherIlgpu.Kernels.Tests.Reference;

namespace ArcherIlgpu.Kernels.Tests;

/// <summary>
/// The flash attention kernels (<see cref="AttentionKernel.Flash"/>, FlashAttention.cs), switched on
/// for each test on the ILGPU backends: forward and backward against the float64 reference (whose
/// backward is checked by finite differences in <see cref="AttentionTests"/>), at sizes that are not
/// multiples of the 64-row blocks or the 4-channel register blocks; and the kernels compiled to sm_90
/// PTX. On ilgpu-cpu every group is 256 OS threads, so shapes stay tiny.
/// </summary>
public class AttentionFlashTests
{
    // The float32 bounds of AttentionTests hold here too: online softmax, sums over at most 130 keys,
    // gradients of a shared key summed over a group of at most 3 heads.
    const double OutAtol = AttentionTests.OutAtol, OutRtol = AttentionTests.OutRtol;
    const double GradAtol = AttentionTests.GradAtol, GradRtol = AttentionTests.GradRtol;

    /// <summary>
    /// (B, T, H, Hkv, D): T = 1; one partial block; two and three query/key blocks with ragged last
    /// ones (65, 130); grouped-query with groups of 2 and 3; D = 13 and 70 (not multiples of 4), 64
    /// (the narrow kernels' limit), 65 and 128 (the wide kernels).
    /// </summary>
    static readonly (int B, int T, int H, int Hkv, int D)[] Shapes =
    [
        (2, 1, 2, 2, 8),
        (2, 9, 4, 2, 13),
        (1, 65, 1, 1, 64),
        (1, 70, 3, 1, 65),
        (1, 33, 2, 1, 128),
        (1, 130, 1, 1, 16),
    ];

    public static IEnumerable<object[]> Cases =>
        from device in new[] { "ilgpu-cpu", "cuda" }
        from s in Shapes
        select new object[] { device, s.B, s.T, s.H, s.Hkv, s.D };

    static int Width(int H, int Hkv, int D) => AttentionTests.Width(H, Hkv, D);

    static float[] Qkv(int seed, int B, int T, int H, int Hkv, int D) => AttentionTests.Qkv(seed, B, T, H, Hkv, D);

    /// <summary>The device's ILGPU backend with the flash kernels on while <paramref name="body"/> runs.</summary>
    static void WithFlash(string device, Action<IlgpuBackend> body)
    {
        var backend = (IlgpuBackend)TestBackends.Get(device);
        var saved = backend.AttentionKernel;
        backend.AttentionKernel = AttentionKernel.Flash;
        try { body(backend); }
        finally { backend.AttentionKernel = saved; }
    }

    [SkippableTheory, MemberData(nameof(Cases))]
    public void ForwardMatchesReference(string device, int B, int T, int H, int Hkv, int D) => WithFlash(device, backend =>
    {
        var qkv = Qkv(61 + T, B, T, H, Hkv, D);
        var (expOut, expLse) = AttentionReference.Forward(TestData.ToDouble(qkv), B, T, H, Hkv, D);
        // Garbage in the outputs: every element must be written.
        var output = backend.Upload<float>(TestData.Floats(62, B * T * H * D, 100));
        var lse = backend.Upload<float>(TestData.Floats(63, B * H * T, 100));
        backend.AttentionForward(backend.Upload<float>(qkv), B, T, H, Hkv, D, output, lse);

        Check.Close(expOut, backend.ToArray(output), OutAtol, OutRtol, "flash attention output");
        Check.Close(expLse, backend.ToArray(lse), OutAtol, OutRtol, "flash logSumExp");
    });

    [SkippableTheory, MemberData(nameof(Cases))]
    public void BackwardMatchesReference(string device, int B, int T, int H, int Hkv, int D) => WithFlash(device, backend =>
    {
        var qkv = Qkv(71 + T, B, T, H, Hkv, D);
        var dOut = TestData.Floats(72 + T, B * T * H * D);
        var expected = AttentionReference.Backward(TestData.ToDouble(dOut), TestData.ToDouble(qkv), B, T, H, Hkv, D);

        var qkvBuf = backend.Upload<float>(qkv);
        var output = backend.Allocate<float>(B * T * H * D).All;
        var lse = backend.Allocate<float>(B * H * T).All;
        backend.AttentionForward(qkvBuf, B, T, H, Hkv, D, output, lse);
        var dQkv = backend.Upload<float>(TestData.Floats(73, B * T * Width(H, Hkv, D), 100));   // garbage: must be overwritten
        backend.AttentionBackward(backend.Upload<float>(dOut), qkvBuf, output, lse, B, T, H, Hkv, D, dQkv);

        Check.Close(expected, backend.ToArray(dQkv), GradAtol, GradRtol, "flash dQkv");
    });

    /// <summary>
    /// Grouped-query dK/dV both ways: one group per kv head summing its query heads in registers, and
    /// split over the query heads with the partials summed by a second kernel (what few kv heads on
    /// many SMs get, as Qwen2.5-0.5B on an H100).
    /// </summary>
    [SkippableTheory]
    [InlineData("ilgpu-cpu", 0)]
    [InlineData("ilgpu-cpu", int.MaxValue)]
    [InlineData("cuda", 0)]
    [InlineData("cuda", int.MaxValue)]
    public void GroupedQueryBackward_SplitOrNot_MatchesReference(string device, int splitBelow) => WithFlash(device, backend =>
    {
        const int B = 2, T = 66, H = 3, Hkv = 1, D = 20;
        var qkv = Qkv(91, B, T, H, Hkv, D);
        var dOut = TestData.Floats(92, B * T * H * D);
        var expected = AttentionReference.Backward(TestData.ToDouble(dOut), TestData.ToDouble(qkv), B, T, H, Hkv, D);
        var saved = backend.FlashSplitBelow;
        backend.FlashSplitBelow = splitBelow;
        try
        {
            var qkvBuf = backend.Upload<float>(qkv);
            var output = backend.Allocate<float>(B * T * H * D).All;
            var lse = backend.Allocate<float>(B * H * T).All;
            backend.AttentionForward(qkvBuf, B, T, H, Hkv, D, output, lse);
            var dQkv = backend.Upload<float>(TestData.Floats(93, B * T * Width(H, Hkv, D), 100));
            backend.AttentionBackward(backend.Upload<float>(dOut), qkvBuf, output, lse, B, T, H, Hkv, D, dQkv);
            Check.Close(expected, backend.ToArray(dQkv), GradAtol, GradRtol, $"flash dQkv (split below {splitBelow})");
        }
        finally { backend.FlashSplitBelow = saved; }
    });

    /// <summary>The backward's saved state is the warp kernels' (output and logSumExp): a flash backward
    /// after a warp forward gives the reference's gradients too, and twice the same bits (no atomics).</summary>
    [SkippableTheory]
    [InlineData("ilgpu-cpu")]
    [InlineData("cuda")]
    public void BackwardAfterWarpForward_IsDeterministic(string device)
    {
        const int B = 1, T = 67, H = 4, Hkv = 2, D = 24;
        var backend = (IlgpuBackend)TestBackends.Get(device);
        var qkv = Qkv(81, B, T, H, Hkv, D);
        var dOut = backend.Upload<float>(TestData.Floats(82, B * T * H * D));
        var expected = AttentionReference.Backward(TestData.ToDouble(backend.ToArray(dOut)), TestData.ToDouble(qkv), B, T, H, Hkv, D);
        var qkvBuf = backend.Upload<float>(qkv);
        var output = backend.Allocate<float>(B * T * H * D).All;
        var lse = backend.Allocate<float>(B * H * T).All;
        var saved = backend.AttentionKernel;
        backend.AttentionKernel = AttentionKernel.Warp;
        try { backend.AttentionForward(qkvBuf, B, T, H, Hkv, D, output, lse); }
        finally { backend.AttentionKernel = saved; }

        WithFlash(device, flash =>
        {
            var dQkv = flash.Allocate<float>(B * T * Width(H, Hkv, D)).All;
            flash.AttentionBackward(dOut, qkvBuf, output, lse, B, T, H, Hkv, D, dQkv);
            var first = flash.ToArray(dQkv);
            flash.AttentionBackward(dOut, qkvBuf, output, lse, B, T, H, Hkv, D, dQkv);
            Check.Close(expected, first, GradAtol, GradRtol, "flash dQkv after the warp forward");
            Assert.Equal(first, flash.ToArray(dQkv));
        });
    }

    // ------------------------------------------------------------------ switch

    [Theory]
    [InlineData(null, null)]
    [InlineData("", null)]
    [InlineData("default", null)]
    [InlineData("warp", AttentionKernel.Warp)]
    [InlineData(" Flash ", AttentionKernel.Flash)]
    public void ParseAttentionKernel_AcceptsTheDocumentedNames(string? text, AttentionKernel? expected) =>
        Assert.Equal(expected, IlgpuBackend.ParseAttentionKernel(text));

    [Fact]
    public void Flash_is_the_default_on_cuda_only()
    {
        Assert.Equal(AttentionKernel.Flash, IlgpuBackend.DefaultAttentionKernel(ILGPU.Runtime.AcceleratorType.Cuda));
        Assert.Equal(AttentionKernel.Warp, IlgpuBackend.DefaultAttentionKernel(ILGPU.Runtime.AcceleratorType.CPU));
        Assert.Equal(AttentionKernel.Warp, IlgpuBackend.DefaultAttentionKernel(ILGPU.Runtime.AcceleratorType.OpenCL));
    }

    [Fact]
    public void ParseAttentionKernel_RejectsUnknownNames()
    {
        var e = Assert.Throws<ArgumentException>(() => IlgpuBackend.ParseAttentionKernel("flash2"));
        Assert.Contains("ARCHER_ATTENTION", e.Message);
        Assert.Contains("'flash2'", e.Message);
    }

    // --------------------------------------------------------------------- PTX

    /// <summary>
    /// Each flash kernel compiles for sm_90 with nothing left to a call, no local-memory stack (the
    /// register blocks stay in registers), no atomics, 128-bit shared reads for the register blocks,
    /// FMA-able products, and the 16-lane row reductions as shuffles (forward) or none (dK/dV).
    /// </summary>
    [Theory]
    [InlineData("FlashForwardKernel", true)]
    [InlineData("FlashForwardWideKernel", true)]
    [InlineData("FlashDqKernel", true)]
    [InlineData("FlashDqWideKernel", true)]
    [InlineData("FlashDkvKernel", false)]
    [InlineData("FlashDkvWideKernel", false)]
    [InlineData("FlashGroupSumKernel", false)]
    public void FlashKernel_CompilesToPtx_WithoutLocalMemoryOrAtomics(string kernel, bool shuffles)
    {
        var ptx = PtxCompile.KernelWithoutCalls(kernel);
        var dir = Environment.GetEnvironmentVariable("ARCHER_PTX_DIR");
        if (!string.IsNullOrEmpty(dir)) { Directory.CreateDirectory(dir); File.WriteAllText(Path.Combine(dir, kernel + ".ptx"), ptx); }
        Assert.DoesNotContain(".local", ptx);
        // Static shared memory must stay within CUDA's 48 KiB per group (ILGPU does not opt in to more).
        int shared = Regex.Matches(ptx, @"\.shared \.align \d+ \.b8 \w+\[(\d+)\]").Sum(m => int.Parse(m.Groups[1].Value));
        Assert.InRange(shared, 0, 48 * 1024);
        Assert.DoesNotMatch(@"\b(atom|red)\.", ptx);
        if (kernel == "FlashGroupSumKernel") return;   // elementwise: no shared memory
        Assert.True(Regex.Matches(ptx, @"ld\.shared\.v4\.f32").Count >= 4, "expected 128-bit shared reads");
        Assert.True(Regex.Matches(ptx, @"(fma\.rn|mul(\.ftz)?)\.f32").Count >= 32, "expected the 4×4 block's products inline");
        Assert.Equal(shuffles, ptx.Contains("shfl.sync"));
    }
}
