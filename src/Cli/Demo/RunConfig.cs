using ArcherIlgpu.Model;
using System.Globalization;
using ArcherIlgpu.Kernels;
using ArcherIlgpu.Rl.Algorithms;
using ArcherIlgpu.Rl.Tasks;
using ArcherIlgpu.Runs;

namespace ArcherIlgpu.Cli.Demo;

/// <summary>
/// Everything one <c>archer demo</c> run does: the task, the model shape, the SFT that makes the starting
/// policy, the RL algorithm and its budget, the evaluation, the seed, the device and how often to checkpoint.
/// Bound by <see cref="ConfigBinder"/> (keys are the snake_case names, dotted for sections:
/// <c>rl.group_size=8</c>), saved as the run's config.json, and read back to resume.
/// </summary>
public sealed record RunConfig
{
    /// <summary>Part of the run folder's name.</summary>
    public string Name { get; init; } = "demo";
    public TaskSettings Task { get; init; } = new();
    public ModelSettings Model { get; init; } = new();
    public SftSettings Sft { get; init; } = new();
    public RlSettings Rl { get; init; } = new();
    public EvalSettings Eval { get; init; } = new();
    /// <summary>Seeds the model's initialisation, the SFT data and order, the rollouts and the evaluation samples.</summary>
    public ulong Seed { get; init; } = 1;
    /// <summary>auto, cpu, ilgpu-cpu, cuda or opencl.</summary>
    public string Device { get; init; } = "auto";
    /// <summary>Save a checkpoint every this many steps (SFT and RL steps alike); a resumed run loses at most these.</summary>
    public int CheckpointEvery { get; init; } = 100;
    /// <summary>How many of the newest checkpoints to keep (0 keeps all).</summary>
    public int KeepCheckpoints { get; init; } = 2;

    /// <summary>Every problem with the values, each naming its key; empty when the config is usable.</summary>
    public IEnumerable<string> Validate()
    {
        var problems = new List<string>();
        void Require(bool ok, string message) { if (!ok) problems.Add(message); }

        if (!TaskRegistry.Names.Contains(Task.Name))
            problems.Add($"task.name: unknown task '{Task.Name}'; valid tasks: {string.Join(", ", TaskRegistry.Names)}");
        else
        {
            try { CreateTask(); }
            catch (Exception e) when (e is TaskDataException or ArgumentException) { problems.Add("task.options: " + e.Message); }
        }
        if (!Models.PresetNames.Contains(Model.Preset.Trim().ToLowerInvariant()))
            problems.Add($"model.preset: unknown preset '{Model.Preset}'; valid presets: {string.Join(", ", Models.PresetNames)}");
        Require(Sft.Steps >= 0, $"sft.steps must be >= 0 (0 skips SFT), got {Sft.Steps}");
        Require(Sft.BatchSize >= 1, $"sft.batch_size must be >= 1, got {Sft.BatchSize}");
        Require(Sft.LearningRate > 0 && double.IsFinite(Sft.LearningRate), $"sft.learning_rate must be a positive number, got {Format(Sft.LearningRate)}");
        Require(Sft.WarmupSteps >= 0, $"sft.warmup_steps must be >= 0, got {Sft.WarmupSteps}");
        Require(Sft.Examples >= 1, $"sft.examples must be >= 1, got {Sft.Examples}");
        Require(Sft.CorrectShare >= 0 && Sft.CorrectShare <= 1, $"sft.correct_share must be in [0, 1], got {Format(Sft.CorrectShare)}");
        Require(AlgorithmRegistry.Names.Contains(Rl.Algorithm),
            $"rl.algorithm: unknown algorithm '{Rl.Algorithm}'; valid: {string.Join(", ", AlgorithmRegistry.Names)}");
        Require(Rl.Steps >= 0, $"rl.steps must be >= 0, got {Rl.Steps}");
        Require(Rl.GroupSize >= 2, $"rl.group_size must be >= 2 (a group of one has no baseline to compare with), got {Rl.GroupSize}");
        Require(Rl.PromptsPerStep >= 1, $"rl.prompts_per_step must be >= 1, got {Rl.PromptsPerStep}");
        Require(Rl.MiniBatchPrompts >= 1 && Rl.MiniBatchPrompts <= Rl.PromptsPerStep,
            $"rl.mini_batch_prompts must be in 1..rl.prompts_per_step ({Rl.PromptsPerStep}), got {Rl.MiniBatchPrompts}");
        Require(Rl.LearningRate >= 0 && double.IsFinite(Rl.LearningRate), $"rl.learning_rate must be >= 0, got {Format(Rl.LearningRate)}");
        Require(Rl.EntropyQuantile is null || Rl.EntropyQuantile > 0 && Rl.EntropyQuantile < 1,
            $"rl.entropy_quantile (ρ) must be in (0, 1), got {Format(Rl.EntropyQuantile ?? 0)}");
        Require(Rl.MaxResponseTokens >= 1, $"rl.max_response_tokens must be >= 1, got {Rl.MaxResponseTokens}");
        Require(Rl.SampleEvery >= 0, $"rl.sample_every must be >= 0 (0 = never), got {Rl.SampleEvery}");
        Require(Eval.Problems >= 1, $"eval.problems must be >= 1, got {Eval.Problems}");
        Require(Eval.Samples >= 1, $"eval.samples must be >= 1, got {Eval.Samples}");
        Require(Eval.Temperature >= 0 && double.IsFinite(Eval.Temperature), $"eval.temperature must be >= 0, got {Format(Eval.Temperature)}");
        if (!Devices.AllNames.Contains(Device.Trim().ToLowerInvariant()) && Device.Trim().ToLowerInvariant() != "auto")
            problems.Add($"device: unknown device '{Device}'; valid: auto, {string.Join(", ", Devices.AllNames.Where(n => n != "auto"))}");
        Require(CheckpointEvery >= 1, $"checkpoint_every must be >= 1, got {CheckpointEvery}");
        Require(KeepCheckpoints >= 0, $"keep_checkpoints must be >= 0 (0 keeps all), got {KeepCheckpoints}");
        if (problems.Count == 0 && AlgorithmRegistry.Names.Contains(Rl.Algorithm))
        {
            try { Algorithm(); }
            catch (ArgumentException e) { problems.Add("rl: " + e.Message.Replace("\n  ", "; ")); }
        }
        return problems;
    }

    static string Format(double v) => v.ToString("G", CultureInfo.InvariantCulture);

    public ITask CreateTask() => TaskRegistry.Create(Task.Name, RlCommandSupport.ParsePairs(Task.Options, "task.options").ToDictionary(kv => kv.Key, kv => kv.Value));

    /// <summary>The algorithm's preset with this run's scale applied (lengths are fitted to the model later), then rl.overrides.</summary>
    public AlgorithmConfig Algorithm()
    {
        var c = AlgorithmRegistry.Get(Rl.Algorithm) with
        {
            GroupSize = Rl.GroupSize,
            TrainBatchPrompts = Rl.PromptsPerStep,
            MiniBatchPrompts = Rl.MiniBatchPrompts,
            LearningRate = Rl.LearningRate,
            WarmupSteps = Rl.WarmupSteps,
            Warmup = WarmupRule.StepPlusOneOverWarmup,
            MaxResponseTokens = Rl.MaxResponseTokens,
        };
        if (Rl.EntropyQuantile is double rho) c = c with { EntropyQuantile = rho };
        if (c.OverlongShaping) c = c with { OverlongBuffer = Math.Max(1, Rl.MaxResponseTokens / 2) };
        c = AlgorithmOverrides.Apply(c, RlCommandSupport.ParsePairs(Rl.Overrides, "rl.overrides"));
        return c.Validate();
    }
}

/// <summary>The task and its options as key=value strings (e.g. "max_digits=2"; see <see cref="TaskRegistry"/>).</summary>
public sealed record TaskSettings
{
    public string Name { get; init; } = "arithmetic";
    public List<string> Options { get; init; } = ["min_digits=2", "max_digits=2", "operators=+"];
}

/// <summary>A fresh model of a preset shape (any family); the vocabulary comes from the task's character tokenizer.</summary>
public sealed record ModelSettings
{
    public string Preset { get; init; } = "tiny";
}

/// <summary>Supervised fine-tuning on the task's worked solutions: the starting policy.</summary>
public sealed record SftSettings
{
    /// <summary>Optimizer steps (2000 learn 2-digit addition with the tiny preset, measured).</summary>
    public int Steps { get; init; } = 2000;
    public int BatchSize { get; init; } = 32;
    public double LearningRate { get; init; } = 5e-3;
    public int WarmupSteps { get; init; } = 30;
    /// <summary>Distinct training problems generated from the task (drawn from a stream the evaluation never uses).</summary>
    public int Examples { get; init; } = 4000;
    /// <summary>
    /// Share of SFT demonstrations whose answer is right; the others are off by one (either way), like a
    /// sloppy teacher's. Below 1 the SFT model imitates the mistakes, and only a verifier (RL) can tell them apart.
    /// Applies to integer answers; 1 keeps every demonstration correct.
    /// </summary>
    public double CorrectShare { get; init; } = 0.3;
}

/// <summary>The RL phase: the algorithm's preset scaled to a small model (these keys), then any other setting in <see cref="Overrides"/>.</summary>
public sealed record RlSettings
{
    public string Algorithm { get; init; } = "archer";
    public int Steps { get; init; } = 1500;
    /// <summary>G, completions sampled per prompt.</summary>
    public int GroupSize { get; init; } = 8;
    public int PromptsPerStep { get; init; } = 16;
    public int MiniBatchPrompts { get; init; } = 8;
    /// <summary>Measured on the demo: 5e-4 and 2e-4 lower held-out accuracy within 150 steps, 1e-4 and below raise it.</summary>
    public double LearningRate { get; init; } = 5e-5;
    public int WarmupSteps { get; init; } = 2;
    /// <summary>ρ, the token-entropy quantile above which a token is "high entropy"; null keeps the algorithm's (0.8).</summary>
    public double? EntropyQuantile { get; init; }
    public int MaxResponseTokens { get; init; } = 8;
    /// <summary>Write sample completions to samples.jsonl every this many steps (0 = never).</summary>
    public int SampleEvery { get; init; } = 25;
    /// <summary>Any other algorithm setting as key=value, e.g. "low.clip_high=0.3" (see AlgorithmConfig).</summary>
    public List<string> Overrides { get; init; } = [];
}

/// <summary>Held-out evaluation before and after RL: n samples per problem at a temperature, plus greedy.</summary>
public sealed record EvalSettings
{
    public int Problems { get; init; } = 200;
    public int Samples { get; init; } = 8;
    public double Temperature { get; init; } = 0.8;
}

/// <summary>The named starting points of <c>archer demo --preset NAME</c>.</summary>
public static class RunPresets
{
    public static RunConfig Demo { get; } = new();

    /// <summary>Seconds on a CPU: for tests and for trying the command.</summary>
    public static RunConfig Quick { get; } = new()
    {
        Name = "quick",
        Task = new TaskSettings { Options = ["min_digits=1", "max_digits=1", "operators=+"] },
        Sft = new SftSettings { Steps = 150, Examples = 500, CorrectShare = 0.3 },
        Rl = new RlSettings { Steps = 6, GroupSize = 4, PromptsPerStep = 4, MiniBatchPrompts = 2, SampleEvery = 2 },
        Eval = new EvalSettings { Problems = 16, Samples = 4 },
        CheckpointEvery = 2,
    };

    public static PresetRegistry<RunConfig> Registry { get; } = new("run preset")
    {
        { "demo", Demo, "2-digit addition: SFT on demonstrations 70% off by one, then Archer with the verifier; about 2-3 minutes on a 2-core CPU" },
        { "quick", Quick, "the same pipeline on 1-digit addition at toy scale: seconds on a CPU (tests)" },
    };
}
