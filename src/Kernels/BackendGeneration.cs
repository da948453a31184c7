using static ArcherIlgpu.Kernels.BufChecks;

namespace ArcherIlgpu.Kernels;

// Device-side generation: the step between one draw and the next decode, so a sampled token never
// visits the host (see Generator.Generate).
public abstract partial class Backend
{
    /// <summary>
    /// Per row b of B, after <see cref="Sample"/>: a running row stores sampled[b] and its log-prob at slot
    /// counts[b] of its output row and advances by <see cref="GenerationMath.Advance"/>; then every row
    /// gets its next decode input (token max(sampled[b], 0) at <see cref="GenerationMath.DecodePosition"/>)
    /// and its next draw's position (<see cref="GenerationMath.SamplePosition"/>).
    /// </summary>
    /// <param name="sampled">[B]</param> <param name="sampledLogProbs">[B]</param>
    /// <param name="endToken">the token that ends a row; &lt; 0: none</param>
    /// <param name="status">[B] in/out, <see cref="GenerationMath"/> codes</param>
    /// <param name="counts">[B] in/out, new tokens so far</param> <param name="lengths">[B] in/out, prompt + new tokens</param>
    /// <param name="outTokens">[B, maxNew] out</param> <param name="outLogProbs">[B, maxNew] out</param>
    /// <param name="nextTokens">[B] out</param> <param name="nextPositions">[B] out</param> <param name="samplePositions">[B] out</param>
    public void RecordSamples(Buf<int> sampled, Buf<float> sampledLogProbs, int B, int maxNew, int maxT, int endToken,
        Buf<int> status, Buf<int> counts, Buf<int> lengths, Buf<int> outTokens, Buf<float> outLogProbs,
        Buf<int> nextTokens, Buf<int> nextPositions, Buf<int> samplePositions)
    {
        if (B < 0 || maxNew < 1 || maxT < 1) throw new ArgumentException($"RecordSamples needs B >= 0, maxNew >= 1 and maxT >= 1, got {B}, {maxNew}, {maxT}");
        RequireElements(sampled, B); RequireElements(sampledLogProbs, B);
        RequireElements(status, B); RequireElements(counts, B); RequireElements(lengths, B);
        RequireElements(nextTokens, B); RequireElements(nextPositions, B); RequireElements(samplePositions, B);
        RequireElements(outTokens, (long)B * maxNew); RequireElements(outLogProbs, (long)B * maxNew);
        if (B == 0) return;
        RecordSamplesCore(sampled, sampledLogProbs, B, maxNew, maxT, endToken, status, counts, lengths, outTokens, outLogProbs,
            nextTokens, nextPositions, samplePositions);
    }

    /// <summary>The backend's <see cref="RecordSamples"/>, arguments already checked.</summary>
    protected abstract void RecordSamplesCore(Buf<int> sampled, Buf<float> sampledLogProbs, int B, int maxNew, int maxT, int endToken,
        Buf<int> status, Buf<int> counts, Buf<int> lengths, Buf<int> outTokens, Buf<float> outLogProbs,
        Buf<int> nextTokens, Buf<int> nextPositions, Buf<int> samplePositions);
}
