using System.Globalization;

namespace ArcherIlgpu.Model;

/// <summary>
/// Size rules every family's <c>Validate</c> applies before anything is allocated. Products and sums are taken in
/// long and saturate at <see cref="long.MaxValue"/> instead of wrapping, so a config.json with absurd sizes (n_positions
/// 2e9, n_layer 2e9) fails naming its keys rather than overflowing somewhere later. Whether a valid config fits the
/// memory of a device is another question, answered where a command knows its batch.
/// </summary>
internal static class ConfigSizes
{
    /// <summary>
    /// The longest context a config may declare: 2^24 positions. The longest released models use about 10M, and a
    /// position stays exact as float32 (RoPE's angle is (float)position · inv_freq) only up to 2^24.
    /// </summary>
    public const int MaxContext = 1 << 24;

    /// <summary>The product of non-negative factors, or <see cref="long.MaxValue"/> where it would overflow.</summary>
    public static long Product(params ReadOnlySpan<long> factors)
    {
        long p = 1;
        foreach (long f in factors)
        {
            if (f != 0 && p > long.MaxValue / f) return long.MaxValue;
            p *= f;
        }
        return p;
    }

    /// <summary>The sum of non-negative terms, or <see cref="long.MaxValue"/> where it would overflow.</summary>
    public static long Sum(params ReadOnlySpan<long> terms)
    {
        long s = 0;
        foreach (long t in terms)
        {
            if (t > long.MaxValue - s) return long.MaxValue;
            s += t;
        }
        return s;
    }

    /// <summary>Null when every size fits one buffer (<see cref="MemoryEstimate.MaxBufferElements"/>: every tensor and the
    /// flat parameters are one array on the host), else why the first that does not, naming its <c>What</c> (the config's
    /// fields and their Hugging Face keys).</summary>
    public static string? FirstTooLarge(params ReadOnlySpan<(string What, long Elements)> sizes)
    {
        foreach (var (what, elements) in sizes)
            if (elements > MemoryEstimate.MaxBufferElements)
                return string.Create(CultureInfo.InvariantCulture,
                    $"{what} = {(elements == long.MaxValue ? "more than 9.2e18" : elements.ToString(CultureInfo.InvariantCulture))} elements, more than one float32 buffer can hold ({MemoryEstimate.MaxBufferElements})");
        return null;
    }

    /// <summary>Null when <paramref name="contextLength"/> is at most <see cref="MaxContext"/>, else why not, naming <paramref name="what"/>.</summary>
    public static string? ContextTooLong(string what, int contextLength) => contextLength <= MaxContext ? null
        : string.Create(CultureInfo.InvariantCulture,
            $"{what} = {contextLength} is longer than the {MaxContext} positions supported (2^24: positions must stay exact in float32)");
}
