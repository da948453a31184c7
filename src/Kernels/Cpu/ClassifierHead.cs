namespace ArcherIlgpu.Kernels;

// TODO(owner of ClassifierHead): replace these placeholders with the real ClassifierHead ops.
public sealed partial class CpuBackend
{
    public override void CrossEntropyForwardBackward(Buf<float> logits, Buf<int> targets, Buf<float> weights,
        int N, int V, Buf<float> losses, Buf<float> dLogits)
        => throw new NotImplementedException("ClassifierHead is not implemented on Cpu yet");

    public override void TokenLogProbEntropy(Buf<float> logits, Buf<int> tokens, int N, int V, float temperature,
        Buf<float> logProbs, Buf<float> entropies)
        => throw new NotImplementedException("ClassifierHead is not implemented on Cpu yet");

    public override void TokenLogProbBackward(Buf<float> logits, Buf<int> tokens, Buf<float> dLogProbs,
        int N, int V, float temperature, Buf<float> dLogits)
        => throw new NotImplementedException("ClassifierHead is not implemented on Cpu yet");
}
