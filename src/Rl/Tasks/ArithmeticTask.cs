using System.Globalization;
using System.Numerics;

namespace ArcherIlgpu.Rl.Tasks;

/// <summary>Options of <see cref="ArithmeticTask"/>.</summary>
/// <param name="MinDigits">Fewest digits of an operand (default 1).</param>
/// <param name="MaxDigits">Most digits of an operand (default 3).</param>
/// <param name="Operators">Operators to draw from, any of "+-*/" (default "+-*"). Division problems are built
/// as (b·q)/b so the answer is an integer.</param>
/// <param name="AllowNegative">If false, subtraction puts the larger operand first (default true).</param>
public sealed record ArithmeticOptions(int MinDigits = 1, int MaxDigits = 3, string Operators = "+-*", bool AllowNegative = true)
{
    public void Validate()
    {
        if (MinDigits < 1) throw new TaskDataException($"arithmetic: min_digits must be >= 1, got {MinDigits}");
        if (MaxDigits < MinDigits) throw new TaskDataException($"arithmetic: max_digits ({MaxDigits}) must be >= min_digits ({MinDigits})");
        if (MaxDigits > 18) throw new TaskDataException($"arithmetic: max_digits must be <= 18, got {MaxDigits}");
        if (Operators.Length == 0) throw new TaskDataException("arithmetic: operators must not be empty");
        foreach (char c in Operators)
            if ("+-*/".IndexOf(c) < 0) throw new TaskDataException($"arithmetic: unknown operator '{c}' in \"{Operators}\"; valid: + - * /");
    }
}

/// <summary>
/// Seeded multi-digit arithmetic: prompt "123*45=", answer "5535", solution "5535". The reward is 1 when the
/// final answer extracted by <see cref="AnswerExtractor"/> equals the exact result.
/// </summary>
public sealed class ArithmeticTask : ITask
{
    public ArithmeticOptions Options { get; }

    public ArithmeticTask(ArithmeticOptions? options = null)
    {
        Options = options ?? new ArithmeticOptions();
        Options.Validate();
    }

    public string Name => "arithmetic";
    public long? Count => null;

    public TaskExample Generate(long seed, long index)
    {
        var rng = TaskRandom.For(seed, index);
        char op = Options.Operators[rng.Next(Options.Operators.Length)];
        BigInteger a = Operand(rng), b = Operand(rng);
        BigInteger result;
        switch (op)
        {
            case '+': result = a + b; break;
            case '-':
                if (!Options.AllowNegative && a < b) (a, b) = (b, a);
                result = a - b;
                break;
            case '*': result = a * b; break;
            default:
                if (b.IsZero) b = BigInteger.One;
                result = a;             // quotient
                a = a * b;              // dividend
                break;
        }
        var prompt = $"{a.ToString(CultureInfo.InvariantCulture)}{op}{b.ToString(CultureInfo.InvariantCulture)}=";
        var answer = result.ToString(CultureInfo.InvariantCulture);
        return new TaskExample(prompt, answer, answer);
    }

    BigInteger Operand(Random rng)
    {
        int digits = rng.Next(Options.MinDigits, Options.MaxDigits + 1);
        long lo = digits == 1 ? 0 : Pow10(digits - 1);
        long hi = Pow10(digits);
        return rng.NextInt64(lo, hi);
    }

    static long Pow10(int k) { long p = 1; for (int i = 0; i < k; i++) p *= 10; return p; }

    public double Reward(TaskExample example, string completion) =>
        AnswerExtractor.Matches(AnswerExtractor.Extract(completion), example.Answer) ? 1.0 : 0.0;
}
