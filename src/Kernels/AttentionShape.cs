namespace ArcherIlgpu.Kernels;

/// <summary>
/// The argument checks of <see cref="Backend"/>'s grouped-query attention ops, run once in the public op:
/// the shape, then each buffer's length (a short one would be read past its end on a GPU, silently, and
/// be an IndexOutOfRange deep in a loop on the CPU).
/// </summary>
static class AttentionShape
{
    /// <summary>Throws unless B, T, H, Hkv, D are positive and the query heads split evenly over the key/value heads.</summary>
    public static void Check(string op, int B, int T, int H, int Hkv, int D)
    {
        if (B <= 0 || T <= 0 || H <= 0 || Hkv <= 0 || D <= 0)
            throw new ArgumentException($"{op}: B, T, H, Hkv, D must be positive; got B={B} T={T} H={H} Hkv={Hkv} D={D}");
        if (H % Hkv != 0)
            throw new ArgumentException($"{op}: the {H} query heads must split evenly over the {Hkv} key/value heads (H % Hkv == 0)");
    }

    public static void CheckForward(Buf<float> qkv, int B, int T, int H, int Hkv, int D, Buf<float> output, Buf<float> logSumExp) =>
        CheckForward("AttentionForward", qkv, B, T, H, Hkv, D, output, logSumExp);

    static void CheckForward(string op, Buf<float> qkv, int B, int T, int H, int Hkv, int D, Buf<float> output, Buf<float> logSumExp)
    {
        Check(op, B, T, H, Hkv, D);
        Require(op, nameof(qkv), qkv, (long)B * T * (H + 2 * Hkv) * D);
        Require(op, nameof(output), output, (long)B * T * H * D);
        Require(op, nameof(logSumExp), logSumExp, (long)B * H * T);
    }

    public static void CheckBackward(Buf<float> dOutput, Buf<float> qkv, Buf<float> output, Buf<float> logSumExp,
        int B, int T, int H, int Hkv, int D, Buf<float> dQkv)
    {
        const string op = "AttentionBackward";
        CheckForward(op, qkv, B, T, H, Hkv, D, output, logSumExp);
        Require(op, nameof(dOutput), dOutput, (long)B * T * H * D);
        Require(op, nameof(dQkv), dQkv, (long)B * T * (H + 2 * Hkv) * D);
    }

    public static void CheckKvCacheWrite(Buf<float> qkv, int B, int T, int H, int Hkv, int D, int maxT, Buf<float> kCache, Buf<float> vCache)
    {
        const string op = "KvCacheWrite";
        Check(op, B, T, H, Hkv, D);
        if (T > maxT) throw new ArgumentException($"{op}: T={T} exceeds the cache length maxT={maxT}");
        Require(op, nameof(qkv), qkv, (long)B * T * (H + 2 * Hkv) * D);
        Require(op, nameof(kCache), kCache, (long)B * Hkv * maxT * D);
        Require(op, nameof(vCache), vCache, (long)B * Hkv * maxT * D);
    }

    public static void CheckDecode(Buf<float> qkv, Buf<int> positions, int B, int H, int Hkv, int D, int maxT,
        Buf<float> kCache, Buf<float> vCache, Buf<float> output)
    {
        const string op = "AttentionDecode";
        Check(op, B, 1, H, Hkv, D);
        if (maxT <= 0) throw new ArgumentException($"{op}: maxT must be positive; got {maxT}");
        Require(op, nameof(qkv), qkv, (long)B * (H + 2 * Hkv) * D);
        Require(op, nameof(positions), positions, B);
        Require(op, nameof(kCache), kCache, (long)B * Hkv * maxT * D);
        Require(op, nameof(vCache), vCache, (long)B * Hkv * maxT * D);
        Require(op, nameof(output), output, (long)B * H * D);
    }

    static void Require<T>(string op, string name, Buf<T> buf, long elements) where T : unmanaged
    {
        if (buf.Length < elements)
            throw new ArgumentException($"{op}: {name} holds {buf.Length} elements, the shape needs {elements}");
    }
}
