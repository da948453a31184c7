using System.Globalization;

namespace ArcherIlgpu.Rl.Tasks;

/// <summary>
/// The verifier of Countdown's step form. A response is exactly n−1 equations <c>a op b = c</c> joined by
/// <c>;</c> (e.g. <c>84-9=75;28/14=2;75-2=73</c> for 84 9 14 28 → 73), read left to right:
/// <list type="bullet">
/// <item><c>format</c>: not n−1 such equations (fewer steps are a format error too: every number must be used,
/// which n−1 steps do, since each step replaces two numbers by one); numbers are unsigned decimals without
/// leading zeros, so a negative result cannot be written (<c>9-84=-75</c> is a format error);</item>
/// <item><c>unavailable</c>: an operand is not in the multiset of the given numbers and the results of earlier
/// steps still unused (each is used once);</item>
/// <item><c>arithmetic</c>: a stated result is not what the operation gives in integer arithmetic: a wrong
/// sum, a negative difference (<c>9-84=75</c>), a division with a remainder or by zero;</item>
/// <item><c>wrong_target</c>: every step legal and right, but the last result is not the target;</item>
/// <item><c>correct</c>.</item>
/// </list>
/// The first step that fails decides; within a step, availability is checked before arithmetic. A result of 0
/// is allowed (it is integer arithmetic, and 5-5=0 can be part of a path, e.g. 7+0). Operand order is free
/// for + and * (the solver writes the larger first).
/// </summary>
public static class CountdownStepVerifier
{
    public const string Format = "format", Unavailable = "unavailable", Arithmetic = "arithmetic", WrongTarget = "wrong_target", Correct = "correct";

    /// <summary>All verdicts, in report order.</summary>
    public static readonly IReadOnlyList<string> Verdicts = [Correct, WrongTarget, Arithmetic, Unavailable, Format];

    /// <summary>One parsed equation.</summary>
    public readonly record struct Step(long Left, char Op, long Right, long Result)
    {
        public override string ToString() =>
            string.Create(CultureInfo.InvariantCulture, $"{Left}{Op}{Right}={Result}");
    }

    /// <summary>The verdict of <paramref name="completion"/> (surrounding whitespace ignored).</summary>
    public static string Check(IReadOnlyList<long> numbers, long target, string completion)
    {
        var steps = Parse(completion.Trim());
        if (steps is null || steps.Count != numbers.Count - 1) return Format;
        var available = new List<long>(numbers);
        foreach (var s in steps)
        {
            if (!available.Remove(s.Left) || !available.Remove(s.Right)) return Unavailable;
            if (Apply(s.Left, s.Op, s.Right) != s.Result) return Arithmetic;
            available.Add(s.Result);
        }
        return steps[^1].Result == target ? Correct : WrongTarget;
    }

    /// <summary>The exact non-negative integer result of <c>a op b</c>, or null when there is none (negative, remainder, ÷0).</summary>
    public static long? Apply(long a, char op, long b) => op switch
    {
        '+' => a + b,
        '-' => a >= b ? a - b : null,
        '*' => a * b,
        '/' => b != 0 && a % b == 0 ? a / b : null,
        _ => null,
    };

    /// <summary>The equations of <paramref name="text"/>, or null if it is not <c>eq(;eq)*</c>.</summary>
    public static List<Step>? Parse(string text)
    {
        var steps = new List<Step>();
        foreach (var part in text.Split(';'))
        {
            int pos = 0;
            if (!Number(part, ref pos, out long a) || pos >= part.Length || "+-*/".IndexOf(part[pos]) < 0) return null;
            char op = part[pos++];
            if (!Number(part, ref pos, out long b) || pos >= part.Length || part[pos++] != '=') return null;
            if (!Number(part, ref pos, out long c) || pos != part.Length) return null;
            steps.Add(new Step(a, op, b, c));
        }
        return steps;
    }

    /// <summary>An unsigned decimal without leading zeros and of at most 9 digits (so products cannot overflow).</summary>
    static bool Number(string s, ref int pos, out long value)
    {
        int start = pos;
        while (pos < s.Length && char.IsAsciiDigit(s[pos])) pos++;
        int length = pos - start;
        value = 0;
        if (length == 0 || length > 9 || (length > 1 && s[start] == '0')) return false;
        value = long.Parse(s.AsSpan(start, length), CultureInfo.InvariantCulture);
        return true;
    }
}

/// <summary>
/// Every step-form solution of a Countdown problem: each way to combine two available numbers (with + − × ÷,
/// results non-negative integers, as the verifier requires) n−1 times so that the last result is the target.
/// Solutions that differ only in which of two equal numbers is taken are the same text and counted once;
/// solutions that differ in step order are distinct (they are different paths for the policy). For 4
/// numbers there are at most 6·6·3·6·6 = 3,888 step sequences, so the enumeration is cheap.
/// </summary>
public static class CountdownStepSolver
{
    /// <summary>The distinct solutions, in a fixed (deterministic) order.</summary>
    public static List<string> Solutions(IReadOnlyList<long> numbers, long target)
    {
        var found = new List<string>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var path = new List<CountdownStepVerifier.Step>(numbers.Count);
        Search(new List<long>(numbers), target, path, found, seen);
        return found;
    }

    static void Search(List<long> values, long target, List<CountdownStepVerifier.Step> path, List<string> found, HashSet<string> seen)
    {
        if (values.Count == 1)
        {
            if (values[0] != target) return;
            var text = string.Join(";", path);
            if (seen.Add(text)) found.Add(text);
            return;
        }
        for (int i = 0; i < values.Count; i++)
            for (int j = i + 1; j < values.Count; j++)
            {
                long a = Math.Max(values[i], values[j]), b = Math.Min(values[i], values[j]);
                var rest = new List<long>(values.Count - 1);
                for (int k = 0; k < values.Count; k++) if (k != i && k != j) rest.Add(values[k]);
                foreach (var (left, op, right) in Moves(a, b))
                {
                    long result = CountdownStepVerifier.Apply(left, op, right)!.Value;
                    if (result > CountdownTask.MaxValue) continue;   // the verifier reads at most 9 digits
                    path.Add(new CountdownStepVerifier.Step(left, op, right, result));
                    rest.Add(result);
                    Search(rest, target, path, found, seen);
                    rest.RemoveAt(rest.Count - 1);
                    path.RemoveAt(path.Count - 1);
                }
            }
    }

    /// <summary>The legal steps on a pair with a ≥ b: a+b, a−b, a×b, and the exact divisions.</summary>
    static IEnumerable<(long, char, long)> Moves(long a, long b)
    {
        yield return (a, '+', b);
        yield return (a, '-', b);
        yield return (a, '*', b);
        if (b != 0 && a % b == 0) yield return (a, '/', b);
        // b ÷ a is an integer only when b is 0 (0/a = 0) or b = a (already listed as a/b).
        if (b == 0 && a != 0) yield return (b, '/', a);
    }
}

/// <summary>Prompts of the step form: the numbers, '>', the target, ':' — e.g. <c>84 9 14 28>73:</c>.</summary>
public static class CountdownStepPrompt
{
    public static string Format(IReadOnlyList<long> numbers, long target) =>
        string.Join(" ", numbers.Select(n => n.ToString(CultureInfo.InvariantCulture))) + ">" + target.ToString(CultureInfo.InvariantCulture) + ":";
}
