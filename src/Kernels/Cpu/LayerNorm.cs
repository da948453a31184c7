namespace ArcherIlgpu.Kernels;

// TODO(owner of LayerNorm): replace these placeholders with the real LayerNorm ops.
public sealed partial class CpuBackend
{
    public override void LayerNormForward(Buf<float> input, Buf<float> weight, Buf<float> bias,
        int N, int C, float eps, Buf<float> output, Buf<float> mean, Buf<float> rstd)
        => throw new NotImplementedException("LayerNorm is not implemented on Cpu yet");

    public override void LayerNormBackward(Buf<float> dOutput, Buf<float> input, Buf<float> weight,
        Buf<float> mean, Buf<float> rstd, int N, int C,
        Buf<float> dInput, Buf<float> dWeight, Buf<float> dBias)
        => throw new NotImplementedException("LayerNorm is not implemented on Cpu yet");
}
