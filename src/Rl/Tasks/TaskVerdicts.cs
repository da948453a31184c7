namespace ArcherIlgpu.Rl.Tasks;

/// <summary>The verdict mix of scored completions, as the evaluator (eval/verdict/NAME) and the RL step metrics (verdict/NAME) report it.</summary>
public static class TaskVerdicts
{
    /// <summary>
    /// Each of the task's verdicts (<see cref="ITask.Verdicts"/>, every one listed, 0 included) with its share of
    /// <paramref name="completions"/>; empty for a task without verdicts or when there are no completions.
    /// </summary>
    public static IReadOnlyDictionary<string, double> Shares(ITask task, IReadOnlyCollection<(TaskExample Example, string Completion)> completions)
    {
        var counts = task.Verdicts.ToDictionary(v => v, _ => 0L, StringComparer.Ordinal);
        if (counts.Count == 0 || completions.Count == 0) return new Dictionary<string, double>();
        foreach (var (example, completion) in completions)
            if (task.Verdict(example, completion) is string verdict) counts[verdict] = counts.GetValueOrDefault(verdict) + 1;
        return counts.ToDictionary(kv => kv.Key, kv => (double)kv.Value / completions.Count, StringComparer.Ordinal);
    }
}
