
namespace ArcherIlgpu.Model.Training;

/// <summary>One training step's numbers.</summary>
/// <param name="Loss">masked mean cross-entropy over all micro-batches (nats per counted token).</param>
public readonly record struct TrainStepResult(int Step, double Loss, double GradNorm, float Lr, bool Skipped, double Tokens);

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
        if (!(total > 0)) throw new ArgumentException("no position in this step has a non-zero loss weight");

        Model.ZeroGradients();
        double loss = 0;
        foreach (var mb in microBatches) loss += Model.ForwardBackward(mb, total);
        float lr = Schedule.At(StepsTaken);
        var r = Optimizer.Apply(lr);
        StepsTaken++;
        return new TrainStepResult(StepsTaken, loss, r.GradNorm, lr, r.Skipped, total);
    }

    public TrainStepResult TrainStep(TrainingBatch batch) => TrainStep([batch]);

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
