using System.IO.Compression;
using System.Text;
using ArcherIlgpu.Model.Tests.IO;
using ArcherIlgpu.Model.Tokenizers;
using Xunit;

namespace ArcherIlgpu.Model.Tests.Tokenizers;

/// <summary>
/// UnicodeNormalizer against the Unicode Consortium's conformance file NormalizationTest.txt (Unicode 15.0, from the
/// same release as the tables; TestData/unicode/NormalizationTest.txt.gz), which was produced by the Consortium's
/// reference implementation, not by this code.
/// </summary>
public class UnicodeNormalizerTests
{
    private static readonly Lazy<(List<string[]> Lines, HashSet<int> Part1)> Conformance = new(ReadConformance);

    private static (List<string[]>, HashSet<int>) ReadConformance()
    {
        string path = Path.Combine(TestFiles.DataDir, "unicode", "NormalizationTest.txt.gz");
        using var reader = new StreamReader(new GZipStream(File.OpenRead(path), CompressionMode.Decompress), Encoding.UTF8);
        var lines = new List<string[]>();
        var part1 = new HashSet<int>();
        string part = "";
        for (string? line = reader.ReadLine(); line != null; line = reader.ReadLine())
        {
            if (line.StartsWith('@')) { part = line.Split(' ')[0]; continue; }
            int hash = line.IndexOf('#');
            string data = (hash >= 0 ? line[..hash] : line).Trim();
            if (data.Length == 0) continue;
            string[] columns = data.Split(';')[..5].Select(Decode).ToArray();
            lines.Add(columns);
            if (part == "@Part1") part1.Add(char.ConvertToUtf32(columns[0], 0));
        }
        return (lines, part1);
    }

    private static string Decode(string column) =>
        string.Concat(column.Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(h => char.ConvertFromUtf32(Convert.ToInt32(h, 16))));

    private static string Nfc(string s) => UnicodeNormalizer.Normalize(s, NormalizationForm.FormC);
    private static string Nfd(string s) => UnicodeNormalizer.Normalize(s, NormalizationForm.FormD);
    private static string Nfkc(string s) => UnicodeNormalizer.Normalize(s, NormalizationForm.FormKC);
    private static string Nfkd(string s) => UnicodeNormalizer.Normalize(s, NormalizationForm.FormKD);

    private static string Hex(string s) => string.Join(' ', EnumerateCodePoints(s).Select(c => c.ToString("X4")));

    private static IEnumerable<int> EnumerateCodePoints(string s)
    {
        for (int i = 0; i < s.Length; i += char.IsSurrogatePair(s, i) ? 2 : 1) yield return char.ConvertToUtf32(s, i);
    }

    /// <summary>Part 0 to 3: the five invariants of the file's header for every line; every failure is listed.</summary>
    [Fact]
    public void ConformanceFile_AllLinesHoldTheInvariants()
    {
        var (lines, _) = Conformance.Value;
        Assert.True(lines.Count > 19_000, $"only {lines.Count} lines read");
        var failures = new List<string>();
        void Check(string expected, string actual, string what, string[] c)
        {
            if (expected != actual && failures.Count < 20)
                failures.Add($"{what} of [{string.Join("; ", c.Select(Hex))}]: expected {Hex(expected)}, got {Hex(actual)}");
        }
        foreach (string[] c in lines)
        {
            for (int k = 0; k < 3; k++) Check(c[1], Nfc(c[k]), $"NFC(c{k + 1})", c);
            for (int k = 3; k < 5; k++) Check(c[3], Nfc(c[k]), $"NFC(c{k + 1})", c);
            for (int k = 0; k < 3; k++) Check(c[2], Nfd(c[k]), $"NFD(c{k + 1})", c);
            for (int k = 3; k < 5; k++) Check(c[4], Nfd(c[k]), $"NFD(c{k + 1})", c);
            for (int k = 0; k < 5; k++) Check(c[3], Nfkc(c[k]), $"NFKC(c{k + 1})", c);
            for (int k = 0; k < 5; k++) Check(c[4], Nfkd(c[k]), $"NFKD(c{k + 1})", c);
        }
        Assert.True(failures.Count == 0, string.Join('\n', failures));
    }

    /// <summary>Part 1's rule for every other code point: each form leaves it unchanged. The file says "assigned"; an
    /// unassigned code point has no mapping and class 0, so the rule holds for it too and is checked as well.</summary>
    [Fact]
    public void ConformanceFile_CodePointsNotInPart1AreUnchanged()
    {
        var (_, part1) = Conformance.Value;
        Assert.True(part1.Count > 10_000, $"only {part1.Count} Part 1 code points");
        var failures = new List<string>();
        for (int cp = 0; cp <= 0x10FFFF; cp++)
        {
            if (cp is >= 0xD800 and <= 0xDFFF || part1.Contains(cp)) continue;
            string x = char.ConvertFromUtf32(cp);
            if ((Nfc(x) != x || Nfd(x) != x || Nfkc(x) != x || Nfkd(x) != x) && failures.Count < 20) failures.Add(cp.ToString("X4"));
        }
        Assert.True(failures.Count == 0, "changed: " + string.Join(' ', failures));
    }

    [Fact]
    public void AlreadyNormalizedText_IsReturnedAsTheSameInstance()
    {
        foreach (string s in new[] { "plain ASCII", "café naïve", "日本語 한국어 Привет 😀𠀀" })
            Assert.Same(s, Nfc(s));
        string ascii = "abc";
        Assert.Same(ascii, Nfkd(ascii));
    }

    // Hand-worked cases (Unicode chapter 3.11-3.12): U+00E9 = e + U+0301; U+D55C (HAN) = jamo 1112 1161 11AB;
    // dot below (class 220) sorts before dot above (230); U+FB01 (fi ligature) is a compatibility mapping only;
    // U+1F600 is astral and unchanged.
    [Theory]
    [InlineData("e\u0301", NormalizationForm.FormC, "\u00e9")]
    [InlineData("\u00e9", NormalizationForm.FormD, "e\u0301")]
    [InlineData("\u1112\u1161\u11ab", NormalizationForm.FormC, "\ud55c")]
    [InlineData("\ud55c", NormalizationForm.FormD, "\u1112\u1161\u11ab")]
    [InlineData("q\u0307\u0323", NormalizationForm.FormD, "q\u0323\u0307")]
    [InlineData("\ufb01", NormalizationForm.FormC, "\ufb01")]
    [InlineData("\ufb01", NormalizationForm.FormKC, "fi")]
    [InlineData("a\U0001F600e\u0301", NormalizationForm.FormC, "a\U0001F600\u00e9")]
    public void HandWorkedCases(string input, NormalizationForm form, string expected) =>
        Assert.Equal(expected, UnicodeNormalizer.Normalize(input, form));

    /// <summary>An unpaired surrogate (not valid Unicode; string.Normalize would throw) is kept, and what follows is
    /// still normalized. Not an InlineData: xUnit's serializer may not carry a lone surrogate intact.</summary>
    [Fact]
    public void LoneSurrogate_IsKept()
    {
        Assert.Equal("\ud800\u00e9", Nfc("\ud800e\u0301"));
        Assert.Equal("x\udc00e\u0301", Nfd("x\udc00\u00e9"));
    }
}
