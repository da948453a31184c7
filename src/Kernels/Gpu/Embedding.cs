namespace ArcherIlgpu.Kernels;

// TODO(owner of Embedding): replace these placeholders with the real Embedding ops.
public sealed partial class IlgpuBackend
{
    public override void EmbeddingForward(Buf<int> tokens, Buf<int> positions, Buf<float> wte, Buf<float> wpe,
        int N, int C, Buf<float> output)
        => throw new NotImplementedException("Embedding is not implemented on Gpu yet");

    public override void EmbeddingBackward(Buf<float> dOutput, Buf<int> tokens, Buf<int> positions,
        int N, int C, Buf<float> dWte, Buf<float> dWpe)
        => throw new NotImplementedException("Embedding is not implemented on Gpu yet");
}
