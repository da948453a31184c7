using ILGPU;
using ILGPU.Runtime;

namespace ArcherIlgpu.Kernels;

/// <summary>
/// Memory owned by one backend: a pinned managed array on the <c>cpu</c> backend, an ILGPU
/// <see cref="MemoryBuffer1D{T, TStride}"/> on the ILGPU backends. Model code never touches either
/// directly; it works with <see cref="Buf{T}"/> slices and copies to or from the host only through
/// <see cref="Backend.Upload{T}"/> and <see cref="Backend.Download{T}"/>.
/// </summary>
public sealed class DeviceBuffer<T> : IDisposable where T : unmanaged
{
    internal readonly T[]? Host;                                  // cpu backend
    internal readonly MemoryBuffer1D<T, Stride1D.Dense>? Device;   // ILGPU backends

    public Backend Owner { get; }
    public long Length { get; }

    internal DeviceBuffer(Backend owner, T[] host)
    {
        Owner = owner; Host = host; Length = host.LongLength;
        owner.NoteAllocated(Bytes);
    }

    internal DeviceBuffer(Backend owner, MemoryBuffer1D<T, Stride1D.Dense> device, long length)
    {
        Owner = owner; Device = device; Length = length;   // device may be longer: ILGPU cannot allocate 0
        owner.NoteAllocated(Bytes);
    }

    long Bytes => Length * System.Runtime.CompilerServices.Unsafe.SizeOf<T>();
    int disposed;

    /// <summary>The whole buffer as a slice.</summary>
    public Buf<T> All => new(this, 0, Length);

    public void Dispose()
    {
        if (Interlocked.Exchange(ref disposed, 1) == 1) return;
        Owner.NoteReleased(Bytes);
        Device?.Dispose();
    }
}

/// <summary>
/// A contiguous slice of a <see cref="DeviceBuffer{T}"/>: the one buffer type every op takes, on
/// every backend. Cheap to copy (owner, offset, length). The shape is documented at each use, e.g.
/// <c>[B, T, C]</c>, and the data is row-major.
/// </summary>
public readonly struct Buf<T> where T : unmanaged
{
    public readonly DeviceBuffer<T> Buffer;
    public readonly long Offset;
    public readonly long Length;

    public Buf(DeviceBuffer<T> buffer, long offset, long length)
    {
        if (offset < 0 || length < 0 || offset + length > buffer.Length)
            throw new ArgumentOutOfRangeException(nameof(offset),
                $"slice [{offset}, {offset + length}) is outside a buffer of length {buffer.Length}");
        Buffer = buffer; Offset = offset; Length = length;
    }

    public bool IsEmpty => Buffer is null;

    public Buf<T> Slice(long offset, long length) => new(Buffer, Offset + offset, length);

    /// <summary>The slice as a span over host memory; <c>cpu</c> backend only.</summary>
    internal Span<T> Span
    {
        get
        {
            var host = Buffer.Host ?? throw new InvalidOperationException("Span is only available on the cpu backend");
            return host.AsSpan(checked((int)Offset), checked((int)Length));
        }
    }

    /// <summary>The slice as an ILGPU view; ILGPU backends only.</summary>
    internal ArrayView<T> View
    {
        get
        {
            var dev = Buffer.Device ?? throw new InvalidOperationException("View is only available on ILGPU backends");
            return dev.View.SubView(Offset, Length).AsContiguous();
        }
    }

    public override string ToString() => $"Buf<{typeof(T).Name}>[{Offset}..{Offset + Length})";
}
