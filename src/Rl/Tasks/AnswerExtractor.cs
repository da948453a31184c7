using System.Text.RegularExpressions;

namespace ArcherIlgpu.Rl.Tasks;

/// <summary>
/// Finds the final answer in a completion and compares answers. Formats, in order of precedence:
/// <list type="number">
/// <item><c>#### 42</c> (GSM8K): the rest of the line after the last "####";</item>
/// <item><c>\boxed{42}</c> (also <c>\fbox{}</c>): the last one, braces matched, so <c>\boxed{\frac{1}{2}}</c> works;</item>
/// <item>otherwise the last number in the text: "-12", "1,234", "3.5", ".5", "3/4".</item>
/// </list>
/// Numbers compare exactly as fractions (so "0.5", "1/2" and "\frac{1}{2}" are equal, as are "1,000" and
/// "1000"); anything that is not a number compares as text after removing spaces, dollar signs and a
/// trailing period.
/// </summary>
public static partial class AnswerExtractor
{
    // A minus sign counts only where it cannot be a binary minus (not right after a digit, letter or ')').
    [GeneratedRegex(@"(?:(?<![\w)])[-\u2212])?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)?(?:\.\d+)?(?:/\d+)?")]
    private static partial Regex NumberPattern();

    [GeneratedRegex(@"\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}")]
    private static partial Regex LatexFraction();

    /// <summary>The answer text in <paramref name="completion"/>, or null when there is none.</summary>
    public static string? Extract(string completion)
    {
        if (string.IsNullOrEmpty(completion)) return null;
        int hashes = completion.LastIndexOf("####", StringComparison.Ordinal);
        if (hashes >= 0)
        {
            var rest = completion[(hashes + 4)..];
            int eol = rest.IndexOf('\n');
            var line = (eol >= 0 ? rest[..eol] : rest).Trim();
            if (line.Length > 0) return line;
        }
        var boxed = LastBoxed(completion);
        if (boxed is not null) return boxed.Trim();
        return LastNumber(completion);
    }

    /// <summary>The contents of the last <c>\boxed{...}</c> or <c>\fbox{...}</c>, braces matched; null if none is closed.</summary>
    public static string? LastBoxed(string text)
    {
        int start = Math.Max(text.LastIndexOf("\\boxed{", StringComparison.Ordinal), text.LastIndexOf("\\fbox{", StringComparison.Ordinal));
        if (start < 0) return null;
        int open = text.IndexOf('{', start);
        int depth = 0;
        for (int i = open; i < text.Length; i++)
        {
            if (text[i] == '{') depth++;
            else if (text[i] == '}' && --depth == 0) return text[(open + 1)..i];
        }
        return null;
    }

    /// <summary>The last number in <paramref name="text"/> as written, or null.</summary>
    public static string? LastNumber(string text)
    {
        string? last = null;
        foreach (Match m in NumberPattern().Matches(text))
            if (m.Length > 0 && m.Value.Any(char.IsAsciiDigit)) last = m.Value;
        return last;
    }

    /// <summary>Parses an extracted answer as an exact number, undoing common LaTeX and formatting.</summary>
    public static bool TryParseNumber(string answer, out Rational value)
    {
        var s = Normalize(answer);
        s = LatexFraction().Replace(s, m => $"({m.Groups[1].Value})/({m.Groups[2].Value})");
        s = s.Replace("(", "").Replace(")", "");
        return Rational.TryParse(s, out value);
    }

    /// <summary>True if the extracted answer equals the ground truth (numerically when both are numbers).</summary>
    public static bool Matches(string? extracted, string groundTruth)
    {
        if (extracted is null) return false;
        if (TryParseNumber(extracted, out var a) && TryParseNumber(groundTruth, out var b)) return a == b;
        return Normalize(extracted) == Normalize(groundTruth);
    }

    static string Normalize(string s)
    {
        s = s.Replace("\\left", "").Replace("\\right", "").Replace("\\!", "").Replace("{,}", ",")
             .Replace("\\,", ",").Replace("\\$", "").Replace("$", "").Replace("\\%", "%")
             .Replace("\u2212", "-");
        s = new string(s.Where(c => !char.IsWhiteSpace(c)).ToArray());
        while (s.EndsWith('.')) s = s[..^1];
        // "\text{...}" units and similar decorations are not stripped: exact answers are expected.
        return s;
    }
}
