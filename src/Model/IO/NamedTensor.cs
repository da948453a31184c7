namespace ArcherIlgpu.Model.IO;

/// <summary>A float32 tensor with its name and shape; <see cref="Data"/> is row-major with
/// <c>product(Shape)</c> elements (an empty shape is a scalar with one element). <see cref="Dtype"/> is the
/// safetensors dtype the values were stored in (a read converts every dtype to float32; writing always stores F32),
/// so a model loader can refuse, say, an I32 tensor where a weight belongs.</summary>
public sealed record NamedTensor(string Name, long[] Shape, float[] Data, string Dtype = "F32")
{
    /// <summary>Number of elements the shape describes; throws <see cref="OverflowException"/> past long.</summary>
    public static long ElementCount(IReadOnlyList<long> shape)
    {
        long n = 1;
        foreach (long d in shape)
        {
            if (d < 0) throw new ArgumentException($"negative dimension {d} in shape [{string.Join(", ", shape)}]");
            n = checked(n * d);
        }
        return n;
    }
}
