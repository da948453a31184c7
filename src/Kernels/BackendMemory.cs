using System.Runtime.CompilerServices;

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

    // Host<->device copies, for benchmarks and tests that hold a loop to a number of round trips: on a
    // GPU each download waits for the queue, so the calls, more than the bytes, are what costs.
    long h2dCalls, h2dBytes, d2hCalls, d2hBytes;

    /// <summary>Non-empty <see cref="Upload{T}"/> and <see cref="Download{T}"/> calls and their bytes since this backend was created.</summary>
    public TransferCounts Transfers => new(Interlocked.Read(ref h2dCalls), Interlocked.Read(ref h2dBytes),
        Interlocked.Read(ref d2hCalls), Interlocked.Read(ref d2hBytes));

    /// <summary>Called by a backend's <see cref="Upload{T}"/> for every non-empty copy to the device.</summary>
    protected void NoteUpload<T>(long elements) where T : unmanaged
    { Interlocked.Increment(ref h2dCalls); Interlocked.Add(ref h2dBytes, elements * Unsafe.SizeOf<T>()); }

    /// <summary>Called by a backend's <see cref="Download{T}"/> for every non-empty copy to the host.</summary>
    protected void NoteDownload<T>(long elements) where T : unmanaged
    { Interlocked.Increment(ref d2hCalls); Interlocked.Add(ref d2hBytes, elements * Unsafe.SizeOf<T>()); }
}

/// <summary>Host→device (h2d) and device→host (d2h) copies: calls and bytes. Subtract two readings for the copies between them.</summary>
public readonly record struct TransferCounts(long H2DCalls, long H2DBytes, long D2HCalls, long D2HBytes)
{
    public static TransferCounts operator +(TransferCounts a, TransferCounts b)
        => new(a.H2DCalls + b.H2DCalls, a.H2DBytes + b.H2DBytes, a.D2HCalls + b.D2HCalls, a.D2HBytes + b.D2HBytes);

    public static TransferCounts operator -(TransferCounts a, TransferCounts b)
        => new(a.H2DCalls - b.H2DCalls, a.H2DBytes - b.H2DBytes, a.D2HCalls - b.D2HCalls, a.D2HBytes - b.D2HBytes);

    /// <summary>The counts per unit of work (a generated token, an optimizer step), for a RESULT line.</summary>
    public string PerUnit(double units) => string.Create(System.Globalization.CultureInfo.InvariantCulture,
        $"h2d_calls={H2DCalls / units:0.######} d2h_calls={D2HCalls / units:0.######} h2d_bytes={H2DBytes / units:0.######} d2h_bytes={D2HBytes / units:0.######}");
}
