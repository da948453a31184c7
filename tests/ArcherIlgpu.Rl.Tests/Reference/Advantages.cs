namespace ArcherIlgpu.Rl.Losses;

/// <summary>
/// Outcome-reward advantages per group, the float64 host formula: the reference for
/// <see cref="ArcherIlgpu.Kernels.Backend.GroupAdvantages"/>, which the trainer runs. Rewards are laid out group after
/// group: rewards[g·G + j] is response j of prompt g. Statistics are accumulated in float64.
/// </summary>
public static class Advantages
{
    /// <summary>The ε added to the std in GRPO (verl's default, 1e-6).</summary>
    public const double DefaultEpsilon = 1e-6;

    public static void Compute(AdvantageEstimator estimator, ReadOnlySpan<float> rewards, int groupSize, Span<float> advantages,
        double epsilon = DefaultEpsilon)
    {
        CheckShapes(rewards, groupSize, advantages);
        for (int start = 0; start < rewards.Length; start += groupSize)
        {
            var r = rewards.Slice(start, groupSize);
            var a = advantages.Slice(start, groupSize);
            double sum = 0;
            foreach (var x in r) sum += x;
            double mean = sum / groupSize;
            switch (estimator)
            {
                case AdvantageEstimator.Grpo:
                    double ss = 0;
                    foreach (var x in r) ss += (x - mean) * (x - mean);
                    double std = Math.Sqrt(ss / (groupSize - 1));
                    for (int j = 0; j < groupSize; j++) a[j] = (float)((r[j] - mean) / (std + epsilon));
                    break;
                case AdvantageEstimator.DrGrpo:
                    for (int j = 0; j < groupSize; j++) a[j] = (float)(r[j] - mean);
                    break;
                case AdvantageEstimator.Rloo:
                    for (int j = 0; j < groupSize; j++) a[j] = (float)(r[j] - (sum - r[j]) / (groupSize - 1));
                    break;
                default:
                    throw new ArgumentOutOfRangeException(nameof(estimator), estimator, "unknown advantage estimator");
            }
        }
    }

    public static void Grpo(ReadOnlySpan<float> rewards, int groupSize, Span<float> advantages, double epsilon = DefaultEpsilon) =>
        Compute(AdvantageEstimator.Grpo, rewards, groupSize, advantages, epsilon);

    public static void DrGrpo(ReadOnlySpan<float> rewards, int groupSize, Span<float> advantages) =>
        Compute(AdvantageEstimator.DrGrpo, rewards, groupSize, advantages);

    public static void Rloo(ReadOnlySpan<float> rewards, int groupSize, Span<float> advantages) =>
        Compute(AdvantageEstimator.Rloo, rewards, groupSize, advantages);

    /// <summary>
    /// Spreads one advantage per response over its tokens: perToken[i·T + t] = perResponse[i] where
    /// mask[i·T + t] &gt; 0, else 0. perToken is [rows, T], OVERWRITTEN.
    /// </summary>
    public static void BroadcastToTokens(ReadOnlySpan<float> perResponse, ReadOnlySpan<float> mask, int T, Span<float> perToken)
    {
        if (mask.Length != perResponse.Length * T || perToken.Length != mask.Length)
            throw new ArgumentException($"broadcast: {perResponse.Length} responses × T={T} must equal mask ({mask.Length}) and output ({perToken.Length}) lengths");
        for (int i = 0; i < perResponse.Length; i++)
            for (int t = 0; t < T; t++)
                perToken[i * T + t] = mask[i * T + t] > 0 ? perResponse[i] : 0f;
    }

    static void CheckShapes(ReadOnlySpan<float> rewards, int groupSize, Span<float> advantages)
    {
        if (groupSize < 2) throw new ArgumentOutOfRangeException(nameof(groupSize), groupSize, "group size must be >= 2 (a group of one has no baseline)");
        if (rewards.Length % groupSize != 0)
            throw new ArgumentException($"{rewards.Length} rewards are not a whole number of groups of {groupSize}");
        if (advantages.Length != rewards.Length)
            throw new ArgumentException($"advantages has length {advantages.Length}, rewards {rewards.Length}");
    }
}

