namespace ArcherIlgpu.Rl.Losses;

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
