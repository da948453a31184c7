using System.Text;

namespace ArcherIlgpu.Model.Tokenizers;

/// <summary>
/// Unicode normalization for tokenizers whose file asks for it (Qwen2 and Qwen3: NFC), by <see cref="string.Normalize()"/>.
/// That needs ICU: with <c>InvariantGlobalization</c> on (as this repository's builds set it), .NET returns text other
/// than ASCII unchanged. Then text is tokenized as it is, which is exact for text already in the form (almost all
/// text: keyboards, the web and the datasets produce NFC) and differs from Hugging Face only where NFC would compose
/// or reorder characters (a letter followed by a combining accent, conjoining Hangul jamo, compatibility ideographs).
/// </summary>
internal static class UnicodeNormalization
{
    /// <summary>Whether this runtime really normalizes (it composes "e" + U+0301 into U+00E9).</summary>
    public static readonly bool IsAvailable = Probe();

    public const string UnavailableReason =
        "Unicode normalization needs ICU; this runtime runs with InvariantGlobalization, where string.Normalize leaves non-ASCII text unchanged.";

    public static string Normalize(string text, NormalizationForm form) =>
        IsAvailable && !IsTriviallyInvariant(text) ? text.Normalize(form) : text;

    /// <summary>ASCII is the same in every normalization form (NFD and NFKD already split Latin-1 letters).</summary>
    public static bool IsTriviallyInvariant(string text) => !text.AsSpan().ContainsAnyExceptInRange('\0', '\u007F');

    private static bool Probe()
    {
        try
        {
            return "e\u0301".Normalize(NormalizationForm.FormC) == "\u00E9";
        }
        catch (PlatformNotSupportedException)
        {
            return false;
        }
    }
}
