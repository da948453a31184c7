namespace ArcherIlgpu.Kernels;

/// <summary>
/// The scalar pieces of <see cref="Backend.Sample"/> that every backend must compute bit for bit alike,
/// written once and called from the managed sampler and from the ILGPU kernel.
///
/// How a backend-independent draw is built:
/// - Top-k and top-p are thresholds on an order-preserving integer key of the logit: allowed tokens are
///   those with key ≥ threshold, so the allowed set does not depend on any sort or visiting order (ties
///   at a threshold are all allowed, so top-k may keep more than k tokens when logits tie).
/// - The top-p threshold compares probability mass held as 40-bit fixed point integers, whose sums are
///   exact and therefore independent of the summation order.
/// - The draw is a Gumbel-max race over the allowed set: argmax of x_v − log(−log u_v), u_v from
///   <see cref="CounterRng"/> keyed by (seed, row, position, v), the lowest id winning exact ties.
/// Each of these is order-independent, so backends agree unless their exp/log differ in the last bit
/// (CUDA's fast math): then a draw can differ only where two racers are within rounding of each other.
/// </summary>
public static class SamplingMath
{
    /// <summary>Fixed-point unit of probability mass: 2^40, so a vocabulary of 2^23 tokens still sums in a long.</summary>
    public const float MassUnit = 1099511627776f;

    /// <summary>Maps a float to a uint whose unsigned order is the float order (−0 sorts just below +0).</summary>
    public static uint OrderKey(float value)
    {
        uint bits = (uint)BitConverter.SingleToInt32Bits(value);
        return (bits & 0x80000000u) != 0 ? ~bits : bits | 0x80000000u;
    }

    /// <summary>Scaled, shifted logit x = (z − max)·invT: ≤ 0, the log of an unnormalised probability.</summary>
    public static float Scaled(float logit, float max, float invT) => (logit - max) * invT;

    /// <summary>exp(x) in units of 2^-40, truncated: an exactly summable stand-in for the unnormalised probability.</summary>
    public static long FixedMass(float scaled) => (long)(MathF.Exp(scaled) * MassUnit);

    /// <summary>
    /// An upper bound on the Gumbel term: u ≤ 1 − 2^-25, so −log(−log u) ≤ 17.33 (plus float rounding).
    /// A token whose x is more than this below the best key so far cannot win the race and need not draw;
    /// skipping it changes no result, so backends may prune differently and still agree.
    /// </summary>
    public const float MaxGumbel = 18f;

    /// <summary>The racer's key: x plus a standard Gumbel variable from the counter RNG.</summary>
    public static float GumbelKey(float scaled, ulong seed, int row, int position, int token)
    {
        float u = CounterRng.Uniform(seed, row, position, token);
        return scaled - MathF.Log(-MathF.Log(u));
    }

    /// <summary>
    /// The mass a nucleus must reach, in fixed point: topP of the (top-k) total, at least one unit so
    /// that the set is never empty (topP ≤ 0 keeps only the most likely token).
    /// </summary>
    public static double NucleusTarget(long totalMass, float topP)
    {
        double target = topP * (double)totalMass;
        return target > 1.0 ? target : 1.0;
    }
}
