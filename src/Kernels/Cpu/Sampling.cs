namespace ArcherIlgpu.Kernels;

// TODO(owner of Sampling): replace these placeholders with the real Sampling ops.
public sealed partial class CpuBackend
{
    public override void Sample(Buf<float> logits, Buf<int> rows, Buf<int> positions, int N, int V,
        float temperature, int topK, float topP, ulong seed, Buf<int> tokens, Buf<float> logProbs)
        => throw new NotImplementedException("Sampling is not implemented on Cpu yet");
}
