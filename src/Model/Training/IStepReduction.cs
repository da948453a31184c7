namespace ArcherIlgpu.Model.Training;

/// <summary>
/// How the replicas of a data-parallel run agree on a step (see src/Distributed): every sum is over all
/// ranks, in rank order, so every rank gets the same bits and takes the same optimizer step. A
/// single-process run has none.
/// </summary>
public interface IStepReduction
{
    /// <summary>The sum of <paramref name="local"/> over all ranks, in rank order.</summary>
    double Sum(double local);

    /// <summary>Replaces the model's gradients by their sum over all ranks, in rank order.</summary>
    void SumGradients(CausalLm model);

    /// <summary>Every rank's <paramref name="local"/> (the same length on each) laid end to end in rank order, on every rank.</summary>
    double[] Gather(ReadOnlySpan<double> local);
}
