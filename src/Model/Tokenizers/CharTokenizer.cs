using System.Globalization;
using System.Text;

namespace ArcherIlgpu.Model.Tokenizers;

/// <summary>
/// One token per character of a fixed alphabet, for tasks whose text is small and known (arithmetic,
/// sorting, ...). Id 0 is the end-of-text token and decodes to nothing; the alphabet's characters follow
/// in order, so <c>alphabet[i]</c> has id <c>i + 1</c>.
/// </summary>
public sealed class CharTokenizer : ITokenizer
{
    public const string NameValue = "char";

    // Lookup by UTF-16 code unit; -1 marks characters outside the alphabet. Sized to the largest
    // alphabet character, so an ASCII alphabet costs 128 entries.
    private readonly int[] _idOfChar;

    /// <param name="alphabet">Distinct characters in id order. Surrogate halves are refused: a token is one
    /// whole UTF-16 character, so that decoding any id sequence gives valid text.</param>
    public CharTokenizer(string alphabet)
    {
        ArgumentNullException.ThrowIfNull(alphabet);
        if (alphabet.Length == 0) throw new ArgumentException("The alphabet of a char tokenizer cannot be empty.", nameof(alphabet));
        int max = 0;
        foreach (char c in alphabet) max = Math.Max(max, c);
        _idOfChar = new int[max + 1];
        Array.Fill(_idOfChar, -1);
        for (int i = 0; i < alphabet.Length; i++)
        {
            char c = alphabet[i];
            if (char.IsSurrogate(c))
                throw new ArgumentException($"The alphabet has a surrogate half {Describe(c)} at position {i}; only whole characters of the Basic Multilingual Plane can be tokens.", nameof(alphabet));
            if (_idOfChar[c] >= 0)
                throw new ArgumentException($"The alphabet lists {Describe(c)} twice (positions {_idOfChar[c] - 1} and {i}).", nameof(alphabet));
            _idOfChar[c] = i + 1;
        }
        Alphabet = alphabet;
    }

    public string Alphabet { get; }
    public int VocabSize => Alphabet.Length + 1;
    public int EndOfText => 0;
    public string Name => NameValue;

    /// <summary>
    /// The alphabet for the arithmetic tasks: digits, a space and a newline, the operators <c>+ - * / = % ^</c>,
    /// brackets <c>( )</c>, <c>#</c> (answer marker), the punctuation <c>. , : ; ? ! &lt; &gt;</c> and the lowercase
    /// letters a–z for words in prompts ("what is 3+4?"). 57 ids with end-of-text. The order is fixed forever: ids
    /// are baked into trained weights (a saved tokenizer stores its alphabet, but code that calls this factory must keep getting the same ids).
    /// </summary>
    public static CharTokenizer ForArithmetic() => new(ArithmeticAlphabet);

    public const string ArithmeticAlphabet = "0123456789 \n+-*/=%^()#.,:;?!<>abcdefghijklmnopqrstuvwxyz";

    public IReadOnlyList<int> Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new int[text.Length];
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            int id = c < _idOfChar.Length ? _idOfChar[c] : -1;
            if (id < 0)
                throw new ArgumentException(
                    $"Character {Describe(c)} at position {i} of the text is not in the char tokenizer's alphabet \"{Escape(Alphabet)}\".", nameof(text));
            ids[i] = id;
        }
        return ids;
    }

    /// <summary>End-of-text ids decode to nothing; an id outside [0, VocabSize) is an error.</summary>
    public string Decode(IEnumerable<int> ids)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var sb = new StringBuilder();
        int position = 0;
        foreach (int id in ids)
        {
            if ((uint)id >= (uint)VocabSize)
                throw new ArgumentException($"Token id {id} at position {position} is outside the char tokenizer's vocabulary [0, {VocabSize}).", nameof(ids));
            if (id != EndOfText) sb.Append(Alphabet[id - 1]);
            position++;
        }
        return sb.ToString();
    }

    private static string Describe(char c) =>
        $"'{Escape(c.ToString())}' (U+{((int)c).ToString("X4", CultureInfo.InvariantCulture)})";

    private static string Escape(string s) => s.Replace("\\", "\\\\").Replace("\n", "\\n").Replace("\r", "\\r").Replace("\t", "\\t");
}
