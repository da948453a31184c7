using System.Diagnostics;
using ArcherIlgpu.Kernels;
using ArcherIlgpu.Model;
using ArcherIlgpu.Model.Tokenizers;
using ArcherIlgpu.Model.Training;
using ArcherIlgpu.Rl.Algorithms;
using ArcherIlgpu.Rl.Losses;
using ArcherIlgpu.Rl.Metrics;
using ArcherIlgpu.Rl.Tasks;

namespace ArcherIlgpu.Rl.Training;

/// <summary>Trainer settings that are not part of the algorithm.</summary>
/// <param name="Seed">Seed of the rollout RNG (with each sequence's row id and position) and of mini-batch shuffling.</param>
/// <param name="DataSeed">Seed of the training problem stream (<see cref="DataCursor"/>); null: <paramref name="Seed"/>.</param>
/// <param name="MicroBatchResponses">Responses per forward/backward (gradient accumulation); 0: a whole mini-batch at once.</param>
/// <param name="MaxRowsPerGeneration">Most sequences per generator call; 0: all of a generation batch.</param>
/// <param name="SampleEvery">Return sample completions every this many steps (step 0 included); 0: never.</param>
/// <param name="SamplesPerStep">How many sample completions (the first of each of the first prompts).</param>
public sealed record RlTrainerOptions(ulong Seed = 1, long? DataSeed = null, int MicroBatchResponses = 0, int MaxRowsPerGeneration = 0,
    int SampleEvery = 10, int SamplesPerStep = 4)
{
    public RlTrainerOptions Validate()
    {
        if (MicroBatchResponses < 0) throw new ArgumentException($"micro-batch size must be >= 0 (0: whole mini-batch), got {MicroBatchResponses}");
        if (MaxRowsPerGeneration < 0) throw new ArgumentException($"max rows per generation must be >= 0 (0: no limit), got {MaxRowsPerGeneration}");
        if (SampleEvery < 0) throw new ArgumentException($"sample_every must be >= 0 (0: never), got {SampleEvery}");
        if (SamplesPerStep < 0) throw new ArgumentException($"samples per step must be >= 0, got {SamplesPerStep}");
        return this;
    }
}

/// <summary>
/// Everything besides the weights and optimizer moments that a resumed run needs to continue exactly:
/// training steps done, the data cursor, the rollout RNG (seed + the next sequence's stream id), and the
/// count of skipped updates that the metrics report as a running total.
/// </summary>
public sealed record RlTrainerState(int Step, long DataSeed, long DataCursor, ulong Seed, long RngCounter, int SkippedTotal = 0);

/// <summary>One sampled completion with its reward, for samples.jsonl.</summary>
public sealed record SampleRecord(int Step, long ExampleIndex, string Prompt, string Completion, string Answer,
    double Correct, double Reward, int Length, bool Ended);

/// <summary>One training step: its metrics (JSON-ready, keys grouped by prefix) and any sample completions.</summary>
public sealed record RlStepResult(int Step, IReadOnlyDictionary<string, double> Metrics, IReadOnlyList<SampleRecord> Samples);

/// <summary>
/// The RLVR training loop, one <see cref="Step"/> at a time:
/// rollout (G samples per prompt) → score → group filter → advantages → old log-probs recomputed by the
/// training forward (once per step) → reference log-probs from a frozen copy of the starting model (only
/// when the algorithm has a KL term) → PPO epochs over mini-batches (AR-Lopti: the whole update twice,
/// low-probability tokens first), each mini-batch one optimizer step with gradient accumulation over
/// micro-batches.
/// <para>
/// The update stays on the device: the step's tensors are uploaded once (<see cref="DeviceStepTensors"/>),
/// the old and reference log-probs and the token classes are written there, and each mini-batch runs
/// forward → log-probs and entropies → <see cref="DeviceAlgorithmLoss"/> (classification and loss) →
/// backward without leaving it; the host reads the loss statistics (16 floats) once per mini-batch, to
/// skip a non-finite update and for the metrics. A mini-batch of several micro-batches runs one forward per
/// micro-batch, its loss (given the mini-batch's mask total) and its backward; only a per-batch entropy quantile
/// recomputed per mini-batch (80/20) needs every row's entropies first, and then runs each micro-batch forward twice.
/// </para>
/// A non-finite loss or gradient norm skips the optimizer step (the weights stay as they were) and is
/// counted. Deterministic on the cpu backend given the seeds.
/// </summary>
public sealed class RlTrainer : IDisposable
{
    readonly ITokenizer tokenizer;
    readonly RolloutCollector collector;
    readonly DeviceAlgorithmLoss loss;
    /// <summary>[loss statistics | Σ g²] of the current optimizer step, downloaded together (one download per step).</summary>
    readonly DeviceBuffer<float> stepScalars;
    readonly float[] hostStepScalars = new float[PolicyLossStats.Count + 1];
    readonly DeviceStepTensors device;
    readonly CausalLm? reference;
    readonly DataCursor data;
    RlReplicas? replicas;
    long rngCounter;
    int skippedTotal;
    int consecutiveSkipped;   // optimizer updates skipped in a row (ModelTrainer.MaxConsecutiveSkippedSteps stops training)

    /// <param name="referenceParameters">weights of the frozen KL reference (flat layout); null: the policy's weights now.
    /// A resumed run passes the starting model's weights here.</param>
    public RlTrainer(CausalLm policy, ITokenizer tokenizer, ITask task, AlgorithmConfig config, RlTrainerOptions? options = null,
        float[]? referenceParameters = null)
    {
        Config = config.Validate();
        Options = (options ?? new RlTrainerOptions()).Validate();
        if (tokenizer.VocabSize > policy.Config.VocabSize)
            throw new ArgumentException($"the tokenizer has {tokenizer.VocabSize} tokens but the model's vocabulary is {policy.Config.VocabSize}");
        Policy = policy;
        Task = task;
        this.tokenizer = tokenizer;
        loss = new DeviceAlgorithmLoss(policy.Backend, Config);
        stepScalars = policy.Backend.Allocate<float>(PolicyLossStats.Count + 1);
        device = new DeviceStepTensors(policy.Backend);
        collector = new RolloutCollector(policy, tokenizer, task, Config, Options.MaxRowsPerGeneration);
        Optimizer = new AdamWOptimizer(policy, new AdamWOptions((float)Config.Beta1, (float)Config.Beta2, 1e-8f,
            (float)Config.WeightDecay, (float)Config.GradClip));
        if (UsesReference(Config))
            reference = Models.Create(policy.Backend, policy.Config, referenceParameters ?? policy.DownloadParameters());
        data = new DataCursor(task, Options.DataSeed ?? (long)Options.Seed);
    }

    public AlgorithmConfig Config { get; }
    public RlTrainerOptions Options { get; }
    public CausalLm Policy { get; }
    public ITask Task { get; }
    public AdamWOptimizer Optimizer { get; }
    /// <summary>Training steps done (the next step's index, and the LR schedule's step).</summary>
    public int StepIndex { get; private set; }
    /// <summary>Optimizer steps skipped because the loss or the gradient norm was not finite.</summary>
    public int SkippedOptimizerSteps => skippedTotal;
    /// <summary>Forward passes of the policy's training activations so far (the old log-probs and the update), one per micro-batch each.</summary>
    public long PolicyForwards { get; private set; }

    /// <summary>
    /// Called after the backward of a mini-batch and before its optimizer step, with the policy whose
    /// gradients are accumulated: for diagnostics and fault-injection tests.
    /// </summary>
    public Action<CausalLm>? BeforeOptimizerStep { get; set; }

    /// <summary>
    /// Data-parallel runs: this rank's place among the replicas (null: one process); set before the first step.
    /// Each rank then rolls out and trains on its share of every step and the update is the whole batch's (see <see cref="RlReplicas"/>).
    /// </summary>
    public RlReplicas? Replicas
    {
        get => replicas;
        set { value?.RequireSplittable(Config); replicas = collector.Replicas = value; }
    }

    /// <summary>Whether the loss has a KL term, so the trainer keeps a frozen reference model (the starting weights).</summary>
    public static bool UsesReference(AlgorithmConfig c) => c.HasKl;

    public RlTrainerState State => new(StepIndex, data.Seed, data.Position, Options.Seed, rngCounter, skippedTotal);

    /// <summary>Continues from a saved state (weights and optimizer moments are restored separately).</summary>
    public void Restore(RlTrainerState state)
    {
        if (state.Seed != Options.Seed || state.DataSeed != data.Seed)
            throw new ArgumentException($"the saved state has seed {state.Seed} / data seed {state.DataSeed}, this trainer {Options.Seed} / {data.Seed}");
        if (state.Step < 0 || state.DataCursor < 0 || state.RngCounter < 0 || state.SkippedTotal < 0)
            throw new ArgumentException("saved step, data cursor, RNG counter and skipped count must be >= 0");
        StepIndex = state.Step;
        data.Position = state.DataCursor;
        rngCounter = state.RngCounter;
        skippedTotal = state.SkippedTotal;
    }

    // ================================================================ one step

    public RlStepResult Step()
    {
        var stepClock = Stopwatch.StartNew();
        int step = StepIndex;
        var m = new SortedDictionary<string, double>(StringComparer.Ordinal) { ["step"] = step };
        double lr = Config.LearningRateAt(step);

        var batch = collector.Collect(data, Options.Seed, ref rngCounter);
        RolloutMetrics(batch, m);
        foreach (var (verdict, share) in TaskVerdicts.Shares(Task, batch.Generated.Select(r => (r.Example, r.Completion)).ToArray())) m["verdict/" + verdict] = share;
        var samples = Samples(step, batch);
        int skippedBefore = skippedTotal;

        if (batch.AllKeptGroups == 0)
        {
            // Nothing informative survived the filter: Archer's trainer skips the update, the schedule still advances.
            m["batch/empty"] = 1;
            Finish(m, lr, 0, [], skippedBefore, 0, 0, 0, batch, stepClock);
            StepIndex++;
            return new RlStepResult(step, m, samples);
        }
        m["batch/empty"] = 0;

        // A rank of a data-parallel run may keep no group of this step: it still joins every mini-batch's sums.
        var s = batch.KeptGroups > 0 ? StepTensors.Build(batch, tokenizer.EndOfText) : null;
        int micro = MicroRows(batch);
        var (logProbSeconds, classifiedOnce) = s is null ? (0, false) : OldAndReferenceLogProbs(s, batch, micro);
        OldPolicyMetrics(s, m);

        var updateClock = Stopwatch.StartNew();
        var acc = new UpdateAccumulator();
        var passes = Config.LowProbabilityIsolation ? new[] { LoptiPass.LowProbability, LoptiPass.HighProbability } : [LoptiPass.All];
        foreach (var pass in passes)
            for (int epoch = 0; epoch < Config.PpoEpochs; epoch++)
                foreach (var miniBatch in MiniBatches(batch, step, epoch))
                    UpdateMiniBatch(s, miniBatch, micro, pass, classifiedOnce, (float)lr, acc);
        double updateSeconds = updateClock.Elapsed.TotalSeconds;
        acc.Write(m);

        long updateTokens = (long)(s?.ValidTokens ?? 0) * passes.Length * Config.PpoEpochs;
        Finish(m, lr, acc.OptimizerSteps, acc.GradNorms, skippedBefore, logProbSeconds, updateSeconds, updateTokens, batch, stepClock);
        StepIndex++;
        return new RlStepResult(step, m, samples);
    }

    int MicroRows(RolloutBatch batch)
    {
        int mini = Config.MiniBatchPrompts * Config.GroupSize;
        if (Options.MicroBatchResponses > 0) return Math.Min(Options.MicroBatchResponses, mini);
        if (replicas is null) return mini;
        // A rank holds only its part of each mini-batch: padding that to the whole mini-batch would multiply its work.
        int most = Enumerable.Range(0, Config.PpoEpochs).SelectMany(epoch => MiniBatches(batch, StepIndex, epoch)).Max(m => m.Rows.Length);
        return Math.Max(1, most);
    }

    /// <summary>
    /// The mini-batches of one epoch: whole groups, MiniBatchPrompts at a time from the step's kept groups (of every rank,
    /// in their global order), shuffled per epoch if configured; each as this rank's rows of it and its rows over all ranks.
    /// </summary>
    IEnumerable<(int[] Rows, int AllRows)> MiniBatches(RolloutBatch b, int step, int epoch)
    {
        var groups = Enumerable.Range(0, b.AllKeptGroups).ToArray();
        if (Config.ShuffleMiniBatches)
            TaskRandom.For(unchecked((long)Options.Seed * 31 + step), epoch).Shuffle(groups);
        var localGroup = new int[groups.Length];
        Array.Fill(localGroup, -1);
        for (int i = 0; i < b.KeptGroupIds.Count; i++) localGroup[b.KeptGroupIds[i]] = i;
        for (int start = 0; start < groups.Length; start += Config.MiniBatchPrompts)
        {
            var chosen = groups.AsSpan(start, Math.Min(Config.MiniBatchPrompts, groups.Length - start)).ToArray();
            var rows = chosen.Where(g => localGroup[g] >= 0).SelectMany(g => Enumerable.Range(localGroup[g] * b.GroupSize, b.GroupSize)).ToArray();
            yield return (rows, chosen.Length * b.GroupSize);
        }
    }

    // ================================================================ log-probs

    /// <summary>Uploads the step and computes the old (and reference) log-probs: (seconds taken, whether the tokens are classified once for the step).</summary>
    (double Seconds, bool ClassifiedOnce) OldAndReferenceLogProbs(StepTensors s, RolloutBatch batch, int micro)
    {
        Policy.CheckTokens(s.Inputs, s.Inputs.Length, "step inputs");
        Policy.CheckTokens(s.Targets, s.Targets.Length, "step targets");
        device.Load(s, tokenizer.EndOfText, Config.Advantage, Config.AdvantageEpsilon);
        var logProbClock = Stopwatch.StartNew();
        RecomputeOldLogProbs(batch, micro);
        if (reference is not null) ComputeReference(s, micro);
        Policy.Backend.Download(device.OldLogProbs, s.OldLogProbs);
        Policy.Backend.Download(device.OldEntropies, s.OldEntropies);
        double seconds = logProbClock.Elapsed.TotalSeconds;
        // The paper's Algorithm 1: classes from the old policy's entropies, once per rollout (per-batch scope: the whole step).
        bool classifiedOnce = !Config.ReclassifyEveryPass && loss.Classify(device.OldEntropies, device.Mask, s.Rows, s.T, device.Classes);
        return (seconds, classifiedOnce);
    }

    /// <summary>ℓ_old with the training forward, mini-batch by mini-batch and micro-batch by micro-batch as the update will
    /// run them, so that the first mini-batch of the first epoch reproduces it exactly (r ≡ 1).</summary>
    void RecomputeOldLogProbs(RolloutBatch batch, int micro)
    {
        foreach (var (rows, _) in MiniBatches(batch, StepIndex, 0))
            for (int start = 0; start < rows.Length; start += micro)
            {
                var chunk = rows.AsSpan(start, Math.Min(micro, rows.Length - start));
                var a = ForwardRows(chunk, micro).Activations;
                device.ScatterRows(chunk, a.LogProbs, device.OldLogProbs);
                device.ScatterRows(chunk, a.Entropies, device.OldEntropies);
            }
    }

    void ComputeReference(StepTensors s, int micro)
    {
        var all = Enumerable.Range(0, s.Rows).ToArray();
        for (int start = 0; start < all.Length; start += micro)
        {
            var chunk = all.AsSpan(start, Math.Min(micro, all.Length - start));
            // The frozen reference runs forward only: no gradient buffer, no backward activations.
            var a = reference!.InferenceActivations(micro, device.T);
            ForwardRows(reference, a, chunk);
            device.ScatterRows(chunk, a.LogProbs, device.RefLogProbs);
        }
    }

    /// <summary>Forward of the given rows padded to <paramref name="micro"/> rows (a fixed shape keeps the activations allocated once);
    /// leaves log-probs and entropies in the returned pass's activations, ready for a backward.</summary>
    LogProbPass ForwardRows(ReadOnlySpan<int> rows, int micro)
    {
        PolicyForwards++;
        return ForwardRows(Policy, Policy.TrainingActivations(micro, device.T), rows);
    }

    LogProbPass ForwardRows(CausalLm model, Activations a, ReadOnlySpan<int> rows)
    {
        device.GatherInputs(rows, a.Tokens, a.Targets);
        return model.ForwardTokenLogProbs(a, (float)Config.Temperature);
    }

    // ================================================================ update

    void UpdateMiniBatch(StepTensors? s, (int[] Rows, int AllRows) miniBatch, int micro, LoptiPass pass, bool classifiedOnce, float lr, UpdateAccumulator acc)
    {
        var rows = miniBatch.Rows;
        Policy.ZeroGradients();
        if (replicas is null) { UpdateOneProcess(s!, rows, miniBatch.AllRows, micro, pass, classifiedOnce, lr, acc); return; }
        // Data-parallel, token-mean loss: every rank divides by the mini-batch's valid tokens over all ranks.
        double? validTokens = Config.Aggregation == LossAggregation.TokenMean ? replicas.Sum(ValidTokens(s, rows)) : null;
        PolicyLossResult result;
        if (rows.Length == 0) result = replicas!.SumLossStatistics(new float[PolicyLossStats.Count]);   // this rank holds none of its groups
        else
        {
            var logProbs = LossAndBackward(s!, rows, miniBatch.AllRows, micro, pass, classifiedOnce, validTokens, keepLogProbs: acc.Calls == 0);
            var stats = new float[PolicyLossStats.Count];
            Policy.Backend.Download(loss.Stats, stats);
            result = replicas.SumLossStatistics(stats);
            if (acc.Calls == 0) acc.FirstMaxAbsLogRatio = MaxAbsLogRatio(s!, rows, logProbs);
        }
        acc.Add(result);

        // Every rank sees the same summed loss, so all of them skip (and drop the gradient just computed) or none does.
        if (!double.IsFinite(result.Loss))
        {
            Skip(acc);
            return;
        }
        BeforeOptimizerStep?.Invoke(Policy);
        replicas.SumGradients(Policy);
        Count(Optimizer.Apply(lr), acc);
    }

    void Count(OptimizerStepResult r, UpdateAccumulator acc)
    {
        acc.GradNorms.Add(r.GradNorm);
        acc.OptimizerSteps++;
        if (r.Skipped) Skip(acc); else consecutiveSkipped = 0;
    }

    /// <summary>
    /// One process: forward, loss, backward and the gradient norm are enqueued back to back, and one download brings
    /// the loss statistics and Σ g² together (issue 14: one download per optimizer step; the first mini-batch of a
    /// step also downloads its log-probs for the max |ℓ − ℓ_old| diagnostic). The host then skips the step (loss or
    /// norm not finite) or enqueues AdamW. A non-finite loss costs a backward whose gradient is then dropped.
    /// </summary>
    void UpdateOneProcess(StepTensors s, int[] rows, int allRows, int micro, LoptiPass pass, bool classifiedOnce, float lr, UpdateAccumulator acc)
    {
        var logProbs = LossAndBackward(s, rows, allRows, micro, pass, classifiedOnce, validTokens: null, keepLogProbs: acc.Calls == 0);
        if (acc.Calls == 0) acc.FirstMaxAbsLogRatio = MaxAbsLogRatio(s, rows, logProbs);
        BeforeOptimizerStep?.Invoke(Policy);
        var backend = Policy.Backend;
        var normSlot = stepScalars.All.Slice(PolicyLossStats.Count, 1);
        backend.Copy(loss.Stats, stepScalars.All.Slice(0, PolicyLossStats.Count));
        Optimizer.ComputeNormSquared(normSlot);
        backend.Download(stepScalars.All, hostStepScalars);
        var result = DeviceAlgorithmLoss.ToResult(hostStepScalars.AsSpan(0, PolicyLossStats.Count));
        acc.Add(result);
        if (!double.IsFinite(result.Loss))
        {
            Skip(acc);
            return;
        }
        Count(Optimizer.ApplyWithNorm(lr, normSlot, hostStepScalars[PolicyLossStats.Count]), acc);
    }

    /// <summary>
    /// Whether a mini-batch of several micro-batches needs every row's current entropies before its loss: only when the
    /// loss classifies by one quantile over the whole mini-batch (the 80/20 baseline, reclassified per mini-batch), since
    /// no token's class is known before all entropies are. Classes given for the step (classified once per rollout), none
    /// at all, or per response (a row's own quantile) let each micro-batch's loss run alone.
    /// </summary>
    bool NeedsEveryEntropyFirst(bool classifiedOnce) => !classifiedOnce && Config.Classification == EntropyClassification.Batch;

    /// <summary>
    /// Enqueues a mini-batch's forward, loss (into <see cref="DeviceAlgorithmLoss.Stats"/>) and backward (into the
    /// gradients), micro-batch by micro-batch. Returns a buffer holding its rows' log-probs when <paramref name="keepLogProbs"/>.
    /// The sequence-mean divisor is the full mini-batch (Archer's gradient accumulation) or its rows over all ranks.
    /// Each micro-batch runs one forward: its loss gets the mini-batch's mask total, which (with classes that do not
    /// depend on other rows) is all the loss needs from the other rows; see <see cref="NeedsEveryEntropyFirst"/>.
    /// </summary>
    Buf<float> LossAndBackward(StepTensors s, int[] rows, int allRows, int micro, LoptiPass pass, bool classifiedOnce, double? validTokens,
        bool keepLogProbs)
    {
        var backend = Policy.Backend;
        var x = device.MiniBatch(rows, reference is not null, classifiedOnce);
        var (logProbs, entropies, dLogProbs) = device.MiniBatchResults(rows.Length);
        double divisor = Config.DivideByFullMiniBatch ? Config.MiniBatchPrompts * s.GroupSize : allRows;
        if (rows.Length > micro && NeedsEveryEntropyFirst(classifiedOnce))
        {
            TwoPasses(s, rows, micro, x with { LogProbs = logProbs, Entropies = entropies }, dLogProbs, divisor, pass, validTokens);
            return logProbs;
        }
        double maskTotal = ValidTokens(s, rows);
        for (int start = 0; start < rows.Length; start += micro)
        {
            int count = Math.Min(micro, rows.Length - start), n = count * s.T;
            var forward = ForwardRows(rows.AsSpan(start, count), micro);
            var a = forward.Activations;
            backend.Zero(a.DLogProbs);   // the padding rows' gradient stays 0
            var part = x.RowRange(start, count) with { LogProbs = a.LogProbs.Slice(0, n), Entropies = a.Entropies.Slice(0, n) };
            loss.Compute(part, a.DLogProbs.Slice(0, n), divisor, pass, validTokens, maskTotal, addToStats: start > 0);
            if (keepLogProbs) backend.Copy(part.LogProbs, logProbs.Slice((long)start * s.T, n));
            Policy.BackwardFromLogProbs(forward);
        }
        return logProbs;
    }

    /// <summary>
    /// The mini-batch's loss from every row's log-probs and entropies (<paramref name="x"/> points at the mini-batch
    /// buffers, filled here by a first forward of each micro-batch), then each micro-batch forward again and backward
    /// with its rows of dLoss/dℓ: the activations hold one micro-batch, so the first forward's are gone by then.
    /// </summary>
    void TwoPasses(StepTensors s, int[] rows, int micro, DeviceAlgorithmLossInputs x, Buf<float> dLogProbs, double divisor, LoptiPass pass,
        double? validTokens)
    {
        var backend = Policy.Backend;
        for (int start = 0; start < rows.Length; start += micro)
        {
            int count = Math.Min(micro, rows.Length - start);
            var a = ForwardRows(rows.AsSpan(start, count), micro).Activations;
            backend.Copy(a.LogProbs.Slice(0, count * s.T), x.LogProbs.Slice((long)start * s.T, count * s.T));
            backend.Copy(a.Entropies.Slice(0, count * s.T), x.Entropies.Slice((long)start * s.T, count * s.T));
        }
        loss.Compute(x, dLogProbs, divisor, pass, validTokens);
        for (int start = 0; start < rows.Length; start += micro)
        {
            int count = Math.Min(micro, rows.Length - start);
            var again = ForwardRows(rows.AsSpan(start, count), micro);
            var a = again.Activations;
            backend.Zero(a.DLogProbs);
            backend.Copy(dLogProbs.Slice((long)start * s.T, count * s.T), a.DLogProbs.Slice(0, count * s.T));
            Policy.BackwardFromLogProbs(again);
        }
    }

    /// <summary>Valid tokens of these rows of the step (none without a step).</summary>
    static double ValidTokens(StepTensors? s, int[] rows)
    {
        double count = 0;
        foreach (int row in rows)
            for (int t = 0; t < s!.T; t++) count += s.Mask[row * s.T + t];
        return count;
    }

    /// <summary>max |ℓ − ℓ_old| over the valid tokens of a mini-batch (a diagnostic of the step's first one, where it should be 0):
    /// downloads its log-probs, once per step.</summary>
    double MaxAbsLogRatio(StepTensors s, int[] rows, Buf<float> logProbs)
    {
        var lp = Policy.Backend.ToArray(logProbs);
        double max = 0;
        for (int j = 0; j < rows.Length; j++)
            for (int t = 0; t < s.T; t++)
            {
                int at = rows[j] * s.T + t;
                if (s.Mask[at] > 0) max = Math.Max(max, Math.Abs((double)lp[j * s.T + t] - s.OldLogProbs[at]));
            }
        return max;
    }

    /// <summary>Counts a skipped update; <see cref="ModelTrainer.MaxConsecutiveSkippedSteps"/> in a row stop training (it has diverged).</summary>
    void Skip(UpdateAccumulator acc)
    {
        skippedTotal++;
        acc.Skipped++;
        if (++consecutiveSkipped >= ModelTrainer.MaxConsecutiveSkippedSteps)
            throw TrainingDivergedException.AfterSkippedSteps("updates", consecutiveSkipped, StepIndex + 1, Config.LearningRate);
    }

    // ================================================================ metrics

    static void RolloutMetrics(RolloutBatch b, IDictionary<string, double> m)
    {
        var gen = b.Generated;
        m["reward/mean"] = gen.Average(r => r.Correct);
        m["reward/score_mean"] = gen.Average(r => (double)r.Reward);
        m["reward/kept_mean"] = b.Kept.Count > 0 ? b.Kept.Average(r => r.Correct) : double.NaN;
        int groups = b.Counts.Groups;
        m["reward/all_correct"] = groups > 0 ? (double)b.Counts.SolveAll / groups : 0;
        m["reward/all_wrong"] = groups > 0 ? (double)b.Counts.SolveNone / groups : 0;
        m["batch/generated_groups"] = groups;
        m["batch/informative_groups"] = b.Counts.Kept;
        m["batch/kept_groups"] = b.AllKeptGroups;
        m["batch/generation_batches"] = b.GenerationBatches;
        m["response_length/mean"] = gen.Average(r => (double)r.ResponseLength);
        m["response_length/max"] = gen.Max(r => r.ResponseLength);
        m["response_length/min"] = gen.Min(r => r.ResponseLength);
        m["response_length/clip_ratio"] = gen.Average(r => r.Ended ? 0.0 : 1.0);
        m["text/repetition_ratio"] = gen.Average(r => TextMetrics.RepetitionRatio(r.Completion));
    }

    /// <summary>Entropy metrics of the old policy (Archer's actor/entropy), split by a per-response quantile at ρ
    /// whatever the algorithm, so runs of different algorithms compare; and |ℓ_old − ℓ_rollout|.</summary>
    void OldPolicyMetrics(StepTensors? s, IDictionary<string, double> m)
    {
        // A rank without kept rows reports no tokens (its means weigh nothing in the reduction).
        var classes = s is null ? [] : device.PerResponseClasses(Config.EntropyQuantile, Config.TieRule == HighEntropyRule.Greater);
        double all = 0, high = 0, low = 0, diff = 0, diffMax = 0;
        long nAll = 0, nHigh = 0, nLow = 0;
        for (int i = 0; i < classes.Length; i++)
        {
            if (!(s!.Mask[i] > 0)) continue;
            double h = s.OldEntropies[i];
            all += h; nAll++;
            if (classes[i] == PolicyMath.ClassHigh) { high += h; nHigh++; } else { low += h; nLow++; }
            double d = Math.Abs((double)s.OldLogProbs[i] - s.RolloutLogProbs[i]);
            diff += d; diffMax = Math.Max(diffMax, d);
        }
        m["entropy/all"] = nAll > 0 ? all / nAll : double.NaN;
        m["entropy/high"] = nHigh > 0 ? high / nHigh : double.NaN;
        m["entropy/low"] = nLow > 0 ? low / nLow : double.NaN;
        m["entropy/high_share"] = nAll > 0 ? (double)nHigh / nAll : 0;
        m["rollout/logprob_diff_mean"] = nAll > 0 ? diff / nAll : 0;
        m["rollout/logprob_diff_max"] = diffMax;
        m["batch/valid_tokens"] = nAll;
    }

    void Finish(IDictionary<string, double> m, double lr, int optimizerSteps, List<double> gradNorms, int skippedBefore,
        double logProbSeconds, double updateSeconds, long updateTokens, RolloutBatch batch, Stopwatch stepClock)
    {
        m["optim/lr"] = lr;
        m["optim/steps"] = optimizerSteps;
        var finite = gradNorms.Where(double.IsFinite).ToList();
        m["optim/grad_norm"] = finite.Count > 0 ? finite.Average() : double.NaN;
        m["optim/grad_norm_max"] = finite.Count > 0 ? finite.Max() : double.NaN;
        m["skipped/steps"] = skippedTotal - skippedBefore;
        m["skipped/total"] = skippedTotal;
        double rolloutSeconds = batch.Seconds;
        m["time/rollout_s"] = rolloutSeconds;
        m["time/logprob_s"] = logProbSeconds;
        m["time/update_s"] = updateSeconds;
        m["time/step_s"] = stepClock.Elapsed.TotalSeconds;
        m["perf/rollout_tokens_per_s"] = rolloutSeconds > 0 ? batch.GeneratedTokens / rolloutSeconds : 0;
        m["perf/update_tokens_per_s"] = updateSeconds > 0 ? updateTokens / updateSeconds : 0;
        replicas?.ReduceMetrics(m, batch.Generated.Count, batch.Kept.Count);
    }

    List<SampleRecord> Samples(int step, RolloutBatch b)
    {
        var list = new List<SampleRecord>();
        if (Options.SampleEvery == 0 || step % Options.SampleEvery != 0) return list;
        for (int g = 0; g * b.GroupSize < b.Generated.Count && list.Count < Options.SamplesPerStep; g++)
        {
            var r = b.Generated[g * b.GroupSize];
            list.Add(new SampleRecord(step, r.ExampleIndex, r.Example.Prompt, r.Completion, r.Example.Answer, r.Correct, r.Reward, r.ResponseLength, r.Ended));
        }
        return list;
    }

    /// <summary>Sums of the loss results of one step's mini-batch calls.</summary>
    sealed class UpdateAccumulator
    {
        public int Calls, OptimizerSteps, Skipped;
        public double Loss, Policy, Kl, KlLow, KlHigh, PpoKl, FirstMaxAbsLogRatio;
        public readonly ClipStatistics Clips = new();
        public readonly List<double> GradNorms = [];

        public void Add(PolicyLossResult r)
        {
            Calls++;
            Loss += r.Loss; Policy += r.PolicyTerm; Kl += r.KlTerm; KlLow += r.KlLow; KlHigh += r.KlHigh; PpoKl += r.PpoKl;
            for (int c = 0; c < 2; c++)
            {
                Clips.Tokens[c] += r.Clips.Tokens[c];
                Clips.ClippedHigh[c] += r.Clips.ClippedHigh[c];
                Clips.ClippedLow[c] += r.Clips.ClippedLow[c];
                Clips.DualClipped[c] += r.Clips.DualClipped[c];
            }
        }

        public void Write(IDictionary<string, double> m)
        {
            double n = Math.Max(1, Calls);
            m["loss/total"] = Loss / n;
            m["loss/policy"] = Policy / n;
            m["loss/kl"] = Kl / n;
            m["loss/high_entropy_share"] = Clips.HighEntropyShare;
            m["kl/low"] = KlLow / n;
            m["kl/high"] = KlHigh / n;
            m["kl/all"] = (KlLow + KlHigh) / n;
            m["kl/ppo"] = PpoKl / n;
            m["clip/fraction"] = Clips.ClipFraction;
            m["clip/dual"] = Clips.DualClipFraction;
            m["clip/low/lower"] = Clips.ClipFractionLow(0);
            m["clip/low/upper"] = Clips.ClipFractionHigh(0);
            m["clip/high/lower"] = Clips.ClipFractionLow(1);
            m["clip/high/upper"] = Clips.ClipFractionHigh(1);
            m["ratio/first_max_abs_log_ratio"] = FirstMaxAbsLogRatio;
            m["batch/loss_calls"] = Calls;
        }
    }

    public void Dispose()
    {
        collector.Dispose();
        Optimizer.Dispose();
        reference?.Dispose();
        loss.Dispose();
        stepScalars.Dispose();
        device.Dispose();
    }
}
