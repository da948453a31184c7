namespace ArcherIlgpu.Kernels;

// Placeholders until the family files land; deleted by them.
public sealed partial class IlgpuBackend
{
    public override void TokenEmbeddingForward(Buf<int> tokens, Buf<float> wte, int N, int C, Buf<float> output)
        => throw new NotImplementedException("TokenEmbeddingForward is not written yet");
    public override void TokenEmbeddingBackward(Buf<float> dOutput, Buf<int> tokens, int N, int C, Buf<float> dWte)
        => throw new NotImplementedException("TokenEmbeddingBackward is not written yet");
    public override void RmsNormForward(Buf<float> input, Buf<float> weight, int N, int C, float eps, Buf<float> output, Buf<float> rstd)
        => throw new NotImplementedException("RmsNormForward is not written yet");
    public override void RmsNormBackward(Buf<float> dOutput, Buf<float> input, Buf<float> weight, Buf<float> rstd, int N, int C, Buf<float> dInput, Buf<float> dWeight)
        => throw new NotImplementedException("RmsNormBackward is not written yet");
    public override void QkNormForward(Buf<float> qkv, Buf<float> qWeight, Buf<float> kWeight, int N, int H, int Hkv, int D, float eps, Buf<float> output, Buf<float> rstd)
        => throw new NotImplementedException("QkNormForward is not written yet");
    public override void QkNormBackward(Buf<float> dOutput, Buf<float> qkv, Buf<float> qWeight, Buf<float> kWeight, Buf<float> rstd, int N, int H, int Hkv, int D, Buf<float> dQkv, Buf<float> dQWeight, Buf<float> dKWeight)
        => throw new NotImplementedException("QkNormBackward is not written yet");
    public override void SwiGluForward(Buf<float> gateUp, int N, int I, Buf<float> output)
        => throw new NotImplementedException("SwiGluForward is not written yet");
    public override void SwiGluBackward(Buf<float> dOutput, Buf<float> gateUp, int N, int I, Buf<float> dGateUp)
        => throw new NotImplementedException("SwiGluBackward is not written yet");
}
