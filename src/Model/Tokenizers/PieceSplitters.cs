using System.Globalization;
using System.Text;

namespace ArcherIlgpu.Model.Tokenizers;

/// <summary>One stage of a pre-tokenizer: cuts a piece of text into smaller pieces that BPE never merges across.</summary>
internal interface IPieceSplitter
{
    /// <summary>Appends the pieces of <c>text[start..end)</c>, in order and covering it, as (start, length) in <paramref name="text"/>.</summary>
    void Split(string text, int start, int end, List<(int Start, int Length)> pieces);
}

/// <summary>ByteLevel with <c>use_regex: true</c>: GPT-2's pattern, by our code-point scanner.</summary>
internal sealed class Gpt2PatternSplitter : IPieceSplitter
{
    public static readonly Gpt2PatternSplitter Instance = new();

    public void Split(string text, int start, int end, List<(int Start, int Length)> pieces) =>
        Gpt2PreTokenizer.Split(text, start, end, (s, n) => pieces.Add((s, n)));
}

/// <summary>Hugging Face's <c>Digits</c>: numeric characters (Rust's <c>char::is_numeric</c>: categories Nd, Nl, No) are
/// cut out of the text, one piece each with <c>individual_digits</c>, else one piece per run.</summary>
internal sealed class DigitsSplitter(bool individualDigits) : IPieceSplitter
{
    public bool IndividualDigits { get; } = individualDigits;

    public void Split(string text, int start, int end, List<(int Start, int Length)> pieces)
    {
        int pieceStart = start;
        bool pieceIsDigits = false;
        for (int i = start; i < end;)
        {
            Rune.DecodeFromUtf16(text.AsSpan(i, end - i), out Rune rune, out int width);
            bool digit = IsNumeric(rune);
            bool cut = i > pieceStart && (digit != pieceIsDigits || (digit && IndividualDigits));
            if (cut)
            {
                pieces.Add((pieceStart, i - pieceStart));
                pieceStart = i;
            }
            pieceIsDigits = digit;
            i += width;
        }
        if (end > pieceStart) pieces.Add((pieceStart, end - pieceStart));
    }

    private static bool IsNumeric(Rune r) => Rune.GetUnicodeCategory(r) is
        UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber;
}
