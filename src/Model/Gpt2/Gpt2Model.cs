using ArcherIlgpu.Kernels;
using ArcherIlgpu.Model.Generation;

namespace ArcherIlgpu.Model.Gpt2;

/// <summary>
/// A batch of training sequences: row b predicts Targets[b, t] from Inputs[b, 0..t]. Weights[b, t]
/// is the per-position loss mask (0 for prompt and padding positions, 1 where the loss counts).
/// </summary>
public sealed record TrainingBatch(int B, int T, int[] Inputs, int[] Targets, float[] Weights)
{
    public double WeightSum => Weights.Sum(w => (double)w);

    public TrainingBatch Validate(Gpt2Config config)
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

/// <summary>The weights of one block as views into the flat parameter (or gradient) buffer.</summary>
public sealed record BlockWeights(
    Buf<float> Ln1W, Buf<float> Ln1B, Buf<float> AttnW, Buf<float> AttnB, Buf<float> AttnProjW, Buf<float> AttnProjB,
    Buf<float> Ln2W, Buf<float> Ln2B, Buf<float> FcW, Buf<float> FcB, Buf<float> FcProjW, Buf<float> FcProjB);

/// <summary>Views of every GPT-2 tensor in one flat buffer, by role.</summary>
public sealed record ModelWeights(Buf<float> Wte, Buf<float> Wpe, BlockWeights[] Blocks, Buf<float> LnFW, Buf<float> LnFB)
{
    public static ModelWeights Carve(ParameterLayout layout, DeviceBuffer<float> flat)
    {
        Buf<float> V(string name) { var s = layout[name]; return flat.All.Slice(s.Offset, s.Length); }
        var blocks = new BlockWeights[layout.Config.Layers];
        for (int l = 0; l < blocks.Length; l++)
        {
            string p = $"h.{l}.";
            blocks[l] = new BlockWeights(V(p + "ln_1.weight"), V(p + "ln_1.bias"),
                V(p + "attn.c_attn.weight"), V(p + "attn.c_attn.bias"), V(p + "attn.c_proj.weight"), V(p + "attn.c_proj.bias"),
                V(p + "ln_2.weight"), V(p + "ln_2.bias"),
                V(p + "mlp.c_fc.weight"), V(p + "mlp.c_fc.bias"), V(p + "mlp.c_proj.weight"), V(p + "mlp.c_proj.bias"));
        }
        return new ModelWeights(V("wte.weight"), V("wpe.weight"), blocks, V("ln_f.weight"), V("ln_f.bias"));
    }
}

/// <summary>
/// GPT-2 on one backend. Parameters and gradients are each one flat buffer laid out by
/// <see cref="ParameterLayout"/>; <see cref="Weights"/> and <see cref="Grads"/> are named views into them.
/// The forward pass is an explicit list of op calls; the backward pass is the same list reversed.
/// Nothing here allocates or waits for the device inside forward or backward.
/// </summary>
public sealed class Gpt2Model : IDisposable
{
    public Backend Backend { get; }
    public Gpt2Config Config { get; }
    public ParameterLayout Layout { get; }
    public DeviceBuffer<float> Parameters { get; }
    public DeviceBuffer<float> Gradients { get; }
    public ModelWeights Weights { get; }
    public ModelWeights Grads { get; }

    Gpt2Activations? training;

    /// <summary>A model with GPT-2 initialisation from <paramref name="seed"/>.</summary>
    public Gpt2Model(Backend backend, Gpt2Config config, int seed = 1337)
        : this(backend, config, new ParameterLayout(config).Initialize(seed)) { }

    /// <summary>A model with the given flat parameters (in <see cref="ParameterLayout"/> order).</summary>
    public Gpt2Model(Backend backend, Gpt2Config config, float[] parameters)
    {
        Backend = backend;
        Config = config.Validate();
        Layout = new ParameterLayout(config);
        if (parameters.LongLength != Layout.TotalLength)
            throw new ArgumentException($"expected {Layout.TotalLength} parameters for {config}, got {parameters.LongLength}");
        Parameters = backend.Allocate<float>(Layout.TotalLength);
        Gradients = backend.Allocate<float>(Layout.TotalLength);
        backend.Upload(Parameters.All, parameters);
        Weights = ModelWeights.Carve(Layout, Parameters);
        Grads = ModelWeights.Carve(Layout, Gradients);
    }

    public long ParameterCount => Layout.TotalLength;

    public float[] DownloadParameters() => Backend.ToArray(Parameters.All);
    public float[] DownloadGradients() => Backend.ToArray(Gradients.All);
    public void UploadParameters(float[] flat) => Backend.Upload(Parameters.All, flat);
    public void ZeroGradients() => Backend.Zero(Gradients.All);

    /// <summary>The training activations for (B, T), reallocated only when the shape changes.</summary>
    public Gpt2Activations TrainingActivations(int B, int T)
    {
        if (training is null || training.B != B || training.T != T)
        {
            training?.Dispose();
            training = new Gpt2Activations(Backend, Config, B, T, withGradients: true);
        }
        return training;
    }

    // ================================================================ forward

    /// <summary>Runs the transformer over a.Tokens / a.Positions up to the logits [N, V].</summary>
    public void Forward(Gpt2Activations a)
    {
        ForwardToLnF(a);
        Head(a.LnF, a.N, a.Logits);
    }

    /// <summary>Embedding, every block, then ln_f: leaves a.LnF [N, C] ready for the head.</summary>
    public void ForwardToLnF(Gpt2Activations a, KvCache? decode = null)
    {
        var be = Backend; int N = a.N, C = Config.Channels;
        be.EmbeddingForward(a.Tokens, a.Positions, Weights.Wte, Weights.Wpe, N, C, a.Encoded);
        var x = a.Encoded;
        for (int l = 0; l < Config.Layers; l++)
        {
            BlockForward(l, x, a.Layers[l], a.B, a.T, decode, decode is null ? default : a.Positions);
            x = a.Layers[l].Residual3;
        }
        be.LayerNormForward(x, Weights.LnFW, Weights.LnFB, N, C, Config.LayerNormEps, a.LnF, a.LnFMean, a.LnFRstd);
    }

    /// <summary>The tied head: logits [N, V] = lnf [N, C] · wteᵀ.</summary>
    public void Head(Buf<float> lnf, int N, Buf<float> logits)
        => Backend.MatMulForward(lnf, Weights.Wte, default, N, Config.Channels, Config.VocabSize, logits);

    /// <summary>
    /// One pre-LN block: x + attn(ln_1(x)), then + mlp(ln_2(.)). With <paramref name="cache"/> the
    /// attention is one decoding step per row (T = 1) against the KV cache instead of causal attention.
    /// </summary>
    void BlockForward(int l, Buf<float> input, LayerActivations s, int B, int T, KvCache? cache, Buf<int> decodePositions)
    {
        var be = Backend; var w = Weights.Blocks[l];
        int N = B * T, C = Config.Channels, H = Config.Heads; float eps = Config.LayerNormEps;
        be.LayerNormForward(input, w.Ln1W, w.Ln1B, N, C, eps, s.Ln1, s.Ln1Mean, s.Ln1Rstd);
        be.MatMulForward(s.Ln1, w.AttnW, w.AttnB, N, C, 3 * C, s.Qkv);
        if (cache is null) be.AttentionForward(s.Qkv, B, T, H, H, C / H, s.Att, s.AttLogSumExp);
        else be.AttentionDecode(s.Qkv, decodePositions, B, H, H, C / H, cache.MaxT, cache.K[l], cache.V[l], s.Att);
        be.MatMulForward(s.Att, w.AttnProjW, w.AttnProjB, N, C, C, s.AttProj);
        be.ResidualForward(input, s.AttProj, N * C, s.Residual2);
        be.LayerNormForward(s.Residual2, w.Ln2W, w.Ln2B, N, C, eps, s.Ln2, s.Ln2Mean, s.Ln2Rstd);
        be.MatMulForward(s.Ln2, w.FcW, w.FcB, N, C, 4 * C, s.Fc);
        be.GeluForward(s.Fc, 4 * N * C, s.FcGelu);
        be.MatMulForward(s.FcGelu, w.FcProjW, w.FcProjB, N, 4 * C, C, s.FcProj);
        be.ResidualForward(s.Residual2, s.FcProj, N * C, s.Residual3);
    }

    // ================================================================ backward

    /// <summary>
    /// Backward from dLogits (held in a.Logits) to every parameter gradient, which ACCUMULATE into
    /// <see cref="Gradients"/> (so micro-batches sum). Requires the forward of the same activations.
    /// </summary>
    public void Backward(Gpt2Activations a)
    {
        if (!a.HasGradients) throw new InvalidOperationException("these activations were allocated without gradient buffers");
        var be = Backend; int N = a.N, C = Config.Channels;

        // LayerNormBackward accumulates into the residual stream's gradient, so it starts at zero.
        be.Zero(a.DResidual);
        be.MatMulBackward(a.Logits, a.LnF, Weights.Wte, N, C, Config.VocabSize, a.DLn, Grads.Wte, default);
        be.LayerNormBackward(a.DLn, a.LastResidual, Weights.LnFW, a.LnFMean, a.LnFRstd, N, C, a.DResidual, Grads.LnFW, Grads.LnFB);
        for (int l = Config.Layers - 1; l >= 0; l--)
            BlockBackward(l, l == 0 ? a.Encoded : a.Layers[l - 1].Residual3, a.Layers[l], a);
        be.EmbeddingBackward(a.DResidual, a.Tokens, a.Positions, N, C, Grads.Wte, Grads.Wpe);
    }

    /// <summary>
    /// The reverse of <see cref="BlockForward"/>. A residual add passes its output gradient unchanged to
    /// both inputs, so a.DResidual serves as the stream's gradient and as the branch's output gradient;
    /// the branch is read before its LayerNorm backward accumulates into the stream, and no
    /// ResidualBackward call (which would add the stream to itself) is needed.
    /// </summary>
    void BlockBackward(int l, Buf<float> input, LayerActivations s, Gpt2Activations a)
    {
        var be = Backend; var w = Weights.Blocks[l]; var g = Grads.Blocks[l];
        int N = a.N, C = Config.Channels, H = Config.Heads;
        // MLP branch: dResidual3 -> c_proj -> gelu -> c_fc -> ln_2 (adds into dResidual2 = dResidual3 + ...)
        be.MatMulBackward(a.DResidual, s.FcGelu, w.FcProjW, N, 4 * C, C, a.DFcGelu, g.FcProjW, g.FcProjB);
        be.GeluBackward(a.DFcGelu, s.Fc, 4 * N * C, a.DFc);
        be.MatMulBackward(a.DFc, s.Ln2, w.FcW, N, C, 4 * C, a.DLn, g.FcW, g.FcB);
        be.LayerNormBackward(a.DLn, s.Residual2, w.Ln2W, s.Ln2Mean, s.Ln2Rstd, N, C, a.DResidual, g.Ln2W, g.Ln2B);
        // attention branch: dResidual2 -> c_proj -> attention -> c_attn -> ln_1 (adds into dInput)
        be.MatMulBackward(a.DResidual, s.Att, w.AttnProjW, N, C, C, a.DAtt, g.AttnProjW, g.AttnProjB);
        be.AttentionBackward(a.DAtt, s.Qkv, s.Att, s.AttLogSumExp, a.B, a.T, H, H, C / H, a.DQkv);
        be.MatMulBackward(a.DQkv, s.Ln1, w.AttnW, N, C, 3 * C, a.DLn, g.AttnW, g.AttnB);
        be.LayerNormBackward(a.DLn, input, w.Ln1W, s.Ln1Mean, s.Ln1Rstd, N, C, a.DResidual, g.Ln1W, g.Ln1B);
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

    Gpt2Activations UploadBatch(TrainingBatch batch, double weightTotal)
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

    double SumLosses(Gpt2Activations a)
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
        lastLogProbTemperature = float.NaN; // a following BackwardFromLogProbs would not match this forward
        return Backend.ToArray(a.Logits);
    }

    // ================================================================ RL: token log-probs

    /// <summary>
    /// Forward over inputs [B, T]; per position n, with p = softmax(logits_n / temperature):
    /// logProbs[n] = log p[targets[n]] and entropies[n] = -sum p log p. Keeps the activations so that
    /// <see cref="BackwardFromLogProbs"/> can follow. Waits for the device (the results come to the host).
    /// </summary>
    public void ForwardTokenLogProbs(int B, int T, ReadOnlySpan<int> inputs, ReadOnlySpan<int> targets, float temperature,
        Span<float> logProbs, Span<float> entropies)
    {
        var a = ForwardTokenLogProbsOnDevice(B, T, inputs, targets, temperature);
        Backend.Download(a.LogProbs, logProbs);
        Backend.Download(a.Entropies, entropies);
    }

    /// <summary>As <see cref="ForwardTokenLogProbs"/>, leaving the results in the returned activations' LogProbs / Entropies.</summary>
    public Gpt2Activations ForwardTokenLogProbsOnDevice(int B, int T, ReadOnlySpan<int> inputs, ReadOnlySpan<int> targets, float temperature)
    {
        if (!(temperature > 0)) throw new ArgumentOutOfRangeException(nameof(temperature), $"temperature must be positive, got {temperature}");
        var a = TrainingActivations(B, T);
        CheckTokens(inputs, a.N, nameof(inputs));
        CheckTokens(targets, a.N, nameof(targets));
        Backend.Upload(a.Tokens, inputs);
        Backend.Upload(a.Targets, targets);
        Forward(a);
        Backend.TokenLogProbEntropy(a.Logits, a.Targets, a.N, Config.VocabSize, temperature, a.LogProbs, a.Entropies);
        lastLogProbTemperature = temperature;
        return a;
    }

    float lastLogProbTemperature = float.NaN;

    /// <summary>
    /// Backward of sum_n dLogProbs[n] * logProbs[n] after <see cref="ForwardTokenLogProbs"/> with the
    /// same (B, T): parameter gradients ACCUMULATE. The RL losses supply dLogProbs (0 outside responses).
    /// </summary>
    public void BackwardFromLogProbs(ReadOnlySpan<float> dLogProbs)
    {
        var a = training ?? throw new InvalidOperationException("BackwardFromLogProbs needs a ForwardTokenLogProbs first");
        if (float.IsNaN(lastLogProbTemperature)) throw new InvalidOperationException("BackwardFromLogProbs needs a ForwardTokenLogProbs first");
        if (dLogProbs.Length != a.N) throw new ArgumentException($"dLogProbs must have B*T = {a.N} elements, got {dLogProbs.Length}");
        Backend.Upload(a.DLogProbs, dLogProbs);
        BackwardFromLogProbsOnDevice(a);
    }

    /// <summary>As <see cref="BackwardFromLogProbs"/> with dLogProbs already in a.DLogProbs.</summary>
    public void BackwardFromLogProbsOnDevice(Gpt2Activations a)
    {
        Backend.TokenLogProbBackward(a.Logits, a.Targets, a.DLogProbs, a.N, Config.VocabSize, lastLogProbTemperature, a.Logits);
        lastLogProbTemperature = float.NaN; // the logits now hold their gradient
        Backward(a);
    }

    void CheckTokens(ReadOnlySpan<int> tokens, int n, string what)
    {
        if (tokens.Length != n) throw new ArgumentException($"{what} must have B*T = {n} elements, got {tokens.Length}");
        for (int i = 0; i < n; i++)
            if ((uint)tokens[i] >= (uint)Config.VocabSize)
                throw new ArgumentException($"{what}[{i}] = {tokens[i]} is outside the vocabulary [0, {Config.VocabSize})");
    }

    public void Dispose()
    {
        training?.Dispose();
        Parameters.Dispose();
        Gradients.Dispose();
    }
}
