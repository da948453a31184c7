namespace ArcherIlgpu.Kernels;

/// <summary>Argument checks shared by the public ops of <see cref="Backend"/>.</summary>
internal static class BufChecks
{
    /// <summary>A slice shorter than the op's size would be read past its end on a GPU (silently); fail loudly instead.</summary>
    public static void RequireElements<T>(Buf<T> buf, long atLeast) where T : unmanaged
    {
        if (buf.IsEmpty || buf.Length < atLeast)
            throw new ArgumentException(buf.IsEmpty ? $"an empty buffer was given where {atLeast} elements are needed"
                : $"buffer {buf} holds {buf.Length} elements, the op needs {atLeast}");
    }
}
