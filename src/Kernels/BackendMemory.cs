namespace ArcherIlgpu.Kernels;

// Bytes allocated through a backend, for benchmarks on devices whose memory the process RSS does
// not show (a GPU). Buffers report their own release, so the figure is what is live now and the
// most that was live at once.
public abstract partial class Backend
{
    long liveBytes, peakBytes, totalBytes;

    /// <summary>Bytes of buffers allocated through this backend and not yet disposed.</summary>
    public long LiveBytes => Interlocked.Read(ref liveBytes);
    /// <summary>The most bytes live at once since this backend was created.</summary>
    public long PeakBytes => Interlocked.Read(ref peakBytes);
    /// <summary>Bytes ever allocated through this backend.</summary>
    public long TotalAllocatedBytes => Interlocked.Read(ref totalBytes);

    /// <summary>Whether this backend's buffers live in host memory (cpu, ilgpu-cpu) rather than on a device.</summary>
    public virtual bool BuffersInHostMemory => true;
    /// <summary>The bytes this backend's buffers can use in all: the device's memory, or on the host what this process may use.</summary>
    public virtual long MemoryCapacity => GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;

    /// <summary>Called by a backend's <see cref="Allocate{T}"/> for every new buffer.</summary>
    protected internal void NoteAllocated(long bytes)
    {
        Interlocked.Add(ref totalBytes, bytes);
        long live = Interlocked.Add(ref liveBytes, bytes);
        long peak;
        while (live > (peak = Interlocked.Read(ref peakBytes)) && Interlocked.CompareExchange(ref peakBytes, live, peak) != peak) { }
    }

    internal void NoteReleased(long bytes) => Interlocked.Add(ref liveBytes, -bytes);
}
