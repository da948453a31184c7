namespace ArcherIlgpu.Kernels;

/// <summary>Host-side conveniences over <see cref="Backend"/> for tests, tools and setup code (not for hot loops).</summary>
public static class BackendExtensions
{
    /// <summary>Allocates a buffer holding a copy of <paramref name="data"/>.</summary>
    public static Buf<T> Upload<T>(this Backend backend, ReadOnlySpan<T> data) where T : unmanaged
    {
        var buffer = backend.Allocate<T>(data.Length).All;
        backend.Upload(buffer, data);
        return buffer;
    }

    /// <summary>Copies a slice to a new host array.</summary>
    public static T[] ToArray<T>(this Backend backend, Buf<T> src) where T : unmanaged
    {
        var result = new T[src.Length];
        backend.Download(src, result);
        return result;
    }
}
