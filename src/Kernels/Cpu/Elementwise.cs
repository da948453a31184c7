namespace ArcherIlgpu.Kernels;

// TODO(owner of Elementwise): replace these placeholders with the real Elementwise ops.
public sealed partial class CpuBackend
{
    public override void GeluForward(Buf<float> input, int n, Buf<float> output)
        => throw new NotImplementedException("Elementwise is not implemented on Cpu yet");

    public override void GeluBackward(Buf<float> dOutput, Buf<float> input, int n, Buf<float> dInput)
        => throw new NotImplementedException("Elementwise is not implemented on Cpu yet");

    public override void ResidualForward(Buf<float> a, Buf<float> b, int n, Buf<float> output)
        => throw new NotImplementedException("Elementwise is not implemented on Cpu yet");

    public override void ResidualBackward(Buf<float> dOutput, int n, Buf<float> dA, Buf<float> dB)
        => throw new NotImplementedException("Elementwise is not implemented on Cpu yet");
}
