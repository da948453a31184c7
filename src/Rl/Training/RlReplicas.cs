using ArcherIlgpu.Kernels;
using ArcherIlgpu.Model;
using ArcherIlgpu.Model.Training;
using ArcherIlgpu.Rl.Algorithms;
using ArcherIlgpu.Rl.Losses;

namespace ArcherIlgpu.Rl.Training;

/// <summary>
/// This process's place among the replicas of a data-parallel RL run (<c>mpirun -np N archer train-rl</c>) and
/// the agreements a step needs so that its update is the one a single process makes over the same global batch.
/// <list type="bullet">
/// <item>Every rank draws the same prompts; rank r generates, scores and trains on prompts [r·P/N, (r+1)·P/N) of
/// each generation batch, so a group is whole on one rank. A sample's RNG stream is its global row id, so the
/// rollouts do not depend on N.</item>
/// <item>What decides the batch is shared: the group filter's keep flags (hence DAPO's refill loop and the trim to
/// the batch size), the kept groups' global order (mini-batches are cut from it), a mini-batch's rows over all
/// ranks and, for the token-mean loss, its valid tokens over all ranks (the loss's divisors).</item>
/// <item>Gradients and loss statistics are summed in rank order before the identical AdamW step (the gradient
/// norm for clipping is that of the summed gradient); the step's metrics are reduced at its end.</item>
/// </list>
/// Not coordinated, hence refused: an entropy quantile over the whole batch (80/20's classification).
/// </summary>
public sealed class RlReplicas
{
    readonly IStepReduction reduction;

    public RlReplicas(int rank, int size, IStepReduction reduction)
    {
        if (size < 1 || rank < 0 || rank >= size) throw new ArgumentOutOfRangeException(nameof(rank), rank, $"rank must be in [0, {size}) with size >= 1");
        Rank = rank; Size = size;
        this.reduction = reduction;
    }

    public int Rank { get; }
    public int Size { get; }

    /// <summary>Throws (one line) when <paramref name="config"/> cannot be trained data-parallel over <see cref="Size"/> ranks.</summary>
    public void RequireSplittable(AlgorithmConfig config)
    {
        if (config.TrainBatchPrompts < Size)
            throw new ArgumentException($"prompts_per_step {config.TrainBatchPrompts} is smaller than the {Size} ranks: each rank needs at least one whole prompt group per step (raise --prompts-per-step or use fewer ranks)");
        if (config.Classification == EntropyClassification.Batch)
            throw new ArgumentException($"algorithm \"{config.Name}\" classifies tokens by one entropy quantile over the whole batch, which data-parallel train-rl does not coordinate: run it in one process");
    }

    /// <summary>This rank's prompts [From, To) of a generation batch of <paramref name="prompts"/> prompts (contiguous, in rank order).</summary>
    public (int From, int To) ShareOf(int prompts)
    {
        if (prompts < Size) throw new ArgumentException($"{prompts} prompts cannot give each of {Size} ranks a whole prompt group");
        return (Rank * prompts / Size, (Rank + 1) * prompts / Size);
    }

    /// <summary>The flags of all <paramref name="total"/> prompts, from each rank's flags of its share (this rank's start at <paramref name="from"/>).</summary>
    public bool[] AllFlags(ReadOnlySpan<bool> local, int from, int total)
    {
        var mine = new double[total];
        for (int i = 0; i < local.Length; i++) mine[from + i] = local[i] ? 1 : 0;
        var all = SumEach(mine);   // every slot is set by exactly one rank
        return all.Select(v => v > 0).ToArray();
    }

    public GroupFilterCounts Sum(GroupFilterCounts c)
    {
        var s = SumEach([c.SolveNone, c.SolveAll, c.Kept]);
        return new GroupFilterCounts((int)s[0], (int)s[1], (int)s[2]);
    }

    public double Sum(double local) => reduction.Sum(local);

    /// <summary>Replaces the policy's gradients by their sum over the ranks, in rank order.</summary>
    public void SumGradients(CausalLm policy) => reduction.SumGradients(policy);

    /// <summary>
    /// One mini-batch's loss statistics (<see cref="PolicyLossStats"/> slots) over all ranks: the loss terms are
    /// already divided by the global divisors, so they and the token counts add up; the PPO KL is a token mean,
    /// so it is weighted by each rank's valid tokens.
    /// </summary>
    public PolicyLossResult SumLossStatistics(ReadOnlySpan<float> stats)
    {
        var local = new double[stats.Length];
        for (int i = 0; i < stats.Length; i++) local[i] = stats[i];
        local[PolicyLossStats.PpoKl] *= local[PolicyLossStats.MaskSum];
        var sum = SumEach(local);
        double tokens = sum[PolicyLossStats.MaskSum];
        sum[PolicyLossStats.PpoKl] = tokens > 0 ? sum[PolicyLossStats.PpoKl] / tokens : 0;
        return DeviceAlgorithmLoss.ToResult(sum.Select(v => (float)v).ToArray());
    }

    /// <summary>The elementwise sum of every rank's <paramref name="local"/>, added in rank order.</summary>
    double[] SumEach(ReadOnlySpan<double> local)
    {
        var all = reduction.Gather(local);
        var sum = all.AsSpan(0, local.Length).ToArray();
        for (int r = 1; r < Size; r++)
            for (int i = 0; i < sum.Length; i++) sum[i] += all[r * local.Length + i];
        return sum;
    }

    // ================================================================ metrics

    /// <summary>How a step metric of the ranks becomes the run's.</summary>
    enum Combine { AlreadyGlobal, Sum, Max, Min, MeanOverGenerated, MeanOverKept, MeanOverTokens, MeanOverHighTokens, MeanOverLowTokens }

    /// <summary>
    /// Replaces this rank's step metrics by the run's: means over this rank's rollouts or tokens become means
    /// over all ranks' (weighted by their counts), maxima and minima are taken over ranks, token counts and
    /// throughputs are summed, times are the slowest rank's. The batch counts, the loss statistics and the
    /// optimizer's numbers are global already.
    /// </summary>
    /// <param name="generated">this rank's rollouts generated in the step; <paramref name="kept"/>: of them, kept.</param>
    public void ReduceMetrics(IDictionary<string, double> m, int generated, int kept)
    {
        var keys = m.Keys.Order(StringComparer.Ordinal).ToArray();
        // The ranks must agree on the names before the values are laid side by side.
        var names = reduction.Gather([keys.Length, NamesHash(keys)]);
        for (int r = 1; r < Size; r++)
            if (names[2 * r] != names[0] || names[2 * r + 1] != names[1])
                throw new InvalidOperationException($"rank {r} reports other step metrics than rank 0 ({names[2 * r]} vs {names[0]} names)");

        int width = keys.Length + 2;
        var local = new double[width];
        local[0] = generated; local[1] = kept;
        for (int k = 0; k < keys.Length; k++) local[k + 2] = m[keys[k]];
        var all = reduction.Gather(local);
        double At(int rank, string key) => all[rank * width + 2 + Array.IndexOf(keys, key)];
        double Weight(int rank, Combine c) => c switch
        {
            Combine.MeanOverGenerated => all[rank * width],
            Combine.MeanOverKept => all[rank * width + 1],
            Combine.MeanOverTokens => At(rank, "batch/valid_tokens"),
            Combine.MeanOverHighTokens => At(rank, "batch/valid_tokens") * At(rank, "entropy/high_share"),
            _ => At(rank, "batch/valid_tokens") * (1 - At(rank, "entropy/high_share")),
        };
        foreach (var key in keys)
        {
            var c = CombineOf(key);
            var values = Enumerable.Range(0, Size).Select(r => At(r, key)).ToArray();
            m[key] = c switch
            {
                Combine.AlreadyGlobal => values[0],
                Combine.Sum => values.Sum(),
                Combine.Max => values.Max(),
                Combine.Min => values.Min(),
                _ => WeightedMean(values, Enumerable.Range(0, Size).Select(r => Weight(r, c)).ToArray()),
            };
        }
    }

    static Combine CombineOf(string key) => key switch
    {
        "reward/mean" or "reward/score_mean" or "response_length/mean" or "response_length/clip_ratio" or "text/repetition_ratio" => Combine.MeanOverGenerated,
        _ when key.StartsWith("verdict/", StringComparison.Ordinal) => Combine.MeanOverGenerated,
        "reward/kept_mean" => Combine.MeanOverKept,
        "entropy/all" or "entropy/high_share" or "rollout/logprob_diff_mean" => Combine.MeanOverTokens,
        "entropy/high" => Combine.MeanOverHighTokens,
        "entropy/low" => Combine.MeanOverLowTokens,
        "response_length/max" or "rollout/logprob_diff_max" or "ratio/first_max_abs_log_ratio" => Combine.Max,
        _ when key.StartsWith("time/", StringComparison.Ordinal) => Combine.Max,
        "response_length/min" => Combine.Min,
        "batch/valid_tokens" => Combine.Sum,
        _ when key.StartsWith("perf/", StringComparison.Ordinal) => Combine.Sum,
        _ => Combine.AlreadyGlobal,
    };

    /// <summary>Σ w·v / Σ w over the ranks with weight; rank 0's value when none has any (the metric's own empty value).</summary>
    static double WeightedMean(double[] values, double[] weights)
    {
        double sum = 0, weight = 0;
        for (int r = 0; r < values.Length; r++)
            if (weights[r] > 0) { sum += weights[r] * values[r]; weight += weights[r]; }
        return weight > 0 ? sum / weight : values[0];
    }

    /// <summary>FNV-1a over the names (string.GetHashCode differs between processes).</summary>
    static double NamesHash(string[] keys)
    {
        uint h = 2166136261;
        foreach (var key in keys)
            foreach (char ch in key + "\n") { h ^= ch; h *= 16777619; }
        return h;
    }
}
