using System.Buffers;
using System.Globalization;
using System.Text;

namespace ArcherIlgpu.Model.Tokenizers;

/// <summary>
/// Splits text into the pieces GPT-2 runs BPE on, exactly as OpenAI's pattern
/// <c>'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+</c> does under Python's
/// <c>regex</c> module. It is a hand-written scanner over Unicode scalar values rather than a .NET Regex:
/// .NET's regex sees UTF-16 code units, so a letter outside the Basic Multilingual Plane (a surrogate pair,
/// e.g. CJK Extension B) would fall into the "other" class and the pieces, hence the ids, would differ.
/// Lone surrogates are read as U+FFFD, the character UTF-8 encoding turns them into.
/// </summary>
internal static class Gpt2PreTokenizer
{
    internal enum CharClass { Letter, Number, Space, Other }

    /// <summary>Calls <paramref name="piece"/> with (start, length) of each piece of <c>text[start..end)</c>, in order.</summary>
    public static void Split(string text, int start, int end, Action<int, int> piece)
    {
        int i = start;
        while (i < end)
        {
            int length = PieceLength(text, i, end);
            piece(i, length);
            i += length;
        }
    }

    public static List<string> Split(string text)
    {
        var pieces = new List<string>();
        Split(text, 0, text.Length, (s, n) => pieces.Add(text.Substring(s, n)));
        return pieces;
    }

    private static int PieceLength(string text, int i, int end)
    {
        int contraction = ContractionLength(text, i, end);
        if (contraction > 0) return contraction;

        // " ?X+" alternatives: a single U+0020 may lead a run of letters, numbers or other symbols.
        int runStart = i;
        if (text[i] == ' ' && i + 1 < end && ClassAt(text, i + 1, end, out _) != CharClass.Space)
            runStart = i + 1;
        CharClass cls = ClassAt(text, runStart, end, out int width);
        if (cls != CharClass.Space)
        {
            int j = runStart + width;
            while (j < end && ClassAt(text, j, end, out int w) == cls) j += w;
            return j - i;
        }
        return WhitespaceLength(text, i, end);
    }

    /// <summary>"\s+(?!\S)" then "\s+": a whitespace run keeps its last character for the next piece when a
    /// non-space follows (so " word" keeps its leading space), and takes everything at the end of the text.</summary>
    private static int WhitespaceLength(string text, int i, int end)
    {
        int j = i;
        // White_Space characters are all in the Basic Multilingual Plane: one UTF-16 unit each.
        while (j < end && IsWhiteSpace(text[j])) j++;
        if (j == end) return j - i;
        return j - i >= 2 ? j - i - 1 : 1;
    }

    private static int ContractionLength(string text, int i, int end)
    {
        if (text[i] != '\'' || i + 1 >= end) return 0;
        char a = text[i + 1];
        if (a is 's' or 't' or 'm' or 'd') return 2;
        if (i + 2 < end)
        {
            char b = text[i + 2];
            if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
        }
        return 0;
    }

    internal static CharClass ClassAt(string text, int i, int end, out int width)
    {
        char c = text[i];
        if (c < 0x80)
        {
            width = 1;
            if (c is >= 'a' and <= 'z' or >= 'A' and <= 'Z') return CharClass.Letter;
            if (c is >= '0' and <= '9') return CharClass.Number;
            return IsWhiteSpace(c) ? CharClass.Space : CharClass.Other;
        }
        Rune rune;
        if (Rune.DecodeFromUtf16(text.AsSpan(i, end - i), out rune, out width) != OperationStatus.Done)
            rune = Rune.ReplacementChar; // width is 1 here: the lone surrogate is consumed on its own
        return Classify(rune);
    }

    internal static CharClass Classify(Rune rune)
    {
        if (rune.Value <= 0xFFFF && IsWhiteSpace((char)rune.Value)) return CharClass.Space;
        switch (Rune.GetUnicodeCategory(rune))
        {
            case UnicodeCategory.UppercaseLetter:
            case UnicodeCategory.LowercaseLetter:
            case UnicodeCategory.TitlecaseLetter:
            case UnicodeCategory.ModifierLetter:
            case UnicodeCategory.OtherLetter:
                return CharClass.Letter;
            case UnicodeCategory.DecimalDigitNumber:
            case UnicodeCategory.LetterNumber:
            case UnicodeCategory.OtherNumber:
                return CharClass.Number;
            default:
                return CharClass.Other;
        }
    }

    /// <summary>The Unicode White_Space property, which is what <c>\s</c> means in Python's <c>regex</c> module
    /// (and in tiktoken's Rust regex). Listed explicitly so it cannot drift with the runtime's tables.</summary>
    internal static bool IsWhiteSpace(char c) => c switch
    {
        >= '\t' and <= '\r' => true,
        ' ' or '\u0085' or '\u00A0' or '\u1680' => true,
        >= '\u2000' and <= '\u200A' => true,
        '\u2028' or '\u2029' or '\u202F' or '\u205F' or '\u3000' => true,
        _ => false,
    };
}
