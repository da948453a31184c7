namespace ArcherIlgpu.Kernels;

/// <summary>
/// The managed CPU backend: plain C# over pinned arrays, vectorised with Vector256/Vector512 and
/// System.Numerics.Tensors, parallel with Parallel.For. This is the real CPU fallback (ILGPU's CPU
/// accelerator is a GPU simulator and far too slow to train on). Each op family is a partial file
/// in Cpu/ with forward beside backward. Everything runs synchronously.
/// </summary>
public sealed partial class CpuBackend : Backend
{
    public override string Name => "cpu";
    public override string Description =>
        $"managed SIMD, {Environment.ProcessorCount} threads, " +
        (System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated ? "Vector512"
         : System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated ? "Vector256" : "Vector128");

    public override DeviceBuffer<T> Allocate<T>(long length)
        => new(this, GC.AllocateArray<T>(checked((int)length), pinned: true));

    public override void Upload<T>(Buf<T> dst, ReadOnlySpan<T> src)
    {
        if (dst.Length != src.Length) throw new ArgumentException($"length mismatch: buffer has {dst.Length} elements, host span {src.Length}");
        src.CopyTo(dst.Span);
        if (src.Length > 0) NoteUpload<T>(src.Length);
    }

    public override void Download<T>(Buf<T> src, Span<T> dst)
    {
        if (src.Length != dst.Length) throw new ArgumentException($"length mismatch: buffer has {src.Length} elements, host span {dst.Length}");
        src.Span.CopyTo(dst);
        if (dst.Length > 0) NoteDownload<T>(dst.Length);
    }

    public override void Zero<T>(Buf<T> dst) => dst.Span.Clear();

    public override void Copy<T>(Buf<T> src, Buf<T> dst)
    {
        if (src.Length != dst.Length) throw new ArgumentException($"length mismatch: {src.Length} vs {dst.Length}");
        src.Span.CopyTo(dst.Span);
    }

    public override void Synchronize() { }

    /// <summary>
    /// Runs body(start, end) over [0, n) in chunks of at least <paramref name="grain"/> items, at most
    /// a few chunks per core: cheap enough for 2 cores, balanced enough for 64. The loop itself
    /// allocates nothing (<see cref="CpuWorkers"/>); only the caller's closure does.
    /// </summary>
    internal static void ParallelRange(int n, int grain, Action<int, int> body)
    {
        if (n <= 0) return;
        int maxChunks = Environment.ProcessorCount * 4;
        int chunk = Math.Max(grain, (n + maxChunks - 1) / maxChunks);
        CpuWorkers.ForRanges(n, chunk, body);
    }
}
