using ArcherIlgpu.Kernels;
using System.Buffers;

namespace ArcherIlgpu.Rl.Losses;

// The host (float64-threshold) reference of the device classifiers, kept for the tests; the trainer classifies on the device.

/// <summary>The class values of <see cref="PolicyMath"/> (the one definition) as bytes, so a reference class map is one [rows, T] byte array.</summary>
public static class TokenClass
{
    public const byte None = PolicyMath.ClassNone;
    public const byte Low = PolicyMath.ClassLow;
    public const byte High = PolicyMath.ClassHigh;
}

/// <summary>
/// Splits valid tokens into low- and high-entropy classes by an entropy quantile, either per response
/// (Archer) or over the whole batch (the 80/20 baseline). Entropies and masks are [rows, T]; a token is
/// valid iff mask &gt; 0.
/// </summary>
public static class TokenClassifier
{
    /// <summary>
    /// The ρ-quantile of ascending <paramref name="sorted"/> with linear interpolation (numpy's default
    /// 'linear' method): p = ρ(n−1), τ = h[⌊p⌋] + (p − ⌊p⌋)(h[⌈p⌉] − h[⌊p⌋]). NaN when empty.
    /// Interpolation is done in float64, then rounded to float32 (the value the comparison uses).
    /// </summary>
    public static float Quantile(ReadOnlySpan<float> sorted, double rho)
    {
        if (sorted.IsEmpty) return float.NaN;
        // The same float64 interpolation the device classifiers use (PolicyMath), from the nearer end as numpy does.
        int lo = PolicyMath.QuantileIndex(sorted.Length, rho, out double frac);
        int hi = Math.Min(lo + 1, sorted.Length - 1);
        return PolicyMath.QuantileLerp(sorted[lo], sorted[hi], frac);
    }

    /// <summary>
    /// Archer's classification: per row i, τ_i = <see cref="Quantile"/> of the row's valid entropies at ρ;
    /// a valid token is High iff H &gt; τ_i (or ≥ with <see cref="HighEntropyRule.GreaterOrEqual"/>), else Low.
    /// A row without valid tokens gets τ = NaN and no token in either class.
    /// </summary>
    /// <param name="entropies">[rows, T]</param> <param name="mask">[rows, T]</param>
    /// <param name="thresholds">[rows] out: τ_i</param> <param name="classes">[rows, T] out, OVERWRITTEN</param>
    public static void PerResponse(ReadOnlySpan<float> entropies, ReadOnlySpan<float> mask, int rows, int T, double rho,
        Span<float> thresholds, Span<byte> classes, HighEntropyRule rule = HighEntropyRule.Greater)
    {
        CheckShapes(entropies, mask, rows * T, classes);
        if (thresholds.Length != rows) throw new ArgumentException($"thresholds has length {thresholds.Length}, expected {rows} rows");
        CheckRho(rho);
        var scratch = ArrayPool<float>.Shared.Rent(Math.Max(T, 1));
        try
        {
            for (int i = 0; i < rows; i++)
            {
                var h = entropies.Slice(i * T, T);
                var m = mask.Slice(i * T, T);
                int n = 0;
                for (int t = 0; t < T; t++) if (m[t] > 0) scratch[n++] = h[t];
                var valid = scratch.AsSpan(0, n);
                valid.Sort();
                float tau = Quantile(valid, rho);
                thresholds[i] = tau;
                Assign(h, m, tau, rule, classes.Slice(i * T, T));
            }
        }
        finally { ArrayPool<float>.Shared.Return(scratch); }
    }

    /// <summary>
    /// The 80/20 baseline: one threshold τ^B = <see cref="Quantile"/> at ρ over every valid token of the batch;
    /// High iff H ≥ τ^B (keeps the top 1−ρ share, ties kept). Returns τ^B (NaN if there is no valid token).
    /// </summary>
    public static float BatchLevel(ReadOnlySpan<float> entropies, ReadOnlySpan<float> mask, double rho, Span<byte> classes,
        HighEntropyRule rule = HighEntropyRule.GreaterOrEqual)
    {
        CheckShapes(entropies, mask, entropies.Length, classes);
        CheckRho(rho);
        int n = 0;
        foreach (var m in mask) if (m > 0) n++;
        var scratch = ArrayPool<float>.Shared.Rent(Math.Max(n, 1));
        try
        {
            n = 0;
            for (int t = 0; t < entropies.Length; t++) if (mask[t] > 0) scratch[n++] = entropies[t];
            var valid = scratch.AsSpan(0, n);
            valid.Sort();
            float tau = Quantile(valid, rho);
            Assign(entropies, mask, tau, rule, classes);
            return tau;
        }
        finally { ArrayPool<float>.Shared.Return(scratch); }
    }

    /// <summary>(low, high) token counts of a class map.</summary>
    public static (int Low, int High) Count(ReadOnlySpan<byte> classes)
    {
        int low = 0, high = 0;
        foreach (var c in classes) { if (c == TokenClass.Low) low++; else if (c == TokenClass.High) high++; }
        return (low, high);
    }

    static void Assign(ReadOnlySpan<float> h, ReadOnlySpan<float> m, float tau, HighEntropyRule rule, Span<byte> classes)
    {
        for (int t = 0; t < h.Length; t++)
        {
            if (!(m[t] > 0) || float.IsNaN(tau)) { classes[t] = TokenClass.None; continue; }
            bool high = rule == HighEntropyRule.Greater ? h[t] > tau : h[t] >= tau;
            classes[t] = high ? TokenClass.High : TokenClass.Low;
        }
    }

    static void CheckShapes(ReadOnlySpan<float> entropies, ReadOnlySpan<float> mask, int n, Span<byte> classes)
    {
        if (entropies.Length != n || mask.Length != n || classes.Length != n)
            throw new ArgumentException($"entropies ({entropies.Length}), mask ({mask.Length}) and classes ({classes.Length}) must all have length {n}");
    }

    static void CheckRho(double rho)
    {
        if (!(rho > 0 && rho < 1)) throw new ArgumentOutOfRangeException(nameof(rho), rho, "quantile ρ must be in (0, 1)");
    }
}
