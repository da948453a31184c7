
namespace ArcherIlgpu.Model.Training;

/// <summary>One training step's numbers.</summary>
/// <param name="Loss">masked mean cross-entropy over all micro-batches (nats per counted token).</param>
public readonly record struct TrainStepResult(int Step, double Loss, double GradNorm, float Lr, bool Skipped, double Tokens);

/// <summary>
/// Training has diverged: the loss or the gradient norm was not finite for <see cref="ModelTrainer.MaxConsecutiveSkippedSteps"/>
/// steps in a row (or the model's logits are no longer finite). Carrying on would only sample garbage.
/// </summary>
public sealed class TrainingDivergedException(string message) : Exception(message)
{
    /// <summary>The message for <paramref name="count"/> consecutive skipped steps ending at <paramref name="lastStep"/>.</summary>
    public static TrainingDivergedException AfterSkippedSteps(string what, int count, long lastStep, double peakLr) => new(
        $"training stopped: the loss or gradient norm was not finite in {count} consecutive {what} (up to step {lastStep}, " +
        $"peak learning rate {peakLr.ToString("G4", System.Globalization.CultureInfo.InvariantCulture)}); " +
        $"the weights keep their last finite update; {Advice}");

    const string Advice = "lower the learning rate";

    /// <summary>
    /// This message with the advice naming <paramref name="key"/>, the option or config key the user sets the learning
    /// rate with (the trainers know its value, only the command knows its name).
    /// </summary>
    public TrainingDivergedException NamingTheKey(string key) =>
        new(Message.Contains(Advice, StringComparison.Ordinal) ? Message.Replace(Advice, $"{Advice} ({key})", StringComparison.Ordinal) : $"{Message}; {Advice} ({key})");

    /// <summary>Runs <paramref name="training"/>; a divergence in it is rethrown naming <paramref name="key"/> (see <see cref="NamingTheKey(string)"/>).</summary>
    public static T NamingTheKey<T>(string key, Func<T> training)
    {
        try
        {
            return training();
        }
        catch (TrainingDivergedException e)
        {
            throw e.NamingTheKey(key);
        }
    }

    public static void NamingTheKey(string key, Action training) => NamingTheKey(key, () => { training(); return 0; });
}

/// <summary>
/// Supervised steps: zero the gradients, forward+backward every micro-batch with its loss weights
/// scaled by the mask total of the whole step (so the gradient is that of the mean over all counted
/// positions, however the step is split), then one AdamW step.
/// </summary>
public sealed class ModelTrainer : IDisposable
{
    public CausalLm Model { get; }
    public AdamWOptimizer Optimizer { get; }
    public LrSchedule Schedule { get; }
    /// <summary>Optimizer steps attempted (applied + skipped): the schedule's step index.</summary>
    public int StepsTaken { get; set; }

    /// <summary>
    /// A step whose loss or gradient norm is not finite is skipped (the weights are not touched) and counted;
    /// this many in a row stop training with <see cref="TrainingDivergedException"/>: a learning rate far too
    /// high leaves weights whose every later step is NaN, and more steps cannot bring them back.
    /// </summary>
    public const int MaxConsecutiveSkippedSteps = 10;
    int consecutiveSkipped;

    /// <summary>Data-parallel runs: the mask total, the gradients and the loss are summed over the ranks before the step.</summary>
    public IStepReduction? Reduction { get; set; }

    public ModelTrainer(CausalLm model, LrSchedule schedule, AdamWOptions? adamW = null)
    {
        Model = model;
        Schedule = schedule.Validate();
        Optimizer = new AdamWOptimizer(model, adamW);
    }

    public TrainStepResult TrainStep(IReadOnlyList<TrainingBatch> microBatches)
    {
        if (microBatches.Count == 0) throw new ArgumentException("a step needs at least one micro-batch");
        double total = 0;
        foreach (var mb in microBatches) total += mb.WeightSum;
        if (Reduction is not null) total = Reduction.Sum(total);
        if (!(total > 0)) throw new ArgumentException("no position in this step has a non-zero loss weight");

        Model.ZeroGradients();
        double loss = 0;
        foreach (var mb in microBatches) loss += Model.ForwardBackward(mb, total);
        if (Reduction is not null)
        {
            Reduction.SumGradients(Model);
            loss = Reduction.Sum(loss);
        }
        float lr = Schedule.At(StepsTaken);
        var r = SkipOrApply(loss, lr);
        StepsTaken++;
        consecutiveSkipped = r.Skipped ? consecutiveSkipped + 1 : 0;
        if (consecutiveSkipped >= MaxConsecutiveSkippedSteps)
            throw TrainingDivergedException.AfterSkippedSteps("steps", consecutiveSkipped, StepsTaken, Schedule.PeakLr);
        return new TrainStepResult(StepsTaken, loss, r.GradNorm, lr, r.Skipped, total);
    }

    public TrainStepResult TrainStep(TrainingBatch batch) => TrainStep([batch]);

    /// <summary>The optimizer step, unless the loss is not finite (then skipped and counted like a non-finite gradient).</summary>
    OptimizerStepResult SkipOrApply(double loss, float lr)
    {
        if (double.IsFinite(loss)) return Optimizer.Apply(lr);
        Optimizer.SkippedSteps++;
        return new OptimizerStepResult(double.NaN, Skipped: true);
    }

    /// <summary>Masked mean loss over batches without touching gradients.</summary>
    public double Evaluate(IEnumerable<TrainingBatch> batches)
    {
        double sum = 0, weight = 0;
        foreach (var b in batches)
        {
            if (b.WeightSum <= 0) continue;
            var (s, w) = Model.EvaluateLoss(b);
            sum += s; weight += w;
        }
        return weight > 0 ? sum / weight : double.NaN;
    }

    public void Dispose() => Optimizer.Dispose();
}
