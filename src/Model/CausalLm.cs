using ArcherIlgpu.Kernels;
using ArcherIlgpu.Model.Generation;

namespace ArcherIlgpu.Model;

/// <summary>
/// A batch of training sequences: row b predicts Targets[b, t] from Inputs[b, 0..t]. Weights[b, t]
/// is the per-position loss mask (0 for prompt and padding positions, 1 where the loss counts).
/// </summary>
public sealed record TrainingBatch(int B, int T, int[] Inputs, int[] Targets, float[] Weights)
{
    public double WeightSum => Weights.Sum(w => (double)w);

    public TrainingBatch Validate(IModelConfig config)
    {
        int n = B * T;
        if (Inputs.Length != n || Targets.Length != n || Weights.Length != n)
            throw new ArgumentException($"batch arrays must have B*T = {n} elements: inputs {Inputs.Length}, targets {Targets.Length}, weights {Weights.Length}");
        if (T > config.MaxT) throw new ArgumentException($"batch T = {T} exceeds the context length {config.MaxT}");
        for (int i = 0; i < n; i++)
        {
            if ((uint)Inputs[i] >= (uint)config.VocabSize)
                throw new ArgumentException($"input token {Inputs[i]} at row {i / T}, position {i % T} is outside the vocabulary [0, {config.VocabSize})");
            if (Weights[i] != 0 && (uint)Targets[i] >= (uint)config.VocabSize)
                throw new ArgumentException($"target token {Targets[i]} at row {i / T}, position {i % T} is outside the vocabulary [0, {config.VocabSize})");
        }
        return this;
    }
}

/// <summary>
/// The handle of one token-log-prob forward: the activations it filled, its temperature and which forward
/// over them it was. The backward takes it and refuses it once the activations have been overwritten, so a
/// stale backward cannot run on another forward's logits.
/// </summary>
public readonly record struct LogProbPass(Activations Activations, float Temperature, long Version);

/// <summary>
/// A decoder-only language model on one backend, whatever its family (GPT-2, Llama/Qwen). Parameters
/// and gradients are each one flat buffer laid out by <see cref="Layout"/>. A family supplies its
/// forward and backward call lists, its activations and its file format; everything built on top
/// (losses, token log-probs for RL, the trainer, the generator) lives here once.
/// Nothing here allocates or waits for the device inside forward or backward.
/// </summary>
public abstract class CausalLm : IDisposable
{
    public Backend Backend { get; }
    public IModelConfig Config { get; }
    public ParameterTable Layout { get; }
    public DeviceBuffer<float> Parameters { get; }
    /// <summary>The gradient buffer, allocated on first use: a model that is only run forward (a frozen KL reference) never has one.</summary>
    public DeviceBuffer<float> Gradients => gradients ??= Backend.Allocate<float>(Layout.TotalLength);

    DeviceBuffer<float>? gradients;
    Activations? training, inference;
    ActivationArena? trainingArena, inferenceArena;

    protected CausalLm(Backend backend, IModelConfig config, ParameterTable layout, float[] parameters)
    {
        Backend = backend;
        Config = config;
        Layout = layout;
        if (parameters.LongLength != Layout.TotalLength)
            throw new ArgumentException($"expected {Layout.TotalLength} parameters for {config}, got {parameters.LongLength}");
        Parameters = backend.Allocate<float>(Layout.TotalLength);
        backend.Upload(Parameters.All, parameters);
    }

    public long ParameterCount => Layout.TotalLength;

    public float[] DownloadParameters() => Backend.ToArray(Parameters.All);
    public float[] DownloadGradients() => Backend.ToArray(Gradients.All);
    public void UploadParameters(float[] flat) => Backend.Upload(Parameters.All, flat);
    public void ZeroGradients() => Backend.Zero(Gradients.All);

    /// <summary>A view of one named tensor of the flat buffer (parameters or gradients).</summary>
    protected Buf<float> View(DeviceBuffer<float> flat, string name)
    {
        var s = Layout[name];
        return flat.All.Slice(s.Offset, s.Length);
    }

    // ================================================================ what a family supplies

    /// <summary>New activations for (B, T); T = 1 with <paramref name="withGradients"/> false serves decoding.
    /// With an <paramref name="arena"/>, the buffers are carved from it where it has room.</summary>
    public abstract Activations CreateActivations(int B, int T, bool withGradients, ActivationArena? arena = null);

    /// <summary>A KV cache for B rows over the whole context.</summary>
    public abstract KvCache CreateKvCache(int B);

    /// <summary>
    /// Embedding and every block, then the final norm: leaves a.FinalNorm [N, C] ready for the head.
    /// With <paramref name="decode"/>, each row is one decoding step (T = 1) at a.Positions against
    /// the cache instead of causal attention over the rows.
    /// </summary>
    public abstract void ForwardToFinalNorm(Activations a, KvCache? decode = null);

    /// <summary>After a prefill <see cref="ForwardToFinalNorm"/> over [B, T]: writes every layer's keys and values into the cache.</summary>
    public abstract void WriteKvCache(Activations prefill, KvCache cache);

    /// <summary>The head: logits [N, V] from the final norm's output [N, C].</summary>
    public abstract void Head(Buf<float> finalNorm, int N, Buf<float> logits);

    /// <summary>
    /// Backward from dLogits (held in a.Logits) to every parameter gradient, which ACCUMULATE into
    /// <see cref="Gradients"/> (so micro-batches sum). Requires the forward of the same activations.
    /// </summary>
    public abstract void Backward(Activations a);

    // ================================================================ forward

    /// <summary>The training activations for (B, T). A new shape re-carves them from one arena, which is reallocated
    /// only when the shape needs more than any before (so the RL step's changing T does not churn memory).</summary>
    public Activations TrainingActivations(int B, int T) => Reshaped(ref training, ref trainingArena, B, T, withGradients: true);

    /// <summary>Forward-only activations for (B, T) (no backward buffers), kept like <see cref="TrainingActivations"/>.</summary>
    public Activations InferenceActivations(int B, int T) => Reshaped(ref inference, ref inferenceArena, B, T, withGradients: false);

    Activations Reshaped(ref Activations? current, ref ActivationArena? arena, int B, int T, bool withGradients)
    {
        if (current is not null && current.B == B && current.T == T) return current;
        current?.Dispose();
        current = null;
        arena ??= new ActivationArena(Backend);
        arena.Begin();
        var a = CreateActivations(B, T, withGradients, arena);
        if (!arena.Fits)
        {
            a.Dispose();   // it holds buffers of its own for what did not fit: grow the arena to the whole and carve again
            arena.Grow();
            arena.Begin();
            a = CreateActivations(B, T, withGradients, arena);
        }
        return current = a;
    }

    /// <summary>Runs the transformer over a.Tokens / a.Positions up to the logits [N, V].</summary>
    public void Forward(Activations a)
    {
        a.ForwardCount++;   // any LogProbPass taken before is stale now
        ForwardToFinalNorm(a);
        Head(a.FinalNorm, a.N, a.Logits);
    }

    // ================================================================ losses

    /// <summary>
    /// Forward and backward of the masked mean cross-entropy: loss = sum_n w_n CE_n / weightTotal.
    /// Gradients ACCUMULATE, so calling this for each micro-batch with the same weightTotal (the mask
    /// sum over all of them) yields the gradient of the mean over the whole batch.
    /// Returns this batch's contribution sum_n w_n CE_n / weightTotal (waits for the device).
    /// </summary>
    public double ForwardBackward(TrainingBatch batch, double weightTotal)
    {
        var a = UploadBatch(batch, weightTotal);
        Forward(a);
        Backend.CrossEntropyForwardBackward(a.Logits, a.Targets, a.Weights, a.N, Config.VocabSize, a.Losses, a.Logits);
        Backward(a);
        return SumLosses(a);
    }

    /// <summary>Forward only: returns (sum_n w_n CE_n, sum_n w_n) for this batch.</summary>
    public (double LossSum, double WeightSum) EvaluateLoss(TrainingBatch batch)
    {
        var a = UploadBatch(batch, 1.0);
        Forward(a);
        Backend.CrossEntropyForwardBackward(a.Logits, a.Targets, a.Weights, a.N, Config.VocabSize, a.Losses, default);
        return (SumLosses(a), batch.WeightSum);
    }

    Activations UploadBatch(TrainingBatch batch, double weightTotal)
    {
        batch.Validate(Config);
        if (!(weightTotal > 0)) throw new ArgumentException($"the loss mask selects no position (weight total {weightTotal})");
        var a = TrainingActivations(batch.B, batch.T);
        for (int n = 0; n < a.N; n++) a.HostWeights[n] = (float)(batch.Weights[n] / weightTotal);
        Backend.Upload(a.Tokens, batch.Inputs);
        Backend.Upload(a.Targets, batch.Targets);
        Backend.Upload(a.Weights, a.HostWeights);
        return a;
    }

    double SumLosses(Activations a)
    {
        Backend.Download(a.Losses, a.HostLosses);
        double sum = 0;
        foreach (var x in a.HostLosses) sum += x;
        return sum;
    }

    /// <summary>Full forward over inputs [B, T]; returns the logits [B*T, V] (waits for the device).</summary>
    public float[] ForwardLogits(int B, int T, ReadOnlySpan<int> inputs)
    {
        var a = TrainingActivations(B, T);
        CheckTokens(inputs, a.N, nameof(inputs));
        Backend.Upload(a.Tokens, inputs);
        Forward(a);
        return Backend.ToArray(a.Logits);
    }

    // ================================================================ RL: token log-probs

    /// <summary>
    /// Forward over inputs [B, T]; per position n, with p = softmax(logits_n / temperature):
    /// logProbs[n] = log p[targets[n]] and entropies[n] = -sum p log p. Keeps the activations so that
    /// <see cref="BackwardFromLogProbs(LogProbPass, ReadOnlySpan{float})"/> can follow with the returned pass.
    /// Waits for the device (the results come to the host).
    /// </summary>
    public LogProbPass ForwardTokenLogProbs(int B, int T, ReadOnlySpan<int> inputs, ReadOnlySpan<int> targets, float temperature,
        Span<float> logProbs, Span<float> entropies)
    {
        var a = TrainingActivations(B, T);
        CheckTokens(inputs, a.N, nameof(inputs));
        CheckTokens(targets, a.N, nameof(targets));
        Backend.Upload(a.Tokens, inputs);
        Backend.Upload(a.Targets, targets);
        var pass = ForwardTokenLogProbs(a, temperature);
        Backend.Download(a.LogProbs, logProbs);
        Backend.Download(a.Entropies, entropies);
        return pass;
    }

    /// <summary>
    /// As <see cref="ForwardTokenLogProbs(int, int, ReadOnlySpan{int}, ReadOnlySpan{int}, float, Span{float}, Span{float})"/>
    /// over tokens and targets the caller has already put on the device (a.Tokens, a.Targets, every one inside the
    /// vocabulary; <paramref name="a"/> from <see cref="TrainingActivations"/>), leaving the results in a.LogProbs /
    /// a.Entropies. Only enqueues work. With <see cref="InferenceActivations"/> the pass cannot be backpropagated.
    /// </summary>
    public LogProbPass ForwardTokenLogProbs(Activations a, float temperature)
    {
        if (!(temperature > 0)) throw new ArgumentOutOfRangeException(nameof(temperature), $"temperature must be positive, got {temperature}");
        Forward(a);
        Backend.TokenLogProbEntropy(a.Logits, a.Targets, a.N, Config.VocabSize, temperature, a.LogProbs, a.Entropies);
        return new LogProbPass(a, temperature, a.ForwardCount);
    }

    /// <summary>
    /// Backward of sum_n dLogProbs[n] * logProbs[n] after the forward that returned <paramref name="pass"/>:
    /// parameter gradients ACCUMULATE. The RL losses supply dLogProbs (0 outside responses).
    /// </summary>
    public void BackwardFromLogProbs(LogProbPass pass, ReadOnlySpan<float> dLogProbs)
    {
        var a = pass.Activations ?? throw new ArgumentException("BackwardFromLogProbs needs the pass a ForwardTokenLogProbs returned");
        if (dLogProbs.Length != a.N) throw new ArgumentException($"dLogProbs must have B*T = {a.N} elements, got {dLogProbs.Length}");
        CheckCurrent(pass);
        Backend.Upload(a.DLogProbs, dLogProbs);
        BackwardFromLogProbs(pass);
    }

    /// <summary>As <see cref="BackwardFromLogProbs(LogProbPass, ReadOnlySpan{float})"/> with dLogProbs already in the pass's a.DLogProbs.</summary>
    public void BackwardFromLogProbs(LogProbPass pass)
    {
        CheckCurrent(pass);
        var a = pass.Activations;
        Backend.TokenLogProbBackward(a.Logits, a.Targets, a.DLogProbs, a.N, Config.VocabSize, pass.Temperature, a.Logits);
        a.ForwardCount++;   // the logits now hold their gradient: this pass is spent
        Backward(a);
    }

    /// <summary>A backward must follow its own forward: any later forward (or backward) over the same activations overwrote the logits.</summary>
    static void CheckCurrent(LogProbPass pass)
    {
        if (pass.Activations is null || pass.Activations.ForwardCount != pass.Version)
            throw new InvalidOperationException("BackwardFromLogProbs: the activations of this pass were overwritten by a later forward or backward (or the pass is empty)");
    }

    /// <summary>Checks that <paramref name="tokens"/> has <paramref name="n"/> entries, each inside the vocabulary.</summary>
    public void CheckTokens(ReadOnlySpan<int> tokens, int n, string what)
    {
        if (tokens.Length != n) throw new ArgumentException($"{what} must have B*T = {n} elements, got {tokens.Length}");
        for (int i = 0; i < n; i++)
            if ((uint)tokens[i] >= (uint)Config.VocabSize)
                throw new ArgumentException($"{what}[{i}] = {tokens[i]} is outside the vocabulary [0, {Config.VocabSize})");
    }

    public virtual void Dispose()
    {
        training?.Dispose();
        inference?.Dispose();
        trainingArena?.Dispose();
        inferenceArena?.Dispose();
        Parameters.Dispose();
        gradients?.Dispose();
    }
}
