using ArcherIlgpu.Model;
using ArcherIlgpu.Model.Gpt2;

namespace ArcherIlgpu.Model.Training;

/// <summary>Supervised fine-tuning settings.</summary>
/// <param name="EvalEvery">evaluate the held-out loss every this many steps (and after the last).</param>
public sealed record SftOptions(int Steps = 200, int BatchSize = 16, int MicroBatches = 1, float Lr = 1e-3f,
    int WarmupSteps = 10, string Schedule = "cosine", AdamWOptions? AdamW = null, int EvalEvery = 50, int Seed = 1)
{
    public SftOptions Validate()
    {
        if (Steps < 0) throw new ArgumentException($"SFT Steps must be >= 0 (0: no training), got {Steps}");
        if (BatchSize < 1) throw new ArgumentException($"SFT BatchSize must be >= 1, got {BatchSize}");
        if (MicroBatches < 1 || MicroBatches > BatchSize) throw new ArgumentException($"SFT MicroBatches must be in [1, BatchSize = {BatchSize}], got {MicroBatches}");
        if (EvalEvery < 1) throw new ArgumentException($"SFT EvalEvery must be >= 1, got {EvalEvery}");
        return this;
    }
}

/// <summary>One line of SFT progress; HeldOutLoss is NaN on steps without evaluation.</summary>
public readonly record struct SftMetrics(int Step, double Loss, double HeldOutLoss, double GradNorm, float Lr, bool Skipped, int SkippedSteps);

/// <summary>
/// Trains on completions only (prompt tokens carry weight 0), shuffling the examples each epoch with
/// a seeded RNG (or in an order the caller gives), and reports the held-out loss (masked mean over all
/// held-out completion tokens). The one SFT loop of the project: train-sft and the demo both use it.
/// </summary>
public sealed class SftTrainer : IDisposable
{
    public ModelTrainer Trainer { get; }
    public SftOptions Options { get; }
    readonly IReadOnlyList<SftExample> train;
    readonly List<TrainingBatch> heldOut;
    readonly int padToken;
    readonly Random rng;
    readonly Func<int, IReadOnlyList<SftExample>>? batchOfStep;
    int[] order;
    int cursor;

    /// <summary>Data-parallel runs: this rank trains on its contiguous share of each step's examples (the others on theirs).</summary>
    public (int Rank, int Size) Shard { get; set; } = (0, 1);

    /// <param name="batchOfStep">the examples of each 0-based step, when the caller owns the order (the demo's
    /// seeded permutation per epoch); null: the examples of <paramref name="train"/> reshuffled each epoch.</param>
    public SftTrainer(CausalLm model, IReadOnlyList<SftExample> train, IReadOnlyList<SftExample> heldOut, int padToken, SftOptions options,
        Func<int, IReadOnlyList<SftExample>>? batchOfStep = null)
    {
        Options = options.Validate();
        if (train.Count == 0) throw new ArgumentException("the SFT training set is empty");
        this.train = train; this.padToken = padToken; this.batchOfStep = batchOfStep;
        this.heldOut = heldOut.Chunk(options.BatchSize).Select(c => SftData.MakeBatch(c, padToken)).ToList();
        // A 0-step run still has a schedule (and an optimizer to save), never used.
        Trainer = new ModelTrainer(model, new LrSchedule(options.Lr, options.WarmupSteps, Math.Max(1, options.Steps), options.Schedule), options.AdamW);
        rng = new Random(options.Seed);
        order = Enumerable.Range(0, train.Count).ToArray();
        rng.Shuffle(order);
    }

    /// <summary>Held-out masked mean loss (NaN without held-out data).</summary>
    public double HeldOutLoss() => Trainer.Evaluate(heldOut);

    /// <summary>
    /// Continues after <paramref name="stepsDone"/> steps of an earlier run with the same data, seed and batch
    /// size (weights and optimizer are restored separately): the example order is replayed up to that step,
    /// which needs no training, only the seeded shuffles, and the schedule continues from there.
    /// </summary>
    public void ResumeAt(int stepsDone)
    {
        if (Trainer.StepsTaken != 0) throw new InvalidOperationException("ResumeAt must come before any training step");
        if (stepsDone < 0 || stepsDone > Options.Steps) throw new ArgumentOutOfRangeException(nameof(stepsDone), stepsDone, $"must be in [0, {Options.Steps}]");
        if (batchOfStep is null)
            for (int s = 0; s < stepsDone; s++) NextExamples(Options.BatchSize);
        Trainer.StepsTaken = stepsDone;
    }

    /// <summary>Runs the remaining steps (all of them, unless <see cref="ResumeAt"/> was called); <paramref name="log"/> sees each one.</summary>
    public List<SftMetrics> Run(Action<SftMetrics>? log = null)
    {
        var history = new List<SftMetrics>();
        for (int s = Trainer.StepsTaken; s < Options.Steps; s++)
        {
            var examples = ShareOf(batchOfStep?.Invoke(s) ?? NextExamples(Options.BatchSize));
            int per = (examples.Count + Options.MicroBatches - 1) / Options.MicroBatches;
            var micro = examples.Chunk(per).Select(c => SftData.MakeBatch(c, padToken)).ToList();
            var r = Trainer.TrainStep(micro);
            bool eval = r.Step % Options.EvalEvery == 0 || s == Options.Steps - 1;
            var m = new SftMetrics(r.Step, r.Loss, eval ? HeldOutLoss() : double.NaN, r.GradNorm, r.Lr, r.Skipped, Trainer.Optimizer.SkippedSteps);
            history.Add(m);
            log?.Invoke(m);
        }
        return history;
    }

    /// <summary>Rank r of N takes examples [r·B/N, (r+1)·B/N): the shares cover the global batch once, in order.</summary>
    IReadOnlyList<SftExample> ShareOf(IReadOnlyList<SftExample> examples)
    {
        if (Shard.Size == 1) return examples;
        int from = Shard.Rank * examples.Count / Shard.Size, to = (Shard.Rank + 1) * examples.Count / Shard.Size;
        if (to == from) throw new ArgumentException($"a step of {examples.Count} examples cannot give each of {Shard.Size} ranks one (raise the batch size)");
        return examples.Skip(from).Take(to - from).ToList();
    }

    List<SftExample> NextExamples(int count)
    {
        var list = new List<SftExample>(count);
        while (list.Count < count)
        {
            if (cursor == order.Length) { rng.Shuffle(order); cursor = 0; }
            list.Add(train[order[cursor++]]);
        }
        return list;
    }

    public void Dispose() => Trainer.Dispose();
}
