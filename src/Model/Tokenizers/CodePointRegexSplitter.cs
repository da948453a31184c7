using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace ArcherIlgpu.Model.Tokenizers;

/// <summary>
/// Hugging Face's <c>Split</c> pre-tokenizer with behavior <c>Isolated</c>: every match of the pattern is a piece, and
/// so is every stretch of text between matches. Hugging Face runs the pattern with Oniguruma over code points;
/// .NET's Regex sees UTF-16 code units, so a character outside the Basic Multilingual Plane is two "characters"
/// of category Cs and <c>\p{L}</c> does not match it (with the Qwen2 pattern <c>"😀abc"</c> splits as
/// <c>"😀" "abc"</c> instead of one piece, and <c>"a𠀀b"</c> as three pieces instead of one). So before matching, each
/// such character is replaced by one BMP stand-in of the same Unicode general category, and the matches are
/// mapped back to the original text. That is exact for patterns that test characters by category
/// (<c>\p{L}</c>, <c>\p{N}</c>, <c>\p{P}</c>, ...), by <c>\s</c> (no astral character is white space) or by BMP
/// literals and ranges that leave the stand-ins out (see <see cref="StandIns"/>; GPT-2's, Qwen2's and Llama 3's
/// patterns only use categories, <c>\s</c>, <c>\r</c>, <c>\n</c> and ASCII).
/// </summary>
internal sealed class CodePointRegexSplitter : IPieceSplitter
{
    private readonly Regex _regex;

    public CodePointRegexSplitter(string pattern)
    {
        // No timeout: the patterns are the model's own and every one in use matches in linear time.
        _regex = new Regex(pattern, RegexOptions.CultureInvariant | RegexOptions.Compiled);
        Pattern = pattern;
    }

    public string Pattern { get; }

    /// <summary>Appends the pieces of <c>text[start..end)</c> as (start, length) in <paramref name="text"/>.</summary>
    public void Split(string text, int start, int end, List<(int Start, int Length)> pieces)
    {
        string piece = text.Substring(start, end - start);
        if (piece.AsSpan().IndexOfAnyInRange('\uD800', '\uDFFF') < 0)
        {
            SplitMatches(piece, (s, n) => pieces.Add((start + s, n)));
            return;
        }
        var (proxy, origin) = WithStandIns(piece);
        SplitMatches(proxy, (s, n) => pieces.Add((start + origin[s], origin[s + n] - origin[s])));
    }

    /// <summary>Matches, and the gaps between them, in order. Empty matches are dropped: they would be empty pieces.</summary>
    private void SplitMatches(string s, Action<int, int> piece)
    {
        int last = 0;
        for (Match m = _regex.Match(s); m.Success; m = m.NextMatch())
        {
            if (m.Length == 0) continue;
            if (m.Index > last) piece(last, m.Index - last);
            piece(m.Index, m.Length);
            last = m.Index + m.Length;
        }
        if (last < s.Length) piece(last, s.Length - last);
    }

    /// <summary>The text with each surrogate pair replaced by its category's stand-in, and for each position of that
    /// text (plus its end) the position in the original.</summary>
    internal static (string Proxy, int[] Origin) WithStandIns(string text)
    {
        var proxy = new StringBuilder(text.Length);
        var origin = new List<int>(text.Length + 1);
        for (int i = 0; i < text.Length;)
        {
            origin.Add(i);
            if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                proxy.Append(StandIn(Rune.GetUnicodeCategory(new Rune(text[i], text[i + 1]))));
                i += 2;
            }
            else
            {
                // A lone surrogate is encoded (and so tokenized) as U+FFFD, a symbol.
                proxy.Append(char.IsSurrogate(text[i]) ? '\uFFFD' : text[i]);
                i++;
            }
        }
        origin.Add(text.Length);
        return (proxy.ToString(), origin.ToArray());
    }

    internal static char StandIn(UnicodeCategory category) => StandIns[(int)category];

    /// <summary>One BMP character per general category, picked from blocks that tokenizer patterns do not name
    /// (Cyrillic Extended-B, Yi, Vai, Runic, Coptic, Supplemental Punctuation, ...), none of them white space and none
    /// with an ASCII case partner. Categories that have no astral characters (Zs, Zl, Zp, Cc, Cs) keep a same-category
    /// character anyway so the table is total.</summary>
    internal static readonly char[] StandIns = BuildStandIns();

    private static char[] BuildStandIns()
    {
        var table = new char[30];
        void Set(UnicodeCategory c, char ch) => table[(int)c] = ch;
        Set(UnicodeCategory.UppercaseLetter, '\uA640');        // CYRILLIC CAPITAL LETTER ZEMLYA
        Set(UnicodeCategory.LowercaseLetter, '\uA641');        // CYRILLIC SMALL LETTER ZEMLYA
        Set(UnicodeCategory.TitlecaseLetter, '\u01C5');        // LATIN CAPITAL LETTER D WITH SMALL LETTER Z WITH CARON
        Set(UnicodeCategory.ModifierLetter, '\uA717');         // MODIFIER LETTER DOT VERTICAL BAR
        Set(UnicodeCategory.OtherLetter, '\uA000');            // YI SYLLABLE IT
        Set(UnicodeCategory.NonSpacingMark, '\u20D0');         // COMBINING LEFT HARPOON ABOVE
        Set(UnicodeCategory.SpacingCombiningMark, '\u1B04');   // BALINESE SIGN BISAH
        Set(UnicodeCategory.EnclosingMark, '\u20DD');          // COMBINING ENCLOSING CIRCLE
        Set(UnicodeCategory.DecimalDigitNumber, '\uA620');     // VAI DIGIT ZERO
        Set(UnicodeCategory.LetterNumber, '\u16EE');           // RUNIC ARLAUG SYMBOL
        Set(UnicodeCategory.OtherNumber, '\u2CFD');            // COPTIC FRACTION ONE HALF
        Set(UnicodeCategory.SpaceSeparator, '\u2007');         // FIGURE SPACE
        Set(UnicodeCategory.LineSeparator, '\u2028');
        Set(UnicodeCategory.ParagraphSeparator, '\u2029');
        Set(UnicodeCategory.Control, '\u0080');
        Set(UnicodeCategory.Format, '\u2064');                 // INVISIBLE PLUS
        Set(UnicodeCategory.Surrogate, '\uFFFD');              // never used: pairs are decoded first
        Set(UnicodeCategory.PrivateUse, '\uE000');
        Set(UnicodeCategory.ConnectorPunctuation, '\u2040');   // CHARACTER TIE
        Set(UnicodeCategory.DashPunctuation, '\u2E1A');        // HYPHEN WITH DIAERESIS
        Set(UnicodeCategory.OpenPunctuation, '\u2E22');        // TOP LEFT HALF BRACKET
        Set(UnicodeCategory.ClosePunctuation, '\u2E23');       // TOP RIGHT HALF BRACKET
        Set(UnicodeCategory.InitialQuotePunctuation, '\u2E1C'); // LEFT LOW PARAPHRASE BRACKET
        Set(UnicodeCategory.FinalQuotePunctuation, '\u2E1D');  // RIGHT LOW PARAPHRASE BRACKET
        Set(UnicodeCategory.OtherPunctuation, '\u2E2E');       // REVERSED QUESTION MARK
        Set(UnicodeCategory.MathSymbol, '\u2A00');             // N-ARY CIRCLED DOT OPERATOR
        Set(UnicodeCategory.CurrencySymbol, '\u20A0');         // EURO-CURRENCY SIGN
        Set(UnicodeCategory.ModifierSymbol, '\uA720');         // MODIFIER LETTER STRESS AND HIGH TONE
        Set(UnicodeCategory.OtherSymbol, '\u2B00');            // NORTH EAST WHITE ARROW
        Set(UnicodeCategory.OtherNotAssigned, '\u0378');       // unassigned (Greek block)
        return table;
    }
}
