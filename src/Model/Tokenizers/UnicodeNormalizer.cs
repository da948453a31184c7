using System.Buffers;
using System.Globalization;
using System.Text;

namespace ArcherIlgpu.Model.Tokenizers;

/// <summary>
/// Unicode normalization (UAX #15: NFC, NFD, NFKC, NFKD) in managed code from <see cref="UnicodeNormalizationTables"/>
/// (Unicode <see cref="UnicodeNormalizationTables.UnicodeVersion"/>), so the result never depends on ICU or on
/// <c>InvariantGlobalization</c>. Text that the Quick_Check properties prove normalized (ASCII, and almost all real
/// text for NFC) is returned as the same instance without allocating. Otherwise: full decomposition (canonical, or
/// compatibility for the K forms; Hangul syllables by arithmetic), canonical ordering by combining class, and for
/// the C forms canonical composition of primary composites. Unpaired surrogates are kept as they are (class 0, no
/// mapping), where .NET's <see cref="string.Normalize()"/> would throw.
/// </summary>
public static class UnicodeNormalizer
{
    // Hangul syllable arithmetic (Unicode chapter 3.12).
    private const int SBase = 0xAC00, LBase = 0x1100, VBase = 0x1161, TBase = 0x11A7;
    private const int LCount = 19, VCount = 21, TCount = 28, NCount = VCount * TCount, SCount = LCount * NCount;

    // Bits of a code point's property word above its combining class (low 8 bits).
    private const int NfcNo = 1 << 8, NfcMaybe = 1 << 9, NfkcNo = 1 << 10, NfkcMaybe = 1 << 11, NfdNo = 1 << 12, NfkdNo = 1 << 13;

    private static readonly Data Tables = new();

    /// <summary>The text in the given form; the same instance when it already is in that form.</summary>
    public static string Normalize(string text, NormalizationForm form)
    {
        ArgumentNullException.ThrowIfNull(text);
        (bool compose, bool compat) = Mode(form);
        if (IsNormalizedQuick(text, form)) return text;
        return Tables.Normalize(text, compose, compat);
    }

    /// <summary>Whether the text is in the given form (Quick_Check, then a full comparison where it says Maybe).</summary>
    public static bool IsNormalized(string text, NormalizationForm form)
    {
        ArgumentNullException.ThrowIfNull(text);
        (bool compose, bool compat) = Mode(form);
        return IsNormalizedQuick(text, form) || Tables.Normalize(text, compose, compat) == text;
    }

    /// <summary>The canonical combining class of a code point (0 for starters and unassigned code points).</summary>
    public static int CombiningClass(int codePoint) => Tables.Properties(codePoint) & 0xFF;

    private static (bool Compose, bool Compat) Mode(NormalizationForm form) => form switch
    {
        NormalizationForm.FormC => (true, false),
        NormalizationForm.FormD => (false, false),
        NormalizationForm.FormKC => (true, true),
        NormalizationForm.FormKD => (false, true),
        _ => throw new ArgumentOutOfRangeException(nameof(form), form, "not a Unicode normalization form"),
    };

    /// <summary>UAX #15's Quick_Check with Maybe treated as "not proven": true only when the text surely is in the form.</summary>
    private static bool IsNormalizedQuick(string text, NormalizationForm form)
    {
        // Below U+0300 every code point is a starter and only Latin-1 has compatibility mappings (U+00A0, ...).
        int safeBelow = form is NormalizationForm.FormC ? 0x300 : form is NormalizationForm.FormD ? 0xC0 : 0xA0;
        int fail = form switch
        {
            NormalizationForm.FormC => NfcNo | NfcMaybe,
            NormalizationForm.FormD => NfdNo,
            NormalizationForm.FormKC => NfkcNo | NfkcMaybe,
            _ => NfkdNo,
        };
        int lastClass = 0;
        for (int i = 0; i < text.Length; i++)
        {
            int cp = text[i];
            if (cp < safeBelow) { lastClass = 0; continue; }
            if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
                cp = char.ConvertToUtf32(text[i], text[++i]);
            int p = Tables.Properties(cp);
            int cc = p & 0xFF;
            if ((p & fail) != 0 || (cc != 0 && lastClass > cc)) return false;
            lastClass = cc;
        }
        return true;
    }

    /// <summary>The parsed tables: a two-stage lookup of property words, flat full decompositions and a composition map.</summary>
    private sealed class Data
    {
        private const int BlockShift = 7, BlockSize = 1 << BlockShift, MaxCodePoint = 0x10FFFF;

        private readonly ushort[] _blockOf;          // code point >> BlockShift -> block index
        private readonly ushort[] _blocks;           // block index * BlockSize + low bits -> property word
        private readonly Dictionary<int, (int Start, int Length)> _canonical = [];
        private readonly Dictionary<int, (int Start, int Length)> _compatibility = [];
        private readonly int[] _mappings;
        private readonly Dictionary<long, int> _composites = [];

        public Data()
        {
            var props = new ushort[MaxCodePoint + 1];
            ForEachRange(UnicodeNormalizationTables.CombiningClasses, '=', (lo, hi, v) => Fill(props, lo, hi, int.Parse(v, CultureInfo.InvariantCulture)));
            MarkQuickCheck(props, UnicodeNormalizationTables.NfcQuickCheck, NfcNo, NfcMaybe);
            MarkQuickCheck(props, UnicodeNormalizationTables.NfkcQuickCheck, NfkcNo, NfkcMaybe);
            MarkQuickCheck(props, UnicodeNormalizationTables.NfdQuickCheck, NfdNo, 0);
            MarkQuickCheck(props, UnicodeNormalizationTables.NfkdQuickCheck, NfkdNo, 0);
            (_blockOf, _blocks) = CompressToBlocks(props);

            var oneLevel = new Dictionary<int, (bool Compat, int[] Mapping)>();
            foreach (string token in Tokens(UnicodeNormalizationTables.Decompositions))
            {
                int sep = token.IndexOfAny(['=', '~']);
                oneLevel[Hex(token[..sep])] = (token[sep] == '~', [.. token[(sep + 1)..].Split(',').Select(Hex)]);
            }
            var pool = new List<int>();
            foreach (int cp in oneLevel.Keys.Order())
            {
                if (!oneLevel[cp].Compat) _canonical[cp] = Append(pool, FullDecomposition(oneLevel, cp, compat: false));
                _compatibility[cp] = Append(pool, FullDecomposition(oneLevel, cp, compat: true));
            }
            _mappings = [.. pool];

            foreach (string token in Tokens(UnicodeNormalizationTables.Compositions))
            {
                int plus = token.IndexOf('+'), eq = token.IndexOf('=');
                _composites[PairKey(Hex(token[..plus]), Hex(token[(plus + 1)..eq]))] = Hex(token[(eq + 1)..]);
            }
        }

        public int Properties(int cp) => _blocks[(_blockOf[cp >> BlockShift] << BlockShift) | (cp & (BlockSize - 1))];

        public string Normalize(string text, bool compose, bool compat)
        {
            int[] buffer = ArrayPool<int>.Shared.Rent(text.Length + 16);
            try
            {
                int n = DecomposeAndOrder(text, compat, ref buffer);
                if (compose) n = Compose(buffer, n);
                return ToUtf16(buffer, n);
            }
            finally
            {
                ArrayPool<int>.Shared.Return(buffer);
            }
        }

        /// <summary>Full decomposition into <paramref name="buffer"/> (grown from the pool when needed), each
        /// non-starter moved back past the non-starters of higher class before it (a stable insertion sort).</summary>
        private int DecomposeAndOrder(string text, bool compat, ref int[] buffer)
        {
            Dictionary<int, (int Start, int Length)> map = compat ? _compatibility : _canonical;
            int n = 0;
            for (int i = 0; i < text.Length; i++)
            {
                int cp = text[i];
                if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
                    cp = char.ConvertToUtf32(text[i], text[++i]);
                if (cp - SBase is >= 0 and < SCount)
                {
                    int s = cp - SBase;
                    Push(ref buffer, ref n, LBase + s / NCount);
                    Push(ref buffer, ref n, VBase + s % NCount / TCount);
                    if (s % TCount != 0) Push(ref buffer, ref n, TBase + s % TCount);
                }
                else if (cp >= 0xA0 && map.TryGetValue(cp, out var m))
                {
                    for (int k = 0; k < m.Length; k++) Push(ref buffer, ref n, _mappings[m.Start + k]);
                }
                else
                {
                    Push(ref buffer, ref n, cp);
                }
            }
            return n;
        }

        private void Push(ref int[] buffer, ref int n, int cp)
        {
            if (n == buffer.Length)
            {
                int[] bigger = ArrayPool<int>.Shared.Rent(buffer.Length * 2);
                buffer.AsSpan(0, n).CopyTo(bigger);
                ArrayPool<int>.Shared.Return(buffer);
                buffer = bigger;
            }
            int cc = Properties(cp) & 0xFF;
            int at = n++;
            if (cc != 0)
                while (at > 0 && (Properties(buffer[at - 1]) & 0xFF) > cc) { buffer[at] = buffer[at - 1]; at--; }
            buffer[at] = cp;
        }

        /// <summary>Canonical composition in place: each character joins the last starter when a primary composite exists
        /// and no character between them is blocking (class 0, or a class not below its own).</summary>
        private int Compose(int[] buffer, int n)
        {
            int starterAt = -1, lastClass = 0, write = 0;
            for (int i = 0; i < n; i++)
            {
                int cp = buffer[i];
                int cc = Properties(cp) & 0xFF;
                bool adjacent = starterAt == write - 1;
                if (starterAt >= 0 && (adjacent || (lastClass != 0 && lastClass < cc))
                    && TryCompose(buffer[starterAt], cp, out int composite))
                {
                    buffer[starterAt] = composite;
                    continue;
                }
                if (cc == 0) starterAt = write;
                lastClass = cc;
                buffer[write++] = cp;
            }
            return write;
        }

        private bool TryCompose(int first, int second, out int composite)
        {
            if (first - LBase is >= 0 and < LCount && second - VBase is >= 0 and < VCount)
            {
                composite = SBase + ((first - LBase) * VCount + (second - VBase)) * TCount;
                return true;
            }
            if (first - SBase is >= 0 and < SCount && (first - SBase) % TCount == 0 && second - TBase is > 0 and < TCount)
            {
                composite = first + (second - TBase);
                return true;
            }
            return _composites.TryGetValue(PairKey(first, second), out composite);
        }

        private static string ToUtf16(int[] codePoints, int count)
        {
            int length = count;
            foreach (int cp in codePoints.AsSpan(0, count)) if (cp >= 0x10000) length++;
            return string.Create(length, (codePoints, count), static (chars, state) =>
            {
                int w = 0;
                foreach (int cp in state.codePoints.AsSpan(0, state.count))
                {
                    if (cp >= 0x10000)
                    {
                        chars[w++] = (char)(0xD800 + ((cp - 0x10000) >> 10));
                        chars[w++] = (char)(0xDC00 + ((cp - 0x10000) & 0x3FF));
                    }
                    else
                    {
                        chars[w++] = (char)cp;
                    }
                }
            });
        }

        private static int[] FullDecomposition(Dictionary<int, (bool Compat, int[] Mapping)> oneLevel, int cp, bool compat)
        {
            if (!oneLevel.TryGetValue(cp, out var d) || (d.Compat && !compat)) return [cp];
            return [.. d.Mapping.SelectMany(c => FullDecomposition(oneLevel, c, compat))];
        }

        private static (int Start, int Length) Append(List<int> pool, int[] mapping)
        {
            int start = pool.Count;
            pool.AddRange(mapping);
            return (start, mapping.Length);
        }

        private static void MarkQuickCheck(ushort[] props, string table, int no, int maybe) =>
            ForEachRange(table, ':', (lo, hi, v) => Or(props, lo, hi, v == "N" ? no : maybe));

        private static void Fill(ushort[] props, int lo, int hi, int value)
        {
            for (int cp = lo; cp <= hi; cp++) props[cp] = (ushort)value;
        }

        private static void Or(ushort[] props, int lo, int hi, int bits)
        {
            for (int cp = lo; cp <= hi; cp++) props[cp] |= (ushort)bits;
        }

        /// <summary>Shares identical blocks so the 1.1 M property words take tens of KB.</summary>
        private static (ushort[] BlockOf, ushort[] Blocks) CompressToBlocks(ushort[] props)
        {
            var blockOf = new ushort[props.Length >> BlockShift];
            var blocks = new List<ushort>();
            var seen = new Dictionary<string, ushort>();
            for (int b = 0; b < blockOf.Length; b++)
            {
                ReadOnlySpan<ushort> block = props.AsSpan(b * BlockSize, BlockSize);
                string key = new(System.Runtime.InteropServices.MemoryMarshal.Cast<ushort, char>(block));
                if (!seen.TryGetValue(key, out ushort index))
                {
                    index = checked((ushort)(blocks.Count / BlockSize));
                    seen[key] = index;
                    blocks.AddRange(block);
                }
                blockOf[b] = index;
            }
            return (blockOf, [.. blocks]);
        }

        private static void ForEachRange(string table, char separator, Action<int, int, string> body)
        {
            foreach (string token in Tokens(table))
            {
                int sep = token.IndexOf(separator);
                string range = token[..sep];
                int dots = range.IndexOf("..", StringComparison.Ordinal);
                int lo = Hex(dots < 0 ? range : range[..dots]), hi = dots < 0 ? lo : Hex(range[(dots + 2)..]);
                body(lo, hi, token[(sep + 1)..]);
            }
        }

        private static string[] Tokens(string table) => table.Split((char[])[' ', '\n', '\r', '\t'], StringSplitOptions.RemoveEmptyEntries);

        private static int Hex(string s) => int.Parse(s, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture);

        private static long PairKey(int first, int second) => ((long)first << 21) | (uint)second;
    }
}
