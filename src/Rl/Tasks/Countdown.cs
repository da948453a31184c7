using System.Globalization;
using System.Text;

namespace ArcherIlgpu.Rl.Tasks;

/// <summary>Why a Countdown answer was accepted or rejected.</summary>
public enum CountdownVerdict
{
    Correct,
    /// <summary>No expression found in the completion.</summary>
    Empty,
    /// <summary>Not a well-formed expression of integers, + - * / (also × ÷) and parentheses.</summary>
    Malformed,
    /// <summary>Uses a number that is not among the given ones.</summary>
    UnknownNumber,
    /// <summary>Uses a given number more times than it was given.</summary>
    ReusedNumber,
    DivisionByZero,
    /// <summary>Well formed and legal, but its value is not the target (or a stated "= result" is not the target).</summary>
    WrongValue,
}

/// <summary>
/// The Countdown verifier: an expression over the given numbers, each used at most once, with
/// + − × ÷ and parentheses, evaluated exactly with <see cref="Rational"/> (intermediate fractions are
/// fine: 8/(3-8/3) = 24). Unary minus is not allowed, since it would be an extra operation.
/// </summary>
public static class CountdownVerifier
{
    /// <summary>
    /// The expression in a completion: the last non-empty line; an "=..." tail is split off and, if present,
    /// must equal the target. Returns (expression, stated result or null).
    /// </summary>
    public static (string Expression, string? Stated) ExtractExpression(string completion)
    {
        var lines = completion.Split('\n', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        if (lines.Length == 0) return ("", null);
        var line = lines[^1];
        int eq = line.IndexOf('=');
        return eq < 0 ? (line, null) : (line[..eq].Trim(), line[(eq + 1)..].Trim());
    }

    public static CountdownVerdict Check(IReadOnlyList<long> numbers, long target, string completion)
    {
        var (expression, stated) = ExtractExpression(completion);
        if (expression.Length == 0) return CountdownVerdict.Empty;
        if (stated is not null && (!Rational.TryParse(stated, out var s) || s != target)) return CountdownVerdict.WrongValue;
        var parser = new Parser(expression);
        Rational value;
        try
        {
            value = parser.ParseAll();
        }
        catch (FormatException) { return CountdownVerdict.Malformed; }
        catch (DivideByZeroException) { return CountdownVerdict.DivisionByZero; }

        var available = new Dictionary<long, int>();
        foreach (var n in numbers) available[n] = available.GetValueOrDefault(n) + 1;
        foreach (var used in parser.Literals)
        {
            if (!available.TryGetValue(used, out int left)) return CountdownVerdict.UnknownNumber;
            if (left == 0) return CountdownVerdict.ReusedNumber;
            available[used] = left - 1;
        }
        return value == target ? CountdownVerdict.Correct : CountdownVerdict.WrongValue;
    }

    /// <summary>Evaluates an expression exactly; throws FormatException or DivideByZeroException.</summary>
    public static Rational Evaluate(string expression) => new Parser(expression).ParseAll();

    /// <summary>Recursive descent: expr = term (('+'|'-') term)*; term = atom (('*'|'/') atom)*; atom = integer | '(' expr ')'.</summary>
    sealed class Parser(string text)
    {
        int pos;
        public readonly List<long> Literals = [];

        public Rational ParseAll()
        {
            var v = Expr();
            SkipSpaces();
            if (pos != text.Length) throw new FormatException($"unexpected '{text[pos]}' at {pos}");
            return v;
        }

        Rational Expr()
        {
            var v = Term();
            while (true)
            {
                char c = Peek();
                if (c == '+') { pos++; v += Term(); }
                else if (c == '-' || c == '\u2212') { pos++; v -= Term(); }
                else return v;
            }
        }

        Rational Term()
        {
            var v = Atom();
            while (true)
            {
                char c = Peek();
                if (c == '*' || c == '\u00d7') { pos++; v *= Atom(); }
                else if (c == '/' || c == '\u00f7') { pos++; v /= Atom(); }
                else return v;
            }
        }

        Rational Atom()
        {
            char c = Peek();
            if (c == '(')
            {
                pos++;
                var v = Expr();
                if (Peek() != ')') throw new FormatException("missing ')'");
                pos++;
                return v;
            }
            if (!char.IsAsciiDigit(c)) throw new FormatException(c == '\0' ? "unexpected end" : $"unexpected '{c}'");
            int start = pos;
            while (pos < text.Length && char.IsAsciiDigit(text[pos])) pos++;
            if (pos - start > 15) throw new FormatException("number too long");
            long n = long.Parse(text.AsSpan(start, pos - start), CultureInfo.InvariantCulture);
            Literals.Add(n);
            return n;
        }

        char Peek()
        {
            SkipSpaces();
            return pos < text.Length ? text[pos] : '\0';
        }

        void SkipSpaces() { while (pos < text.Length && (text[pos] == ' ' || text[pos] == '\t')) pos++; }
    }
}

/// <summary>
/// Exhaustive search for a Countdown solution: repeatedly replace two values by their sum, difference,
/// product or quotient (exact fractions) until some value equals the target; states already explored
/// are remembered, so 6 numbers stay cheap. The expression uses as few parentheses as its meaning allows.
/// </summary>
public static class CountdownSolver
{
    readonly record struct Term(Rational Value, string Text, int Precedence);

    const int AtomPrecedence = 3, ProductPrecedence = 2, SumPrecedence = 1;

    /// <summary>An expression over <paramref name="numbers"/> (each at most once) equal to target, or null if none exists.</summary>
    public static string? Solve(IReadOnlyList<long> numbers, long target)
    {
        var terms = numbers.Select(n => new Term(n, n.ToString(CultureInfo.InvariantCulture), AtomPrecedence)).ToList();
        var failed = new HashSet<string>();
        return Search(terms, target, failed);
    }

    static string? Search(List<Term> terms, Rational target, HashSet<string> failed)
    {
        foreach (var t in terms) if (t.Value == target) return t.Text;
        if (terms.Count < 2) return null;
        var key = string.Join(",", terms.Select(t => t.Value).OrderBy(v => v).Select(v => v.ToString()));
        if (!failed.Add(key)) return null;
        for (int i = 0; i < terms.Count; i++)
            for (int j = i + 1; j < terms.Count; j++)
            {
                var rest = new List<Term>(terms.Count - 1);
                for (int k = 0; k < terms.Count; k++) if (k != i && k != j) rest.Add(terms[k]);
                foreach (var combined in Combine(terms[i], terms[j]))
                {
                    rest.Add(combined);
                    var found = Search(rest, target, failed);
                    if (found is not null) return found;
                    rest.RemoveAt(rest.Count - 1);
                }
            }
        return null;
    }

    static IEnumerable<Term> Combine(Term a, Term b)
    {
        yield return Join(a, '+', b, a.Value + b.Value, SumPrecedence);
        yield return Join(a, '*', b, a.Value * b.Value, ProductPrecedence);
        yield return Join(a, '-', b, a.Value - b.Value, SumPrecedence);
        yield return Join(b, '-', a, b.Value - a.Value, SumPrecedence);
        if (b.Value != Rational.Zero) yield return Join(a, '/', b, a.Value / b.Value, ProductPrecedence);
        if (a.Value != Rational.Zero) yield return Join(b, '/', a, b.Value / a.Value, ProductPrecedence);
    }

    static Term Join(Term left, char op, Term right, Rational value, int precedence)
    {
        // Left operands need parentheses only when they bind more loosely than the operator; right
        // operands also when equal, because - and / are not associative.
        bool parenLeft = left.Precedence < precedence;
        bool parenRight = op switch
        {
            '+' => false,
            '*' => right.Precedence < precedence,
            _ => right.Precedence <= precedence,
        };
        var sb = new StringBuilder();
        sb.Append(parenLeft ? $"({left.Text})" : left.Text).Append(op).Append(parenRight ? $"({right.Text})" : right.Text);
        return new Term(value, sb.ToString(), precedence);
    }
}

/// <summary>Options of <see cref="CountdownTask"/>.</summary>
/// <param name="MinNumbers">Fewest given numbers (default 3).</param>
/// <param name="MaxNumbers">Most given numbers (default 4).</param>
/// <param name="MaxNumber">Given numbers are drawn from 1..MaxNumber (default 25; step form 99).</param>
/// <param name="MinTarget">Smallest target (default 1; step form 10).</param>
/// <param name="MaxTarget">Largest target (default 100).</param>
/// <param name="Format">"expression" (default: one expression, fractions allowed in between) or "steps"
/// (n−1 integer equations, see <see cref="CountdownStepVerifier"/>).</param>
public sealed record CountdownOptions(int MinNumbers = 3, int MaxNumbers = 4, int MaxNumber = 25, int MinTarget = 1, int MaxTarget = 100,
    string Format = CountdownOptions.ExpressionFormat)
{
    public const string ExpressionFormat = "expression", StepsFormat = "steps";

    /// <summary>The step form's defaults, the setting of Qin et al. 2025: numbers 1..99, targets 10..100, 3 or 4 numbers.</summary>
    public static CountdownOptions Steps => new(MaxNumber: 99, MinTarget: 10, MaxTarget: 100, Format: StepsFormat);

    public bool IsSteps => Format == StepsFormat;

    /// <summary>Most numbers a problem may have: the step form enumerates every solution (5 numbers: 233,280 step sequences).</summary>
    public int NumbersLimit => IsSteps ? 5 : 6;

    public void Validate()
    {
        if (Format != ExpressionFormat && Format != StepsFormat)
            throw new TaskDataException($"countdown: format must be {ExpressionFormat} or {StepsFormat}, got \"{Format}\"");
        if (MinNumbers < 2) throw new TaskDataException($"countdown: min_numbers must be >= 2, got {MinNumbers}");
        if (MaxNumbers < MinNumbers) throw new TaskDataException($"countdown: max_numbers ({MaxNumbers}) must be >= min_numbers ({MinNumbers})");
        if (MaxNumbers > NumbersLimit) throw new TaskDataException($"countdown: max_numbers must be <= {NumbersLimit} for format={Format} (search cost), got {MaxNumbers}");
        if (MaxNumber < 1) throw new TaskDataException($"countdown: max_number must be >= 1, got {MaxNumber}");
        if (MaxNumber > CountdownTask.MaxValue) throw new TaskDataException($"countdown: max_number must be <= {CountdownTask.MaxValue}, got {MaxNumber}");
        if (MaxTarget < MinTarget) throw new TaskDataException($"countdown: max_target ({MaxTarget}) must be >= min_target ({MinTarget})");
    }
}

/// <summary>
/// Countdown: reach a target from given numbers with + − × ÷, each number used once. Two forms:
/// <list type="bullet">
/// <item><c>format=expression</c> (default): prompt "use 3 3 8 8 to make 24:", a completion is one expression
/// such as "8/(3-8/3)" (numbers used at most once, fractions allowed in between; <see cref="CountdownVerifier"/>).
/// The target is never one of the given numbers.</item>
/// <item><c>format=steps</c>: prompt "84 9 14 28>73:" (the numbers, '>', the target, ':'; every character is in
/// <c>CharTokenizer.ForArithmetic</c>), a completion is the n−1 equations "84-9=75;28/14=2;75-2=73" then the
/// end token, in integer arithmetic (<see cref="CountdownStepVerifier"/>, which also gives the verdicts
/// format, unavailable, arithmetic, wrong_target and correct). Numbers are uniform in 1..99 and the target
/// in 10..100, redrawn together until the problem has a solution; the worked solution (the SFT target) is
/// drawn uniformly from all of its solutions, by the example's seed and index.</item>
/// </list>
/// Problems whose target is one of <see cref="UnseenTargets"/> are never trained on (held-out group
/// "unseen_targets"; Qin et al. likewise hold out 10% of the targets). Data["numbers"] holds the numbers.
/// </summary>
public sealed class CountdownTask : ITask, IProblemFileTask
{
    public const string NumbersKey = "numbers";
    public const string UnseenTargetsGroup = "unseen_targets";

    /// <summary>Largest number a problem file may give, and the largest value a step may produce (9 digits).</summary>
    public const long MaxValue = 999_999_999;

    /// <summary>Targets never trained on: 9 of the 91 targets 10..100 (about 10%), spread over the range, chosen once and fixed.</summary>
    public static readonly IReadOnlySet<long> UnseenTargets = new SortedSet<long> { 13, 24, 37, 42, 58, 61, 76, 89, 95 };

    /// <summary>Draws per example before the options count as unsolvable.</summary>
    const int MaxDraws = 10_000;

    public CountdownOptions Options { get; }

    public CountdownTask(CountdownOptions? options = null)
    {
        Options = options ?? new CountdownOptions();
        Options.Validate();
    }

    public string Name => "countdown";
    public long? Count => null;

    public TaskExample Generate(long seed, long index)
    {
        var rng = TaskRandom.For(seed, index);
        return Options.IsSteps ? GenerateSteps(rng) : GenerateExpression(rng);
    }

    TaskExample GenerateExpression(Random rng)
    {
        for (int draw = 0; draw < 1000; draw++)
        {
            var numbers = DrawNumbers(rng);
            // A few targets per draw of numbers: most targets in range are reachable with 3-4 numbers.
            for (int attempt = 0; attempt < 8; attempt++)
            {
                long target = rng.Next(Options.MinTarget, Options.MaxTarget + 1);
                if (Array.IndexOf(numbers, target) >= 0) continue;
                var solution = CountdownSolver.Solve(numbers, target);
                if (solution is not null) return ExpressionExample(numbers, target, solution);
            }
        }
        throw Unsolvable();
    }

    TaskExample GenerateSteps(Random rng)
    {
        for (int draw = 0; draw < MaxDraws; draw++)
        {
            var numbers = DrawNumbers(rng);
            long target = rng.Next(Options.MinTarget, Options.MaxTarget + 1);
            var solutions = CountdownStepSolver.Solutions(numbers, target);
            if (solutions.Count > 0) return StepsExample(numbers, target, solutions[rng.Next(solutions.Count)]);
        }
        throw Unsolvable();
    }

    long[] DrawNumbers(Random rng)
    {
        int count = rng.Next(Options.MinNumbers, Options.MaxNumbers + 1);
        var numbers = new long[count];
        for (int i = 0; i < count; i++) numbers[i] = rng.Next(1, Options.MaxNumber + 1);
        return numbers;
    }

    TaskDataException Unsolvable() =>
        new($"countdown: no solvable problem found in {(Options.IsSteps ? MaxDraws : 1000)} draws with {Options}; widen the target range or the numbers");

    static string List(IReadOnlyList<long> numbers) => string.Join(" ", numbers.Select(n => n.ToString(CultureInfo.InvariantCulture)));

    static TaskExample ExpressionExample(IReadOnlyList<long> numbers, long target, string? solution)
    {
        var t = target.ToString(CultureInfo.InvariantCulture);
        return new TaskExample($"use {List(numbers)} to make {t}:", t, solution, new Dictionary<string, string> { [NumbersKey] = List(numbers) });
    }

    static TaskExample StepsExample(IReadOnlyList<long> numbers, long target, string? solution) =>
        new(CountdownStepPrompt.Format(numbers, target), target.ToString(CultureInfo.InvariantCulture), solution,
            new Dictionary<string, string> { [NumbersKey] = List(numbers) });

    /// <summary>
    /// The example of a given problem in this task's form; its worked solution is drawn by <paramref name="rng"/>
    /// among all solutions (step form), or is the solver's (expression form); null when it has none.
    /// </summary>
    public TaskExample Example(IReadOnlyList<long> numbers, long target, Random rng)
    {
        if (!Options.IsSteps) return ExpressionExample(numbers, target, CountdownSolver.Solve(numbers, target));
        var solutions = CountdownStepSolver.Solutions(numbers, target);
        return StepsExample(numbers, target, solutions.Count == 0 ? null : solutions[rng.Next(solutions.Count)]);
    }

    /// <summary>Reads a problem-file line <c>{"numbers":[84,9,14,28],"target":73}</c>.</summary>
    public TaskExample FromJson(System.Text.Json.JsonElement line, string where, Random rng)
    {
        var numbers = ProblemFile.IntegerArray(line, "numbers", where, 0, MaxValue);
        if (numbers.Length < 2 || numbers.Length > Options.NumbersLimit)
            throw new TaskDataException($"{where}: \"numbers\" must hold 2 to {Options.NumbersLimit} numbers for format={Options.Format}, got {numbers.Length}");
        long target = ProblemFile.Integer(line, "target", where, 0, MaxValue);
        return Example(numbers, target, rng);
    }

    /// <summary>The given numbers of an example (from Data["numbers"]).</summary>
    public static long[] Numbers(TaskExample example)
    {
        if (example.Data is null || !example.Data.TryGetValue(NumbersKey, out var list))
            throw new TaskDataException("countdown example has no \"numbers\" data");
        return list.Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(s => long.Parse(s, CultureInfo.InvariantCulture)).ToArray();
    }

    static long Target(TaskExample example) =>
        long.TryParse(example.Answer, NumberStyles.Integer, CultureInfo.InvariantCulture, out long target) ? target
            : throw new TaskDataException($"countdown example \"{example.Prompt}\" has a target that is not an integer: \"{example.Answer}\"");

    public double Reward(TaskExample example, string completion) =>
        Options.IsSteps
            ? (Verdict(example, completion) == CountdownStepVerifier.Correct ? 1.0 : 0.0)
            : (CountdownVerifier.Check(Numbers(example), Target(example), completion) == CountdownVerdict.Correct ? 1.0 : 0.0);

    /// <summary>The sorted numbers and the target: the order the numbers are listed in does not make another problem.</summary>
    public string ProblemKey(TaskExample example) => $"{List(Numbers(example).Order().ToArray())}>{example.Answer}";

    public string? HeldOutGroup(TaskExample example) => UnseenTargets.Contains(Target(example)) ? UnseenTargetsGroup : null;
    public IReadOnlyList<string> HeldOutGroups => [UnseenTargetsGroup];

    public IReadOnlyList<string> Verdicts => Options.IsSteps ? CountdownStepVerifier.Verdicts : [];

    public string? Verdict(TaskExample example, string completion) =>
        Options.IsSteps ? CountdownStepVerifier.Check(Numbers(example), Target(example), completion) : null;
}
