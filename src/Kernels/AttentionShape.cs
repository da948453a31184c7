namespace ArcherIlgpu.Kernels;

/// <summary>The argument checks every backend's grouped-query attention shares, so all throw the same message.</summary>
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
}
