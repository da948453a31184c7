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

    /// <summary>A softmax temperature: 0 is greedy (scored at temperature 1), anything else must be positive.</summary>
    public static void CheckTemperature(float temperature)
    {
        if (float.IsNaN(temperature) || temperature < 0f)
            throw new ArgumentOutOfRangeException(nameof(temperature), temperature, "temperature must be >= 0 (0 is greedy)");
    }

    /// <summary>The matmul operands must have exactly their shape's length (a longer slice is a caller's bug too).</summary>
    public static void CheckMatMulShapes(Buf<float> input, Buf<float> weight, int N, int K, int OC)
    {
        if (N < 0 || K < 0 || OC < 0) throw new ArgumentException($"matmul sizes must be non-negative: N={N}, K={K}, OC={OC}");
        CheckMatMulLength(input, (long)N * K, nameof(input));
        CheckMatMulLength(weight, (long)OC * K, nameof(weight));
    }

    public static void CheckMatMulLength(Buf<float> buffer, long expected, string name)
    {
        if (buffer.Length != expected)
            throw new ArgumentException($"{name}: expected {expected} elements, buffer has {buffer.Length}");
    }
}
