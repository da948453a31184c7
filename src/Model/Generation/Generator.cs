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
/// </summary>
public sealed class Generator : IDisposable
{
    readonly CausalLm model;
    readonly Backend be;
    Activations? prefill, decode;
    KvCache? cache;
    int[] hostPositions = [], hostRows = [], hostTokens = [];
    float[] hostLogProbs = [];
    Buf<int> rows, sampled; Buf<float> sampledLogProbs;
    readonly List<IDisposable> owned = [];

    public Generator(CausalLm model) { this.model = model; be = model.Backend; }

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
        int B = prompts.Count;
        var outTokens = new List<int>[B];
        var outLogProbs = new List<float>[B];
        var ended = new bool[B];
        var done = new bool[B];
        var length = new int[B];   // tokens so far (prompt + generated) in each row
        for (int b = 0; b < B; b++)
        {
            outTokens[b] = []; outLogProbs[b] = [];
            length[b] = prompts[b].Count;
            hostRows[b] = options.RowOffset + b;
        }
        be.Upload(rows, hostRows);

        int remaining = B;
        for (int step = 0; remaining > 0; step++)
        {
            // The token drawn now lands at position length[b]; that position is the RNG counter.
            for (int b = 0; b < B; b++) hostPositions[b] = Math.Min(length[b], Config.MaxT - 1);
            be.Upload(decode!.Positions, hostPositions);
            be.Sample(decode.Logits, rows, decode.Positions, B, Config.VocabSize, options.Temperature, options.TopK, options.TopP,
                options.Seed, sampled, sampledLogProbs);
            be.Download(sampled, hostTokens);
            be.Download(sampledLogProbs, hostLogProbs);

            for (int b = 0; b < B; b++)
            {
                if (done[b]) continue;
                // The sampler draws no token (-1) only when every logit of the row is NaN or infinite.
                if (hostTokens[b] < 0)
                    throw new Training.TrainingDivergedException($"row {b} has no finite logit at position {hostPositions[b]}: the model's weights have diverged or hold non-finite values");
                outTokens[b].Add(hostTokens[b]);
                outLogProbs[b].Add(hostLogProbs[b]);
                length[b]++;
                if (options.EndToken is int end && hostTokens[b] == end) ended[b] = true;
                if (ended[b] || outTokens[b].Count >= options.MaxNewTokens || length[b] >= Config.MaxT)
                {
                    done[b] = true; remaining--;
                }
            }
            if (remaining == 0) break;

            // Feed each row's newest token at its position; finished rows repeat a harmless in-range step.
            for (int b = 0; b < B; b++) hostPositions[b] = Math.Min(length[b] - 1, Config.MaxT - 1);
            StepOnDevice(hostTokens, hostPositions);
        }
        return new GenerationResult(
            Array.ConvertAll(outTokens, l => l.ToArray()),
            Array.ConvertAll(outLogProbs, l => l.ToArray()),
            ended);
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
            var r = be.Allocate<int>(B); var s = be.Allocate<int>(B); var lp = be.Allocate<float>(B);
            owned.Add(r); owned.Add(s); owned.Add(lp);
            rows = r.All; sampled = s.All; sampledLogProbs = lp.All;
            hostPositions = new int[B]; hostRows = new int[B]; hostTokens = new int[B]; hostLogProbs = new float[B];
        }
    }

    public void Dispose()
    {
        prefill?.Dispose(); decode?.Dispose(); cache?.Dispose();
        foreach (var d in owned) d.Dispose();
        owned.Clear();
    }
}
