using ArcherIlgpu.Model;
using ArcherIlgpu.Kernels;
using ArcherIlgpu.Model.Gpt2;

namespace ArcherIlgpu.Model.Training;

/// <summary>AdamW hyper-parameters. MaxGradNorm &lt;= 0 disables clipping.</summary>
public sealed record AdamWOptions(float Beta1 = 0.9f, float Beta2 = 0.95f, float Eps = 1e-8f,
    float WeightDecay = 0.1f, float MaxGradNorm = 1.0f)
{
    public AdamWOptions Validate()
    {
        if (!(Beta1 >= 0 && Beta1 < 1)) throw new ArgumentException($"AdamW Beta1 must be in [0, 1), got {Beta1}");
        if (!(Beta2 >= 0 && Beta2 < 1)) throw new ArgumentException($"AdamW Beta2 must be in [0, 1), got {Beta2}");
        if (!(Eps > 0)) throw new ArgumentException($"AdamW Eps must be > 0, got {Eps}");
        if (!(WeightDecay >= 0) || float.IsInfinity(WeightDecay)) throw new ArgumentException($"AdamW WeightDecay must be finite and >= 0, got {WeightDecay}");
        if (float.IsNaN(MaxGradNorm)) throw new ArgumentException("AdamW MaxGradNorm must be a number (<= 0 disables clipping)");
        return this;
    }
}

/// <summary>What one optimizer step did.</summary>
/// <param name="GradNorm">global L2 norm of the gradient before clipping (may be NaN or infinite).</param>
/// <param name="Skipped">true when the norm was not finite and the device left the weights untouched.</param>
public readonly record struct OptimizerStepResult(double GradNorm, bool Skipped);

/// <summary>
/// AdamW over the model's flat buffers with the global gradient norm computed on the device.
/// Weight decay applies to the 2-D matmul weights only (the layout puts them first, so it is one
/// AdamW call with decay over that prefix and one without over the rest); embeddings (tied with
/// the head), biases and LayerNorm parameters are not decayed, as in GPT-2 / nanoGPT practice.
/// The host reads the norm (one scalar download) before the update: a step whose gradient norm is not
/// finite is skipped (and the AdamW kernel would leave the weights untouched too); otherwise the update
/// is enqueued and the bias-correction step count advances.
/// </summary>
public sealed class AdamWOptimizer : IDisposable
{
    readonly CausalLm model;
    readonly Backend be;
    public AdamWOptions Options { get; }
    public DeviceBuffer<float> M { get; }
    public DeviceBuffer<float> V { get; }
    readonly DeviceBuffer<float> normSquared;
    readonly float[] hostNorm = new float[1];

    /// <summary>Steps applied so far (the next step's bias correction uses Step + 1).</summary>
    public int Step { get; set; }
    /// <summary>Steps skipped because the gradient was not finite.</summary>
    public int SkippedSteps { get; set; }

    public AdamWOptimizer(CausalLm model, AdamWOptions? options = null)
    {
        this.model = model; be = model.Backend;
        Options = (options ?? new AdamWOptions()).Validate();
        M = be.Allocate<float>(model.Layout.TotalLength);
        V = be.Allocate<float>(model.Layout.TotalLength);
        normSquared = be.Allocate<float>(1);
    }

    /// <summary>Applies one step with learning rate <paramref name="lr"/> to the accumulated gradients.</summary>
    public OptimizerStepResult Apply(float lr)
    {
        ComputeNormSquared(normSquared.All);
        be.Download(normSquared.All, hostNorm);
        return ApplyWithNorm(lr, normSquared.All, hostNorm[0]);
    }

    /// <summary>
    /// The first half of a step, for callers that download the norm together with other results (the RL
    /// trainer: one download per optimizer step): enqueues slot[0] = Σ g² over the whole gradient.
    /// </summary>
    public void ComputeNormSquared(Buf<float> slot) => be.SumOfSquares(model.Gradients.All, slot);

    /// <summary>
    /// The second half: <paramref name="slot"/> holds Σ g² on the device (for clipping) and
    /// <paramref name="hostNormSquared"/> is its downloaded value. A non-finite norm skips the step (the
    /// weights and moments stay as they are; counted in <see cref="SkippedSteps"/>); otherwise the AdamW
    /// kernels are enqueued and the bias-correction step advances.
    /// </summary>
    public OptimizerStepResult ApplyWithNorm(float lr, Buf<float> slot, float hostNormSquared)
    {
        double norm = Math.Sqrt(hostNormSquared);
        if (!float.IsFinite(hostNormSquared))
        {
            SkippedSteps++;
            return new OptimizerStepResult(norm, Skipped: true);
        }
        var o = Options;
        long decayed = model.Layout.DecayedLength, total = model.Layout.TotalLength;
        int t = Step + 1;
        if (decayed > 0)
            be.AdamW(model.Parameters.All.Slice(0, decayed), model.Gradients.All.Slice(0, decayed), M.All.Slice(0, decayed), V.All.Slice(0, decayed),
                slot, o.MaxGradNorm, lr, o.Beta1, o.Beta2, o.Eps, o.WeightDecay, t);
        if (total > decayed)
            be.AdamW(model.Parameters.All.Slice(decayed, total - decayed), model.Gradients.All.Slice(decayed, total - decayed),
                M.All.Slice(decayed, total - decayed), V.All.Slice(decayed, total - decayed),
                slot, o.MaxGradNorm, lr, o.Beta1, o.Beta2, o.Eps, 0f, t);
        Step++;
        return new OptimizerStepResult(norm, Skipped: false);
    }

    public float[] DownloadM() => be.ToArray(M.All);
    public float[] DownloadV() => be.ToArray(V.All);

    /// <summary>Restores the moments (for resuming from a checkpoint).</summary>
    public void Restore(float[] m, float[] v, int step, int skipped)
    {
        be.Upload(M.All, m); be.Upload(V.All, v);
        Step = step; SkippedSteps = skipped;
    }

    public void Dispose() { M.Dispose(); V.Dispose(); normSquared.Dispose(); }
}
