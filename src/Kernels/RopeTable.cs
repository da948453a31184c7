namespace ArcherIlgpu.Kernels;

/// <summary>
/// The cos/sin tables of rotary position embedding, built the way Hugging Face's default rope does in
/// float32, so a checkpoint's attention sees the angles it was trained with:
/// inv_freq[i] = 1 / theta^((2i) / D) with every step rounded to float32, angle = (float)pos · inv_freq[i]
/// in float32, then cos and sin of that float32 angle.
/// </summary>
public static class RopeTable
{
    /// <summary>Tables [maxT, D/2], row p for position p (the model duplicates nothing: RoPE reads column i for both halves).</summary>
    public static (float[] Cos, float[] Sin) Create(int maxT, int D, double theta)
    {
        if (maxT <= 0) throw new ArgumentOutOfRangeException(nameof(maxT), $"maxT must be positive; got {maxT}");
        if (D <= 0 || D % 2 != 0) throw new ArgumentOutOfRangeException(nameof(D), $"the rotary head size D must be positive and even; got {D}");
        if (!(theta > 0) || double.IsInfinity(theta)) throw new ArgumentOutOfRangeException(nameof(theta), $"rope theta must be a positive finite number; got {theta}");

        int half = D / 2;
        var invFreq = InverseFrequencies(D, theta);
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

    /// <summary>
    /// 1 / theta^(2i / D) in float32 arithmetic: the exponent is a float32 quotient, theta is taken as a
    /// float32 base, and the power (evaluated in double, rounded once) and the reciprocal are float32.
    /// </summary>
    static float[] InverseFrequencies(int D, double theta)
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
}

/// <summary>The argument checks both backends' RoPE share.</summary>
static class RopeShape
{
    /// <summary>Throws unless the sizes are valid and the buffers hold what the op reads; returns the table rows (maxT).</summary>
    public static int Check(string op, Buf<float> qkv, Buf<int> positions, Buf<float> cos, Buf<float> sin, int N, int H, int Hkv, int D)
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
        return (int)(cos.Length / half);
    }
}
