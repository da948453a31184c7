using ArcherIlgpu.Rl.Tasks;

namespace ArcherIlgpu.Cli.Demo;

/// <summary>
/// A procedural task whose training stream never yields an evaluation problem: an example whose prompt is
/// held out is replaced by a draw from a shifted seed (deterministically), so "held-out" numbers are
/// measured on problems the model never trained on, neither in SFT nor in RL. Fixed datasets pass through.
/// </summary>
public sealed class HeldOutExcludedTask(ITask inner, IReadOnlySet<string> heldOutPrompts) : ITask
{
    const int MaxRedraws = 1000;
    const long SeedShift = 0x5EED_0FF5E7;

    public string Name => inner.Name;
    public long? Count => inner.Count;

    public TaskExample Generate(long seed, long index)
    {
        var example = inner.Generate(seed, index);
        if (inner.Count is not null) return example;
        for (int k = 1; k <= MaxRedraws && heldOutPrompts.Contains(example.Prompt); k++)
            example = inner.Generate(unchecked(seed + k * SeedShift), index);
        return example;
    }

    public double Reward(TaskExample example, string completion) => inner.Reward(example, completion);
}
