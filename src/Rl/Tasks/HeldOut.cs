using System.Globalization;

namespace ArcherIlgpu.Rl.Tasks;

/// <summary>
/// The split between training and evaluation problems, fixed by the problems themselves so that it holds
/// for every command, seed and stream: a problem is held out when a stable hash of its canonical form
/// (<see cref="ITask.ProblemKey"/>) falls in the held-out share (<see cref="SharePercent"/> %), or when the
/// task puts it in a named held-out group (<see cref="ITask.HeldOutGroup"/>, e.g. Countdown's unseen
/// targets). Evaluation sets (<see cref="EvalSet"/>) hold only held-out problems, each once; training
/// streams (<see cref="TrainingView"/>: RL prompts, make-sft-data, the demo's SFT data) never yield one.
/// So no evaluation problem is ever trained on, by construction. A small finite task keeps the same
/// share: two-digit addition has 10,000 problems and about 1,000 held out; one-digit addition about 10.
/// </summary>
public static class HeldOut
{
    /// <summary>Percent of the problems (outside the named groups) that are held out.</summary>
    public const int SharePercent = 10;

    /// <summary>Default seed of the order in which evaluation problems are drawn.</summary>
    public const long EvalSeed = 0x0E7A1_5EED;

    /// <summary>Consecutive draws that bring no new held-out problem before a procedural task counts as exhausted.</summary>
    const int ExhaustedAfter = 20_000;

    /// <summary>True if no training stream may yield this problem.</summary>
    public static bool IsHeldOut(ITask task, TaskExample example) =>
        task.HeldOutGroup(example) is not null || InHeldOutShare(task.ProblemKey(example));

    /// <summary>The hash split alone: FNV-1a over the key's UTF-16 units, mixed, modulo 100 (stable across runs and machines).</summary>
    public static bool InHeldOutShare(string problemKey)
    {
        ulong h = 0xCBF29CE484222325UL;
        foreach (char c in problemKey) h = unchecked((h ^ c) * 0x100000001B3UL);
        h = unchecked((h ^ (h >> 33)) * 0xFF51AFD7ED558CCDUL);
        h ^= h >> 33;
        return h % 100 < SharePercent;
    }

    /// <summary>
    /// <paramref name="count"/> distinct held-out problems: of the main split (<paramref name="group"/> null:
    /// the hash share, outside every named group) or of one named group. A fixed dataset is read in file
    /// order; a procedural task's stream <paramref name="seed"/> is filtered. Asking for more problems than
    /// the task holds out is a <see cref="TaskDataException"/> naming how many there are.
    /// </summary>
    public static IReadOnlyList<TaskExample> EvalSet(ITask task, int count, long seed = EvalSeed, string? group = null)
    {
        if (count < 1) throw new ArgumentOutOfRangeException(nameof(count), count, "at least one evaluation problem");
        if (group is not null && !task.HeldOutGroups.Contains(group))
            throw new TaskDataException($"task \"{task.Name}\" has no held-out group \"{group}\"; its groups: " +
                (task.HeldOutGroups.Count == 0 ? "(none)" : string.Join(", ", task.HeldOutGroups)));
        bool Wanted(TaskExample e) => group is null
            ? task.HeldOutGroup(e) is null && InHeldOutShare(task.ProblemKey(e))
            : task.HeldOutGroup(e) == group;

        var set = new List<TaskExample>(count);
        var keys = new HashSet<string>(StringComparer.Ordinal);
        long stale = 0;
        for (long i = 0; set.Count < count; i++)
        {
            if (task.Count is long n ? i >= n : stale >= ExhaustedAfter) break;
            var e = task.Generate(seed, i);
            if (Wanted(e) && keys.Add(task.ProblemKey(e))) { set.Add(e); stale = 0; }
            else stale++;
        }
        if (set.Count < count)
        {
            string which = group is null ? $"held-out problems (the {SharePercent}% share by problem hash)" : $"problems in its held-out group \"{group}\"";
            string found = task.Count is null ? $"found only {set.Count} distinct" : $"has only {set.Count} distinct";
            throw new TaskDataException($"task \"{task.Name}\" {found} {which}; asked for {count.ToString(CultureInfo.InvariantCulture)}: ask for fewer evaluation problems");
        }
        return set;
    }

    /// <summary>The task as training sees it: every held-out problem skipped (see <see cref="HeldOutExcludedTask"/>).</summary>
    public static ITask TrainingView(ITask task) => task is HeldOutExcludedTask ? task : new HeldOutExcludedTask(task);

    /// <summary>For a user's problems file: a line saying how many of its problems training uses (the others are held out).</summary>
    public static string TrainingShare(ProblemFileTask file) =>
        $"{file.Path}: training uses {TrainingView(file).Count} of its {file.Count} problems; the others are held out for evaluation";
}

/// <summary>
/// A task whose stream never yields a held-out problem (<see cref="HeldOut.IsHeldOut"/>). A procedural
/// task redraws a held-out example from shifted seeds (deterministically, so a data cursor still fixes
/// the stream); a fixed dataset becomes the dataset of its training problems, in their order.
/// </summary>
public sealed class HeldOutExcludedTask : DerivedTask
{
    const int MaxRedraws = 1000;
    const long SeedShift = 0x5EED_0FF5E7;

    readonly long[]? trainingIndices;

    public HeldOutExcludedTask(ITask inner) : base(inner)
    {
        if (inner.Count is not long n) return;
        if (n > int.MaxValue) throw new TaskDataException($"task \"{inner.Name}\" has {n} examples; at most {int.MaxValue} can be split");
        var list = new List<long>();
        for (long i = 0; i < n; i++) if (!HeldOut.IsHeldOut(inner, inner.Generate(0, i))) list.Add(i);
        if (list.Count == 0)
            throw new TaskDataException($"every one of the {n} problems of task \"{inner.Name}\" is held out for evaluation; nothing is left to train on");
        trainingIndices = list.ToArray();
    }

    public override long? Count => trainingIndices?.LongLength;

    public override TaskExample Generate(long seed, long index)
    {
        if (trainingIndices is not null)
            return Inner.Generate(seed, trainingIndices[((index % trainingIndices.Length) + trainingIndices.Length) % trainingIndices.Length]);
        var example = Inner.Generate(seed, index);
        for (int k = 1; HeldOut.IsHeldOut(Inner, example); k++)
        {
            if (k > MaxRedraws)
                throw new TaskDataException($"task \"{Inner.Name}\": {MaxRedraws} draws in a row were held-out problems; its options leave almost nothing to train on");
            example = Inner.Generate(unchecked(seed + k * SeedShift), index);
        }
        return example;
    }
}
