using System.Text;

namespace ArcherIlgpu.Model.Tokenizers;

/// <summary>
/// Unicode normalization for tokenizers whose file asks for it (Qwen2 and Qwen3: NFC), by the managed
/// <see cref="UnicodeNormalizer"/> rather than <see cref="string.Normalize()"/>: that one needs ICU, and with
/// <c>InvariantGlobalization</c> on (as this repository's builds set it) .NET would return text other than ASCII
/// unchanged. So "e" + U+0301, conjoining Hangul jamo or compatibility ideographs tokenize as Hugging Face does, on
/// every runtime.
/// </summary>
internal static class UnicodeNormalization
{
    public static string Normalize(string text, NormalizationForm form) => UnicodeNormalizer.Normalize(text, form);
}
