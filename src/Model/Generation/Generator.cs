using ArcherIlgpu.Kernels;

namespace ArcherIlgpu.Model.Generation;

/// <summary>How to sample. Temperature 0 is greedy.</summary>
/// <param name="MaxNewTokens">at most this many tokens per row (also capped by the context length).</param>
/// <param name="EndToken">sampling this token ends a row (it is included in the output); null: never.</param>
/// <param name="Seed">with (RowOffset + row, position) this fixes every draw.</param>
/// <param name="RowOffset">stream id of row 0, so that different batches of one run draw differently.</param>
public sealed record SamplingOptions(int MaxNewTokens = 64, float Temperature = 1f, int TopK = 0, float TopP = 1f,
    ulong Seed = 0, int RowOffset = 0, int? EndToken = null)
{
    public SamplingOptions Validate()
    {
        if (MaxNewTokens < 1) throw new ArgumentException($"MaxNewTokens must be at least 1, got {MaxNewTokens}");
        if (!(Temperature >= 0) || float.IsInfinity(Temperature)) throw new ArgumentException($"Temperature must be finite and >= 0, got {Temperature}");
        if (!(TopP > 0)) throw new ArgumentException($"TopP must be in (0, 1] (>= 1: off), got {TopP}");
        if (RowOffset < 0) throw new ArgumentException($"RowOffset must be >= 0, got {RowOffset}");
        return this;
    }
}

/// <summary>Per row: the sampled tokens (after the prompt), each one's log-prob, and whether it ended with the end token.</summary>
public sealed record GenerationResult(int[][] Tokens, float[][] LogProbs, bool[] Ended);

/// <summary>
/// Batched sampling with a KV cache. Prompts of different lengths are right-padded to the longest
/// for one prefill pass (the causal mask keeps the padding out of every real position), then each
/// row continues from its own length: a decoding step writes row b's token at positions[b], which
/// overwrites that row's padding in the cache before anything attends to it.
/// <see cref="Generate"/> keeps the whole loop on the device: the sampled token, each row's length,
/// position and status never leave it; the host looks at the status every
/// <see cref="DoneCheckInterval"/> tokens and downloads the result once at the end.
/// </summary>
public sealed class Generator : IDisposable
{
    /// <summary>
    /// Tokens between the host's looks at the rows' status. Each look is a download, which on a GPU
    /// waits for the queue to drain and then leaves the device idle while the next launches arrive;
    /// 16 makes that one stall per 16 tokens, while the steps run after every row has stopped stay
    /// under 16 (a few percent of a 128–256-token rollout). Outputs do not depend on it.
    /// </summary>
    public const int DefaultDoneCheckInterval = 16;

    readonly CausalLm model;
    readonly Backend be;
    readonly int doneCheckInterval;
    Activations? prefill, decode;
    KvCache? cache;
    int[] hostRows = [], hostLengths = [], hostStatus = [], hostCounts = [];
    Buf<int> rows, sampled, status, counts, lengths, samplePositions, outTokens;
    Buf<float> sampledLogProbs, outLogProbs;
    readonly List<IDisposable> owned = [];

    /// <param name="doneCheckInterval">tokens between the host's checks for rows that are all done (see <see cref="DefaultDoneCheckInterval"/>).</param>
    public Generator(CausalLm model, int doneCheckInterval = DefaultDoneCheckInterval)
    {
        if (doneCheckInterval < 1) throw new ArgumentOutOfRangeException(nameof(doneCheckInterval), doneCheckInterval, "the done-check interval must be at least 1 token");
        this.model = model; be = model.Backend; this.doneCheckInterval = doneCheckInterval;
    }

    /// <summary>Tokens between the host's looks at the rows' status in <see cref="Generate"/>.</summary>
    public int DoneCheckInterval => doneCheckInterval;

    IModelConfig Config => model.Config;

    /// <summary>
    /// Prefill: runs the prompts and fills the KV cache. Returns the logits [B, V] at each row's last
    /// prompt position (the distribution of its first new token).
    /// </summary>
    public float[] Prefill(IReadOnlyList<IReadOnlyList<int>> prompts)
    {
        PrefillOnDevice(prompts);
        return be.ToArray(decode!.Logits);
    }

    /// <summary>One cached step: row b's token tokens[b] sits at positions[b]. Returns logits [B, V] for the next token.</summary>
    public float[] Step(int[] tokens, int[] positions)
    {
        StepOnDevice(tokens, positions);
        return be.ToArray(decode!.Logits);
    }

    void PrefillOnDevice(IReadOnlyList<IReadOnlyList<int>> prompts)
    {
        int B = prompts.Count;
        if (B == 0) throw new ArgumentException("no prompts");
        int T = 0;
        for (int b = 0; b < B; b++)
        {
            var p = prompts[b];
            if (p.Count == 0) throw new ArgumentException($"prompt {b} is empty (a prompt needs at least one token, e.g. the end token)");
            if (p.Count >= Config.MaxT) throw new ArgumentException($"prompt {b} has {p.Count} tokens; at most {Config.MaxT - 1} fit the context length {Config.MaxT} with room to generate");
            foreach (var t in p)
                if ((uint)t >= (uint)Config.VocabSize) throw new ArgumentException($"prompt {b} contains token {t}, outside the vocabulary [0, {Config.VocabSize})");
            T = Math.Max(T, p.Count);
        }
        EnsureBuffers(B, T);
        var a = prefill!;
        var tokens = new int[B * T];
        for (int b = 0; b < B; b++)
            for (int t = 0; t < prompts[b].Count; t++) tokens[b * T + t] = prompts[b][t];
        be.Upload(a.Tokens, tokens);
        model.ForwardToFinalNorm(a);
        model.WriteKvCache(a, cache!);
        int C = Config.Channels;
        // The head only needs each row's last real position: gather those rows of ln_f, then one [B, C] matmul.
        for (int b = 0; b < B; b++)
            be.Copy(a.FinalNorm.Slice(((long)b * T + prompts[b].Count - 1) * C, C), decode!.FinalNorm.Slice((long)b * C, C));
        model.Head(decode!.FinalNorm, B, decode!.Logits);
    }

    void StepOnDevice(int[] tokens, int[] positions)
    {
        var d = decode ?? throw new InvalidOperationException("Step needs a Prefill first");
        if (tokens.Length != d.B || positions.Length != d.B) throw new ArgumentException($"tokens and positions need {d.B} entries (one per prompt)");
        for (int b = 0; b < d.B; b++)
        {
            if ((uint)positions[b] >= (uint)Config.MaxT) throw new ArgumentException($"position {positions[b]} of row {b} is outside the context [0, {Config.MaxT})");
            if ((uint)tokens[b] >= (uint)Config.VocabSize) throw new ArgumentException($"token {tokens[b]} of row {b} is outside the vocabulary");
        }
        be.Upload(d.Tokens, tokens);
        be.Upload(d.Positions, positions);
        model.ForwardToFinalNorm(d, cache);
        model.Head(d.FinalNorm, d.B, d.Logits);
    }

    /// <summary>Samples continuations of every prompt. Deterministic given options.Seed and RowOffset.</summary>
    public GenerationResult Generate(IReadOnlyList<IReadOnlyList<int>> prompts, SamplingOptions options)
    {
        options.Validate();
        PrefillOnDevice(prompts);
        int B = prompts.Count, maxT = Config.MaxT;
        // A row stops at MaxNewTokens or when it fills the context, so the shortest prompt bounds the draws.
        int maxNew = Math.Min(options.MaxNewTokens, maxT - prompts.Min(p => p.Count));
        StartRows(prompts, options.RowOffset);
        var d = decode!;
        for (int step = 0; step < maxNew; step++)
        {
            be.Sample(d.Logits, rows, samplePositions, B, Config.VocabSize, options.Temperature, options.TopK, options.TopP,
                options.Seed, sampled, sampledLogProbs);
            // The draw becomes the next decode input (d.Tokens at d.Positions) without visiting the host.
            be.RecordSamples(sampled, sampledLogProbs, B, maxNew, maxT, options.EndToken ?? -1, status, counts, lengths,
                outTokens, outLogProbs, d.Tokens, d.Positions, samplePositions);
            if (step == maxNew - 1 || (step + 1) % doneCheckInterval == 0 && AllRowsDone(B)) break;
            // Rows already done repeat a harmless in-range step; their outputs are no longer written.
            model.ForwardToFinalNorm(d, cache);
            model.Head(d.FinalNorm, B, d.Logits);
        }
        return Collect(B, maxNew);
    }

    /// <summary>Each row's stream id, length (its prompt) and first draw position on the device; status and counts zeroed.</summary>
    void StartRows(IReadOnlyList<IReadOnlyList<int>> prompts, int rowOffset)
    {
        for (int b = 0; b < prompts.Count; b++) { hostRows[b] = rowOffset + b; hostLengths[b] = prompts[b].Count; }
        be.Upload(rows, hostRows);
        be.Upload(lengths, hostLengths);
        be.Copy(lengths, samplePositions);   // the first new token lands right after the prompt, inside the context (checked in prefill)
        be.Zero(status);
        be.Zero(counts);
    }

    /// <summary>The host's look every few tokens: one download of the rows' status.</summary>
    bool AllRowsDone(int B)
    {
        be.Download(status, hostStatus);
        ThrowIfAnyRowFailed(B);
        return Array.TrueForAll(hostStatus, s => s != GenerationMath.Running);
    }

    /// <summary>hostStatus must be fresh. The sampler draws no token only when every logit of a row is NaN or infinite.</summary>
    void ThrowIfAnyRowFailed(int B)
    {
        int b = Array.IndexOf(hostStatus, GenerationMath.NoFiniteLogit);
        if (b < 0) return;
        be.Download(lengths, hostLengths);
        throw new Training.TrainingDivergedException($"row {b} has no finite logit at position {GenerationMath.SamplePosition(hostLengths[b], Config.MaxT)}: the model's weights have diverged or hold non-finite values");
    }

    /// <summary>The one download at the end: status, counts, and the [B, maxNew] tokens and log-probs.</summary>
    GenerationResult Collect(int B, int maxNew)
    {
        be.Download(status, hostStatus);
        ThrowIfAnyRowFailed(B);
        be.Download(counts, hostCounts);
        var tokens = be.ToArray(outTokens.Slice(0, (long)B * maxNew));
        var logProbs = be.ToArray(outLogProbs.Slice(0, (long)B * maxNew));
        var outT = new int[B][]; var outLp = new float[B][]; var ended = new bool[B];
        for (int b = 0; b < B; b++)
        {
            outT[b] = tokens.AsSpan(b * maxNew, hostCounts[b]).ToArray();
            outLp[b] = logProbs.AsSpan(b * maxNew, hostCounts[b]).ToArray();
            ended[b] = hostStatus[b] == GenerationMath.Ended;
        }
        return new GenerationResult(outT, outLp, ended);
    }

    void EnsureBuffers(int B, int T)
    {
        if (prefill is null || prefill.B != B || prefill.T != T)
        {
            prefill?.Dispose();
            prefill = model.CreateActivations(B, T, withGradients: false);
        }
        if (decode is null || decode.B != B)
        {
            decode?.Dispose(); cache?.Dispose();
            foreach (var d in owned) d.Dispose();
            owned.Clear();
            decode = model.CreateActivations(B, 1, withGradients: false);
            cache = model.CreateKvCache(B);
            rows = Own(be.Allocate<int>(B)); sampled = Own(be.Allocate<int>(B)); sampledLogProbs = Own(be.Allocate<float>(B));
            status = Own(be.Allocate<int>(B)); counts = Own(be.Allocate<int>(B)); lengths = Own(be.Allocate<int>(B));
            samplePositions = Own(be.Allocate<int>(B));
            // Room for the most tokens any row can draw (the context less a one-token prompt).
            outTokens = Own(be.Allocate<int>((long)B * Config.MaxT)); outLogProbs = Own(be.Allocate<float>((long)B * Config.MaxT));
            hostRows = new int[B]; hostLengths = new int[B]; hostStatus = new int[B]; hostCounts = new int[B];
        }
    }

    Buf<T> Own<T>(DeviceBuffer<T> buffer) where T : unmanaged { owned.Add(buffer); return buffer.All; }

    public void Dispose()
    {
        prefill?.Dispose(); decode?.Dispose(); cache?.Dispose();
        foreach (var d in owned) d.Dispose();
        owned.Clear();
    }
}
