using ArcherIlgpu.Cli.Demo;
using ArcherIlgpu.Kernels;
using ArcherIlgpu.Model;
using ArcherIlgpu.Model.Tokenizers;
using ArcherIlgpu.Rl.Algorithms;
using ArcherIlgpu.Rl.Training;

namespace ArcherIlgpu.Cli;

/// <summary>
/// The <see cref="MemoryEstimate"/> of each command's job, checked before its activations, KV cache and
/// rollout buffers are allocated: a size that cannot fit is refused, naming the settings, instead of
/// hanging or dying with OutOfMemoryException. Lengths are the most a job can reach (the context length
/// where the data does not fix it), since the buffers are sized for them.
/// </summary>
public static class MemoryChecks
{
    /// <summary>Host bytes per position of the RL step's rollouts and step tensors: tokens, targets, mask,
    /// rollout/old/reference log-probs, entropies, advantages and token classes, plus the per-mini-batch copies.</summary>
    const int RlHostBytesPerPosition = 64;
    /// <summary>Host bytes of one evaluated completion: its record, text and tokens (a few dozen characters).</summary>
    const int EvalHostBytesPerCompletion = 256;

    /// <summary>Supervised training: the model with AdamW, and the activations of batches of <paramref name="batch"/> sequences of <paramref name="T"/> positions.</summary>
    public static MemoryEstimate Sft(IModelConfig model, long batch, long T, string settings) =>
        new MemoryEstimate(settings).Model(model, optimizer: true).Training(model, batch, Math.Min(T, model.MaxT));

    /// <summary>Sampling <paramref name="rows"/> sequences at once after prompts of up to <paramref name="promptT"/> tokens.</summary>
    public static MemoryEstimate Generation(IModelConfig model, long rows, long promptT, string settings) =>
        new MemoryEstimate(settings).Model(model, optimizer: false).Generation(model, rows, Math.Clamp(promptT, 1, model.MaxT));

    /// <summary>
    /// Evaluation as <see cref="ModelSampler"/> runs it: <paramref name="problems"/> × <paramref name="samples"/>
    /// completions, at most <paramref name="maxRows"/> at a time, each batch followed by a training forward for the entropies.
    /// </summary>
    public static MemoryEstimate Eval(IModelConfig model, long problems, long samples, string settings, int maxRows = 512)
    {
        long completions = problems * samples;   // both below 2^31: no overflow
        long rows = Math.Min(maxRows, completions);
        return new MemoryEstimate(settings).Model(model, optimizer: false)
            .Generation(model, rows, model.MaxT - 1)
            .Training(model, rows, model.MaxT, "entropy forward")
            .Add("completions", () => checked(completions * EvalHostBytesPerCompletion), host: true);
    }

    /// <summary>
    /// One RL step of <see cref="RlTrainer"/>: the policy with AdamW, the frozen KL reference if the loss has a
    /// KL term, generation of a prompt batch (rows = prompts × G, at most <paramref name="maxRowsPerGeneration"/>
    /// at a time), the training forward/backward of a micro-batch, and the host-side rollouts.
    /// </summary>
    public static MemoryEstimate Rl(IModelConfig model, AlgorithmConfig a, int microBatch, int maxRowsPerGeneration, string settings)
    {
        var e = new MemoryEstimate(settings);
        long prompts = a.Filter == GroupFilterMode.DynamicSampling ? (long)Math.Ceiling(a.TrainBatchPrompts * a.OversampleFactor) : a.TrainBatchPrompts;
        long rows = prompts * a.GroupSize;   // both below 2^31: no overflow
        long genRows = maxRowsPerGeneration > 0 ? Math.Min(rows, maxRowsPerGeneration) : rows;
        long T = Math.Min(model.MaxT, (long)a.MaxPromptTokens + a.MaxResponseTokens);
        long mini = (long)a.MiniBatchPrompts * a.GroupSize;
        long micro = microBatch > 0 ? Math.Min(microBatch, mini) : mini;
        e.Model(model, optimizer: true);
        if (RlTrainer.UsesReference(a)) e.Model(model, optimizer: false, "KL reference model");
        e.Generation(model, genRows, Math.Min(a.MaxPromptTokens, model.MaxT - 1));
        e.Training(model, micro, T);
        return e.Add("rollouts and step tensors", () => checked(rows * T * RlHostBytesPerPosition), host: true);
    }

    /// <summary>
    /// The demo's phases (SFT, the evaluations, RL), each against the device the config names, before the
    /// run folder is created. The demo's fresh model is the preset sized to the arithmetic char tokenizer.
    /// </summary>
    public static void RequireDemoFits(RunConfig config)
    {
        var shape = Models.Preset(config.Model.Preset).WithVocabSize(CharTokenizer.ForArithmetic().VocabSize);
        var algorithm = TrainRlCommand.FitToModel(config.Algorithm(), shape, TextWriter.Null);
        var phases = new Func<MemoryEstimate>[]
        {
            () => Sft(shape, config.Sft.BatchSize, shape.MaxT, $"sft.batch_size={config.Sft.BatchSize}"),
            () => Eval(shape, config.Eval.Problems, config.Eval.Samples, $"eval.problems={config.Eval.Problems}, eval.samples={config.Eval.Samples}"),
            () => Rl(shape, algorithm, 0, 0, $"rl.prompts_per_step={config.Rl.PromptsPerStep}, rl.group_size={config.Rl.GroupSize}, " +
                                              $"rl.mini_batch_prompts={config.Rl.MiniBatchPrompts}, rl.max_response_tokens={config.Rl.MaxResponseTokens}"),
        };
        var device = Devices.Memory(config.Device);
        foreach (var phase in phases) phase().RequireFits(device.Name, device.HostMemory, device.CapacityBytes);
    }
}
