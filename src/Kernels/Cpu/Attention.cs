namespace ArcherIlgpu.Kernels;

// TODO(owner of Attention): replace these placeholders with the real Attention ops.
public sealed partial class CpuBackend
{
    public override void AttentionForward(Buf<float> qkv, int B, int T, int C, int H,
        Buf<float> output, Buf<float> logSumExp)
        => throw new NotImplementedException("Attention is not implemented on Cpu yet");

    public override void AttentionBackward(Buf<float> dOutput, Buf<float> qkv, Buf<float> output,
        Buf<float> logSumExp, int B, int T, int C, int H, Buf<float> dQkv)
        => throw new NotImplementedException("Attention is not implemented on Cpu yet");

    public override void KvCacheWrite(Buf<float> qkv, int B, int T, int C, int H, int maxT,
        Buf<float> kCache, Buf<float> vCache)
        => throw new NotImplementedException("Attention is not implemented on Cpu yet");

    public override void AttentionDecode(Buf<float> qkv, Buf<int> positions, int B, int C, int H, int maxT,
        Buf<float> kCache, Buf<float> vCache, Buf<float> output)
        => throw new NotImplementedException("Attention is not implemented on Cpu yet");
}
