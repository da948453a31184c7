using System.Globalization;

namespace ArcherIlgpu.Kernels;

/// <summary>
/// A change of RoPE's frequencies for contexts longer than the model was pre-trained on. Only Llama 3.1's
/// "llama3" type exists here: pairs whose wavelength 2π/inv_freq is longer than
/// <c>OriginalMaxT / LowFreqFactor</c> turn <c>Factor</c> times slower, pairs shorter than
/// <c>OriginalMaxT / HighFreqFactor</c> keep their frequency, and the band between blends the two linearly in
/// <c>OriginalMaxT / wavelength</c>. The names in parentheses below are the keys of Hugging Face's rope_scaling.
/// </summary>
/// <param name="Type">rope_type; "llama3" is the only one computed.</param>
/// <param name="Factor">factor: how many times slower the low frequencies turn (8 for Llama 3.1, 32 for 3.2).</param>
/// <param name="LowFreqFactor">low_freq_factor: wavelengths above OriginalMaxT / this are fully scaled.</param>
/// <param name="HighFreqFactor">high_freq_factor: wavelengths below OriginalMaxT / this are untouched.</param>
/// <param name="OriginalMaxT">original_max_position_embeddings: the pre-training context (8192 for Llama 3).</param>
public sealed record RopeScaling(string Type, double Factor, double LowFreqFactor, double HighFreqFactor, int OriginalMaxT)
{
    /// <summary>The rope_type values <see cref="RopeTable"/> computes.</summary>
    public static readonly string[] Types = ["llama3"];

    /// <summary>The first rule the values break, naming the field and its Hugging Face key; null when valid.</summary>
    public string? Problem()
    {
        static string F(double v) => v.ToString("R", CultureInfo.InvariantCulture);
        if (!Types.Contains(Type, StringComparer.Ordinal))
            return $"RopeScaling.Type (rope_scaling.rope_type) '{Type}' is not supported; only {string.Join(", ", Types)} frequency scaling is";
        // transformers warns below 1: a factor under 1 would speed the low frequencies up instead of stretching them.
        if (!double.IsFinite(Factor) || Factor < 1)
            return $"RopeScaling.Factor (rope_scaling.factor) must be a finite number >= 1, got {F(Factor)}";
        if (!double.IsFinite(LowFreqFactor) || LowFreqFactor <= 0)
            return $"RopeScaling.LowFreqFactor (rope_scaling.low_freq_factor) must be a positive finite number, got {F(LowFreqFactor)}";
        // The blend divides by HighFreqFactor - LowFreqFactor.
        if (!double.IsFinite(HighFreqFactor) || HighFreqFactor <= LowFreqFactor)
            return $"RopeScaling.HighFreqFactor (rope_scaling.high_freq_factor) must be finite and greater than LowFreqFactor (low_freq_factor = {F(LowFreqFactor)}), got {F(HighFreqFactor)}";
        if (OriginalMaxT < 1)
            return $"RopeScaling.OriginalMaxT (rope_scaling.original_max_position_embeddings) must be at least 1, got {OriginalMaxT}";
        return null;
    }

    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"{Type}(factor={Factor}, low={LowFreqFactor}, high={HighFreqFactor}, original={OriginalMaxT})");
}

/// <summary>
/// The cos/sin tables of rotary position embedding, built the way Hugging Face's rope does in float32, so a
/// checkpoint's attention sees the angles it was trained with: inv_freq[i] = 1 / theta^((2i) / D) with every
/// step rounded to float32 (then, with a <see cref="RopeScaling"/>, scaled as transformers' llama3 rope does,
/// again step by step in float32), angle = (float)pos · inv_freq[i] in float32, then cos and sin of that
/// float32 angle.
/// </summary>
public static class RopeTable
{
    /// <summary>Tables [maxT, D/2], row p for position p (the model duplicates nothing: RoPE reads column i for both halves).</summary>
    public static (float[] Cos, float[] Sin) Create(int maxT, int D, double theta, RopeScaling? scaling = null)
    {
        if (maxT <= 0) throw new ArgumentOutOfRangeException(nameof(maxT), $"maxT must be positive; got {maxT}");
        int half = D / 2;
        var invFreq = InverseFrequencies(D, theta, scaling);
        var cos = new float[(long)maxT * half];
        var sin = new float[(long)maxT * half];
        for (int p = 0; p < maxT; p++)
            for (int i = 0; i < half; i++)
            {
                float angle = (float)p * invFreq[i];
                // cos/sin of the float32 angle, evaluated in double and rounded once.
                cos[(long)p * half + i] = (float)Math.Cos(angle);
                sin[(long)p * half + i] = (float)Math.Sin(angle);
            }
        return (cos, sin);
    }

    /// <summary>The D/2 float32 inverse frequencies of the table, scaled when <paramref name="scaling"/> is given.</summary>
    public static float[] InverseFrequencies(int D, double theta, RopeScaling? scaling = null)
    {
        if (D <= 0 || D % 2 != 0) throw new ArgumentOutOfRangeException(nameof(D), $"the rotary head size D must be positive and even; got {D}");
        if (!(theta > 0) || double.IsInfinity(theta)) throw new ArgumentOutOfRangeException(nameof(theta), $"rope theta must be a positive finite number; got {theta}");
        if (scaling?.Problem() is string problem) throw new ArgumentOutOfRangeException(nameof(scaling), problem);
        var inv = DefaultInverseFrequencies(D, theta);
        if (scaling is not null) ApplyLlama3Scaling(inv, scaling);
        return inv;
    }

    /// <summary>
    /// 1 / theta^(2i / D) in float32 arithmetic: the exponent is a float32 quotient, theta is taken as a
    /// float32 base, and the power (evaluated in double, rounded once) and the reciprocal are float32.
    /// </summary>
    static float[] DefaultInverseFrequencies(int D, double theta)
    {
        var inv = new float[D / 2];
        float baseF = (float)theta;
        for (int i = 0; i < inv.Length; i++)
        {
            float exponent = (float)(2 * i) / (float)D;
            float power = (float)Math.Pow(baseF, exponent);
            inv[i] = 1f / power;
        }
        return inv;
    }

    /// <summary>
    /// transformers' llama3 rope in the float32 steps torch takes on the CPU, where the table is built: a Python
    /// number meeting a float32 tensor is rounded to float32 first, and <c>number / tensor</c> is
    /// <c>tensor.reciprocal() * number</c>. So wavelength = float(2π) · (1 / inv); pairs with wavelength above
    /// OriginalMaxT / LowFreqFactor get inv / Factor, pairs with wavelength below OriginalMaxT / HighFreqFactor keep
    /// inv, and the pairs between get (1 − s) · inv / Factor + s · inv with
    /// s = (OriginalMaxT · (1 / wavelength) − LowFreqFactor) / (HighFreqFactor − LowFreqFactor).
    /// The two thresholds and HighFreqFactor − LowFreqFactor are Python doubles, rounded to float32 where used.
    /// </summary>
    static void ApplyLlama3Scaling(float[] inv, RopeScaling s)
    {
        float factor = (float)s.Factor, low = (float)s.LowFreqFactor;
        float lowFreqWavelen = (float)(s.OriginalMaxT / s.LowFreqFactor);
        float highFreqWavelen = (float)(s.OriginalMaxT / s.HighFreqFactor);
        float blendSpan = (float)(s.HighFreqFactor - s.LowFreqFactor);
        float twoPi = (float)(2 * Math.PI), oldContext = s.OriginalMaxT;
        for (int i = 0; i < inv.Length; i++)
        {
            float wavelen = 1f / inv[i] * twoPi;
            if (wavelen > lowFreqWavelen)
                inv[i] = inv[i] / factor;
            else if (!(wavelen < highFreqWavelen))
            {
                float smooth = (1f / wavelen * oldContext - low) / blendSpan;
                inv[i] = (1f - smooth) * inv[i] / factor + smooth * inv[i];
            }
        }
    }
}

/// <summary>The argument checks both backends' RoPE share.</summary>
static class RopeShape
{
    /// <summary>Throws unless the sizes are valid and the buffers hold what the op reads.</summary>
    public static void Check(string op, Buf<float> qkv, Buf<int> positions, Buf<float> cos, Buf<float> sin, int N, int H, int Hkv, int D)
    {
        if (N < 0 || H <= 0 || Hkv <= 0 || D <= 0)
            throw new ArgumentException($"{op}: N must be non-negative and H, Hkv, D positive; got N={N} H={H} Hkv={Hkv} D={D}");
        if (D % 2 != 0) throw new ArgumentException($"{op}: rotate-half needs an even head size D; got D={D}");
        int half = D / 2;
        long width = (long)(H + 2 * Hkv) * D;
        if (qkv.Length < N * width) throw new ArgumentException($"{op}: qkv holds {qkv.Length} floats, [N={N}, (H + 2Hkv)·D={width}] needs {N * width}");
        if (positions.Length < N) throw new ArgumentException($"{op}: positions holds {positions.Length} entries, N={N} needed");
        if (cos.Length != sin.Length || cos.Length < half || cos.Length % half != 0)
            throw new ArgumentException($"{op}: cos and sin must both be [maxT, D/2={half}]; got {cos.Length} and {sin.Length} floats");
    }

    /// <summary>The rows of a cos (or sin) table [maxT, D/2] that <see cref="Check"/> accepted: maxT.</summary>
    public static int TableRows(Buf<float> cos, int D) => (int)(cos.Length / (D / 2));
}
