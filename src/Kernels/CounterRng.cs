namespace ArcherIlgpu.Kernels;

/// <summary>
/// A counter-based random generator: every number is a pure function of (seed, row, position, index),
/// so a sampled rollout is reproduced exactly from its seed on any backend and in any launch order.
/// The mixing function is SplitMix64's finaliser (Steele, Lea, Flood 2014), applied once per key
/// word; it passes BigCrush when used as a counter hash. Written with plain integer arithmetic so the
/// same code runs inside ILGPU kernels.
/// </summary>
public static class CounterRng
{
    public static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>64 random bits for the key (seed, row, position, index).</summary>
    public static ulong Bits(ulong seed, int row, int position, int index)
    {
        ulong h = Mix(seed + 0x9E3779B97F4A7C15UL);
        h = Mix(h ^ (((ulong)(uint)row << 32) | (uint)position));
        return Mix(h ^ (uint)index);
    }

    /// <summary>A float strictly inside (0, 1): the top 24 bits, centred in their interval.</summary>
    public static float Uniform(ulong seed, int row, int position, int index)
        => ((Bits(seed, row, position, index) >> 40) + 0.5f) * (1.0f / 16777216.0f);

    /// <summary>
    /// The (seed, row, position) part of <see cref="Bits"/>, for loops over many indices of one stream:
    /// <c>UniformInStream(StreamHash(s, r, p), i) == Uniform(s, r, p, i)</c> bit for bit.
    /// </summary>
    public static ulong StreamHash(ulong seed, int row, int position)
        => Mix(Mix(seed + 0x9E3779B97F4A7C15UL) ^ (((ulong)(uint)row << 32) | (uint)position));

    /// <summary><see cref="Uniform"/> for index <paramref name="index"/> of a stream from <see cref="StreamHash"/>.</summary>
    public static float UniformInStream(ulong streamHash, int index)
        => ((Mix(streamHash ^ (uint)index) >> 40) + 0.5f) * (1.0f / 16777216.0f);
}
