namespace ArcherIlgpu.Rl.Losses;

/// <summary>How a group of rewards for one prompt becomes one advantage per response.</summary>
public enum AdvantageEstimator
{
    /// <summary>(r − mean) / (unbiased std + ε) within the group (GRPO; Archer's code, norm_adv_by_std_in_grpo=True).</summary>
    Grpo,
    /// <summary>r − mean, no division by the std (Dr. GRPO).</summary>
    DrGrpo,
    /// <summary>r − mean of the other G−1 rewards (RLOO).</summary>
    Rloo,
}

/// <summary>
/// Outcome-reward advantages per group. Rewards are laid out group after group: rewards[g·G + j] is
/// response j of prompt g. Statistics are accumulated in float64.
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

/// <summary>Group counts from <see cref="GroupFilter.KeepInformative"/> (verl's batch/solve_none, solve_all, valid).</summary>
public readonly record struct GroupFilterCounts(int SolveNone, int SolveAll, int Kept)
{
    public int Groups => Kept + SolveNone + SolveAll;
}

/// <summary>Archer's "rejection sample" filter and DAPO's dynamic-sampling criterion.</summary>
public static class GroupFilter
{
    /// <summary>
    /// keep[g] = true iff the rewards of group g are not all equal (such a group has zero advantage
    /// everywhere and teaches nothing). A dropped group counts as SolveAll when its common reward is
    /// positive, else as SolveNone (right for {0,1} and ±1 rewards).
    /// </summary>
    public static GroupFilterCounts KeepInformative(ReadOnlySpan<float> rewards, int groupSize, Span<bool> keep)
    {
        if (groupSize < 1) throw new ArgumentOutOfRangeException(nameof(groupSize), groupSize, "group size must be >= 1");
        if (rewards.Length % groupSize != 0) throw new ArgumentException($"{rewards.Length} rewards are not a whole number of groups of {groupSize}");
        if (keep.Length != rewards.Length / groupSize) throw new ArgumentException($"keep has length {keep.Length}, expected {rewards.Length / groupSize} groups");
        int none = 0, all = 0, kept = 0;
        for (int g = 0; g < keep.Length; g++)
        {
            var r = rewards.Slice(g * groupSize, groupSize);
            bool uniform = true;
            for (int j = 1; j < r.Length; j++) if (r[j] != r[0]) { uniform = false; break; }
            keep[g] = !uniform;
            if (!uniform) kept++;
            else if (r[0] > 0) all++;
            else none++;
        }
        return new GroupFilterCounts(none, all, kept);
    }
}

/// <summary>DAPO's soft overlong punishment, added to the reward.</summary>
public static class OverlongShaping
{
    /// <summary>
    /// 0 while length ≤ maxLength − buffer; then −(length − (maxLength − buffer)) / buffer · factor, i.e.
    /// linear from 0 to −factor at maxLength (verl DAPO reward manager; nothing clamps it below −factor
    /// because a response cannot be longer than maxLength).
    /// </summary>
    public static float Penalty(int length, int maxLength, int bufferLength, float factor = 1f)
    {
        if (bufferLength <= 0 || bufferLength > maxLength)
            throw new ArgumentOutOfRangeException(nameof(bufferLength), bufferLength, $"overlong buffer must be in 1..maxLength ({maxLength})");
        int expected = maxLength - bufferLength;
        int exceed = length - expected;
        return exceed <= 0 ? 0f : -(float)exceed / bufferLength * factor;
    }
}
