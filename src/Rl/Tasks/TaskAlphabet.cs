namespace ArcherIlgpu.Rl.Tasks;

/// <summary>
/// The characters that the built-in procedural tasks (arithmetic, countdown) use in prompts, answers
/// and worked solutions, so that a character-level tokenizer with a few dozen symbols can model them:
/// <list type="bullet">
/// <item>digits <c>0-9</c>;</item>
/// <item>operators and punctuation <c>+ - * / = ( ) , . : ; &gt;</c> and <c>#</c> (<c>;</c> and <c>&gt;</c>: Countdown's step form);</item>
/// <item>space and newline;</item>
/// <item>lower-case letters <c>a-z</c> (prompt words such as "use", "make").</item>
/// </list>
/// 53 characters in all, every one in <c>CharTokenizer.ArithmeticAlphabet</c>. A JSONL dataset may contain anything; check it with <see cref="Unsupported"/>.
/// </summary>
public static class TaskAlphabet
{
    public const string Characters = "0123456789+-*/=(),.:;># \nabcdefghijklmnopqrstuvwxyz";

    static readonly bool[] allowed = Build();

    static bool[] Build()
    {
        var a = new bool[128];
        foreach (char c in Characters) a[c] = true;
        return a;
    }

    public static bool Contains(char c) => c < 128 && allowed[c];

    /// <summary>The distinct characters of <paramref name="text"/> that are not in the alphabet, in order of appearance.</summary>
    public static string Unsupported(string text)
    {
        var bad = new List<char>();
        foreach (char c in text) if (!Contains(c) && !bad.Contains(c)) bad.Add(c);
        return new string(bad.ToArray());
    }
}
