namespace ArcherIlgpu.Rl.Tasks;

/// <summary>
/// One problem: what the model is shown, the ground truth the verifier checks against, and optionally a
/// worked solution (a correct completion, used as an SFT target). <paramref name="Data"/> carries any
/// further ground truth a verifier needs (Countdown's numbers); it is plain strings so that examples can
/// be written to sample files and read back.
/// </summary>
/// <param name="Prompt">The text the policy continues.</param>
/// <param name="Answer">The ground-truth answer (for Countdown: the target).</param>
/// <param name="Solution">A completion that the verifier accepts, or null if none is known.</param>
/// <param name="Data">Extra ground truth by key, or null.</param>
public sealed record TaskExample(string Prompt, string Answer, string? Solution = null,
    IReadOnlyDictionary<string, string>? Data = null)
{
    /// <summary>Value equality including the contents of <see cref="Data"/> (not its reference).</summary>
    public bool Equals(TaskExample? other)
    {
        if (other is null) return false;
        if (Prompt != other.Prompt || Answer != other.Answer || Solution != other.Solution) return false;
        if (Data is null || other.Data is null) return Data is null && other.Data is null;
        return Data.Count == other.Data.Count && Data.All(kv => other.Data.TryGetValue(kv.Key, out var v) && v == kv.Value);
    }

    public override int GetHashCode() => HashCode.Combine(Prompt, Answer, Solution, Data?.Count ?? -1);
}

/// <summary>
/// A task with an exact verifier and a binary reward. Implementations must be deterministic:
/// <see cref="Generate"/> depends only on (seed, index), so a data cursor in a checkpoint reproduces
/// the same problems, and <see cref="Reward"/> depends only on its arguments.
/// </summary>
public interface ITask
{
    /// <summary>The registry name, e.g. "countdown".</summary>
    string Name { get; }

    /// <summary>
    /// Number of distinct examples if the task is a fixed dataset (Generate then wraps around:
    /// index modulo Count); null for procedurally generated tasks.
    /// </summary>
    long? Count { get; }

    /// <summary>The example at <paramref name="index"/> of the stream chosen by <paramref name="seed"/>.</summary>
    TaskExample Generate(long seed, long index);

    /// <summary>1.0 if the completion solves the example, else 0.0. Never throws on malformed completions.</summary>
    double Reward(TaskExample example, string completion);

    /// <summary>
    /// The problem's canonical form: two examples with the same key are the same problem (Countdown: the
    /// sorted numbers and the target, so "3 8>24" and "8 3>24" are one problem). Evaluation sets are
    /// de-duplicated by it and <see cref="HeldOut"/> splits problems by a hash of it. Default: the prompt.
    /// </summary>
    string ProblemKey(TaskExample example) => example.Prompt;

    /// <summary>
    /// The named held-out group an example belongs to whatever its hash (Countdown: "unseen_targets", the
    /// problems whose target is never trained on), or null. Training streams skip every group's problems.
    /// </summary>
    string? HeldOutGroup(TaskExample example) => null;

    /// <summary>The names <see cref="HeldOutGroup"/> can return (each is evaluated separately).</summary>
    IReadOnlyList<string> HeldOutGroups => [];

    /// <summary>The names <see cref="Verdict"/> can return, in report order; empty if the task gives no verdicts.</summary>
    IReadOnlyList<string> Verdicts => [];

    /// <summary>Why the completion earned its reward (one of <see cref="Verdicts"/>), or null for a task without verdicts.</summary>
    string? Verdict(TaskExample example, string completion) => null;
}

/// <summary>
/// A task built on another one (a different stream of its problems) that verifies, keys, groups and judges
/// exactly as the inner task does; subclasses choose the examples.
/// </summary>
public abstract class DerivedTask(ITask inner) : ITask
{
    public ITask Inner => inner;
    public string Name => inner.Name;
    public abstract long? Count { get; }
    public abstract TaskExample Generate(long seed, long index);
    public double Reward(TaskExample example, string completion) => inner.Reward(example, completion);
    public string ProblemKey(TaskExample example) => inner.ProblemKey(example);
    public string? HeldOutGroup(TaskExample example) => inner.HeldOutGroup(example);
    public IReadOnlyList<string> HeldOutGroups => inner.HeldOutGroups;
    public IReadOnlyList<string> Verdicts => inner.Verdicts;
    public string? Verdict(TaskExample example, string completion) => inner.Verdict(example, completion);
}

/// <summary>Thrown for bad task data: an unreadable dataset line, an empty dataset, a bad option.</summary>
public sealed class TaskDataException(string message) : Exception(message);

/// <summary>
/// Mixes a seed and an index into an independent <see cref="Random"/>, so example i does not depend
/// on how many random numbers example i-1 drew (SplitMix64 finaliser).
/// </summary>
public static class TaskRandom
{
    public static Random For(long seed, long index)
    {
        ulong z = unchecked((ulong)seed * 0x9E3779B97F4A7C15UL + (ulong)index * 0xD1B54A32D192ED03UL + 0x632BE59BD9B4E019UL);
        z = unchecked((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL);
        z = unchecked((z ^ (z >> 27)) * 0x94D049BB133111EBUL);
        z ^= z >> 31;
        return new Random(unchecked((int)z ^ (int)(z >> 32)));
    }
}
