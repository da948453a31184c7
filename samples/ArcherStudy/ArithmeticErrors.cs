using System.Globalization;
using ArcherIlgpu.Rl.Tasks;

namespace ArcherStudy;

/// <summary>
/// Where Countdown's <c>arithmetic</c> verdicts come from. The verdict (the spec, unchanged) says only that some
/// stated result is wrong; a policy that cannot reach the target but writes it as its last result anyway
/// ("84-9=75;28/14=2;75-2=73" with 73 stated for 75−2) gets that verdict too, although its error is one of reasoning
/// (the path does not reach the target), not of knowledge. So the analysis splits the verdict by its deciding step
/// (the first step whose stated result is wrong: every step before it was available and right):
/// <list type="bullet">
/// <item><see cref="FinalStatesTarget"/>: the deciding step is the last one and it states the target (a "forced target");</item>
/// <item><see cref="FinalOther"/>: the deciding step is the last one and states another number;</item>
/// <item><see cref="EarlierStep"/>: an earlier step's result is wrong (whatever the last step states).</item>
/// </list>
/// <see cref="StatesTarget"/> is the share of all samples (any verdict) whose last step states the target.
/// Shares are of all samples, like the verdict shares, so the three kinds sum to the <c>arithmetic</c> share.
/// </summary>
public static class ArithmeticErrors
{
    public const string FinalStatesTarget = "arithmetic_final_states_target", FinalOther = "arithmetic_final_other",
        EarlierStep = "arithmetic_earlier_step", StatesTarget = "states_target";

    /// <summary>The kinds, in report order, then <see cref="StatesTarget"/>.</summary>
    public static readonly string[] Names = [FinalStatesTarget, FinalOther, EarlierStep, StatesTarget];

    /// <summary>The kind of an <c>arithmetic</c>-verdict completion; null for any other verdict.</summary>
    public static string? Kind(string? verdict, string completion, long target)
    {
        if (verdict != CountdownStepVerifier.Arithmetic) return null;
        var steps = CountdownStepVerifier.Parse(completion.Trim())
            ?? throw new InvalidOperationException($"an arithmetic verdict for an unparsable completion '{completion}'");
        int deciding = steps.FindIndex(s => CountdownStepVerifier.Apply(s.Left, s.Op, s.Right) != s.Result);
        if (deciding < steps.Count - 1) return EarlierStep;
        return steps[^1].Result == target ? FinalStatesTarget : FinalOther;
    }

    /// <summary>Whether the completion parses as equations and its last one states the target.</summary>
    public static bool LastStatesTarget(string completion, long target) =>
        CountdownStepVerifier.Parse(completion.Trim()) is { Count: > 0 } steps && steps[^1].Result == target;

    /// <summary>Counts per name over (problem, completion, verdict) triples; null for a task without the arithmetic verdict.</summary>
    public sealed class Counter(ITask task)
    {
        readonly Dictionary<string, long> counts = Names.ToDictionary(n => n, _ => 0L, StringComparer.Ordinal);
        long total;
        readonly bool applies = task.Verdicts.Contains(CountdownStepVerifier.Arithmetic);

        /// <summary>Adds one sample; returns its kind (null when not an arithmetic verdict).</summary>
        public string? Add(TaskExample example, string completion, string? verdict)
        {
            if (!applies) return null;
            total++;
            long target = long.Parse(example.Answer, CultureInfo.InvariantCulture);
            if (LastStatesTarget(completion, target)) counts[StatesTarget]++;
            var kind = Kind(verdict, completion, target);
            if (kind is not null) counts[kind]++;
            return kind;
        }

        /// <summary>Each name's share of the samples added, or null when the task has no arithmetic verdict.</summary>
        public Dictionary<string, double>? Shares() =>
            applies && total > 0 ? counts.ToDictionary(kv => kv.Key, kv => kv.Value / (double)total, StringComparer.Ordinal) : null;
    }
}
