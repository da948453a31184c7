namespace ArcherIlgpu.Kernels;

// TODO(owner of MatMul): replace these placeholders with the real MatMul ops.
public sealed partial class IlgpuBackend
{
    public override void MatMulForward(Buf<float> input, Buf<float> weight, Buf<float> bias,
        int N, int K, int OC, Buf<float> output)
        => throw new NotImplementedException("MatMul is not implemented on Gpu yet");

    public override void MatMulBackward(Buf<float> dOutput, Buf<float> input, Buf<float> weight,
        int N, int K, int OC, Buf<float> dInput, Buf<float> dWeight, Buf<float> dBias)
        => throw new NotImplementedException("MatMul is not implemented on Gpu yet");
}
