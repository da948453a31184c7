namespace ArcherIlgpu.Kernels;

// TODO(owner of Optimizer): replace these placeholders with the real Optimizer ops.
public sealed partial class CpuBackend
{
    public override void SumOfSquares(Buf<float> grads, Buf<float> normSquared)
        => throw new NotImplementedException("Optimizer is not implemented on Cpu yet");

    public override void AdamW(Buf<float> parameters, Buf<float> grads, Buf<float> m, Buf<float> v,
        Buf<float> normSquared, float maxNorm, float lr, float beta1, float beta2, float eps,
        float weightDecay, int step)
        => throw new NotImplementedException("Optimizer is not implemented on Cpu yet");
}
