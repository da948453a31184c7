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
    /// <summary>Matmul operand precision: fp32, tf32 or bf16 (tensor cores; see <c>archer help train-sft</c>'s --precision).</summary>
    public string Precision { get; init; } = "fp32";
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
            catch (Exception e) when (e is TaskDataException or ArgumentException or RlCommandException) { problems.Add("task.options: " + e.Message); }
        }
        if (!Models.PresetNames.Contains(Model.Preset.Trim().ToLowerInvariant()))
            problems.Add($"model.preset: unknown preset '{Model.Preset}'; valid presets: {string.Join(", ", Models.PresetNames)}");
        Require(Sft.Steps >= 0, $"sft.steps must be >= 0 (0 skips SFT), got {Sft.Steps}");
        Require(Sft.BatchSize >= 1, $"sft.batch_size must be >= 1, got {Sft.BatchSize}");
        Require(Sft.LearningRate > 0 && double.IsFinite(Sft.LearningRate), $"sft.learning_rate must be a positive number, got {Format(Sft.LearningRate)}");
        Require(Sft.WarmupSteps >= 0, $"sft.warmup_steps must be >= 0, got {Sft.WarmupSteps}");
        Require(Sft.Examples >= 1, $"sft.examples must be >= 1, got {Sft.Examples}");
        Require(Sft.CorrectShare >= 0 && Sft.CorrectShare <= 1, $"sft.correct_share must be in [0, 1], got {Format(Sft.CorrectShare)}");
        Require(AlgorithmRegistry.Canonical(Rl.Algorithm) is not null,
            $"rl.algorithm: unknown algorithm '{Rl.Algorithm}'; valid: {AlgorithmRegistry.Describe()}");
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
        Require(Devices.PrecisionNames.Contains(Precision.Trim().ToLowerInvariant()),
            $"precision: unknown precision '{Precision}'; valid: {string.Join(", ", Devices.PrecisionNames)}");
        Require(CheckpointEvery >= 1, $"checkpoint_every must be >= 1, got {CheckpointEvery}");
        Require(KeepCheckpoints >= 0, $"keep_checkpoints must be >= 0 (0 keeps all), got {KeepCheckpoints}");
        if (problems.Count == 0 && AlgorithmRegistry.Canonical(Rl.Algorithm) is not null)
        {
            try { Algorithm(); }
            catch (ArgumentException e) { problems.Add("rl: " + e.Message.Replace("\n  ", "; ")); }
        }
        return problems;
    }

    static string Format(double v) => v.ToString("G", CultureInfo.InvariantCulture);

    public ITask CreateTask() => TaskRegistry.Create(Task.Name, RlCommandSupport.ParsePairs(Task.Options, "task.options").ToDictionary(kv => kv.Key, kv => kv.Value));

    /// <summary>The algorithm's preset at this run's scale (lengths are fitted to the model later), then the other rl.* settings.</summary>
    public AlgorithmConfig Algorithm()
    {
        var scale = new AlgorithmScale(Rl.GroupSize, Rl.PromptsPerStep, Rl.MiniBatchPrompts, Rl.LearningRate, Rl.WarmupSteps, Rl.MaxResponseTokens);
        var c = AlgorithmRegistry.Get(Rl.Algorithm, scale);
        if (Rl.EntropyQuantile is double rho) c = c with { EntropyQuantile = rho };
        c = AlgorithmOverrides.Apply(c, RlCommandSupport.ParsePairs(Rl.Overrides, "rl.overrides"));
        return c.Validate();
    }

    /// <summary>
    /// Binds --set items (and the preset or JSON file through <paramref name="bind"/>) so that every algorithm
    /// setting is <c>rl.KEY</c>, as in train-rl: the keys of <see cref="RlSettings"/> bind directly; any other
    /// algorithm key (<c>rl.low.clip_high=0.3</c>, <c>rl.ppo_epochs=2</c>) is checked by the algorithm's binder
    /// and kept, in order, after the run's <see cref="RlSettings.Overrides"/>.
    /// </summary>
    public static RunConfig Bind(Func<IEnumerable<string>, RunConfig> bind, IEnumerable<string> sets)
    {
        var own = new List<string>();
        var algorithm = new List<string>();
        foreach (var set in sets)
        {
            if (UnknownRlKey(set) is { } unknown) throw unknown;
            (IsAlgorithmOnlyKey(set) ? algorithm : own).Add(set);
        }
        var config = bind(own);
        if (algorithm.Count == 0) return config;
        AlgorithmOverrides.ApplySets(AlgorithmConfigFor(config), algorithm);   // did-you-mean and types, before anything runs
        var extra = algorithm.Select(a => a[AlgorithmOverrides.Prefix.Length..]);
        config = config with { Rl = config.Rl with { Overrides = [.. config.Rl.Overrides, .. extra] } };
        ConfigBinder.Validate(config);
        return config;
    }

    static AlgorithmConfig AlgorithmConfigFor(RunConfig config) =>
        AlgorithmRegistry.Canonical(config.Rl.Algorithm) is null ? new AlgorithmConfig() : config.Algorithm();

    /// <summary>
    /// The refusal of "rl.KEY=VALUE" where KEY is neither the demo's nor the algorithm's (null otherwise): the
    /// binder's own message would suggest and list only <see cref="RlSettings"/>' keys, this one both kinds.
    /// </summary>
    static ConfigException? UnknownRlKey(string set)
    {
        int eq = set.IndexOf('=');
        if (eq <= 0 || !set.StartsWith(AlgorithmOverrides.Prefix, StringComparison.Ordinal)) return null;
        string key = set[..eq].Trim();
        string first = key[AlgorithmOverrides.Prefix.Length..].Split('.')[0];
        var demo = ConfigBinder.Keys<RlSettings>();
        if (demo.Contains(first) || AlgorithmOverrides.IsKey(first)) return null;
        var own = demo.Select(k => AlgorithmOverrides.Prefix + k).ToList();
        var algorithm = AlgorithmOverrides.Keys.Except(demo).Select(k => AlgorithmOverrides.Prefix + k).ToList();
        return new ConfigException($"unknown config key '{key}' in --set {set}.{ConfigBinder.DidYouMean(key, [.. own, .. algorithm])} " +
                                   $"Valid keys in section 'rl': {string.Join(", ", own)}; and the algorithm's: {string.Join(", ", algorithm)}", key);
    }

    /// <summary>"rl.KEY=VALUE" where KEY is an algorithm setting that <see cref="RlSettings"/> has no key for.</summary>
    static bool IsAlgorithmOnlyKey(string set)
    {
        int eq = set.IndexOf('=');
        if (eq <= 0 || !set.StartsWith(AlgorithmOverrides.Prefix, StringComparison.Ordinal)) return false;
        string key = set[AlgorithmOverrides.Prefix.Length..eq].Trim();
        string first = key.Split('.')[0];
        return !ConfigBinder.Keys<RlSettings>().Contains(first) && AlgorithmOverrides.IsKey(first);
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

/// <summary>
/// The RL phase: the algorithm's preset at <see cref="AlgorithmScale.Small"/> (these keys, the same as
/// train-rl's), then any other algorithm setting, given as <c>rl.KEY=VALUE</c> and kept in <see cref="Overrides"/>.
/// </summary>
public sealed record RlSettings
{
    public string Algorithm { get; init; } = "archer";
    public int Steps { get; init; } = 1500;
    /// <summary>G, completions sampled per prompt.</summary>
    public int GroupSize { get; init; } = AlgorithmScale.Small.GroupSize;
    public int PromptsPerStep { get; init; } = AlgorithmScale.Small.PromptsPerStep;
    public int MiniBatchPrompts { get; init; } = AlgorithmScale.Small.MiniBatchPrompts;
    /// <summary>Measured on the demo: 5e-4 and 2e-4 lower held-out accuracy within 150 steps, 1e-4 and below raise it.</summary>
    public double LearningRate { get; init; } = AlgorithmScale.Small.LearningRate;
    public int WarmupSteps { get; init; } = AlgorithmScale.Small.WarmupSteps;
    /// <summary>ρ, the token-entropy quantile above which a token is "high entropy"; null keeps the algorithm's (0.8).</summary>
    public double? EntropyQuantile { get; init; }
    /// <summary>The demo's sums have at most 3 digits and the end token, so 8 tokens is plenty.</summary>
    public int MaxResponseTokens { get; init; } = 8;
    /// <summary>Write sample completions to samples.jsonl every this many steps (0 = never).</summary>
    public int SampleEvery { get; init; } = 25;
    /// <summary>The other algorithm settings given as rl.KEY=VALUE, stored as "KEY=VALUE" (e.g. "low.clip_high=0.3"; see AlgorithmConfig).</summary>
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
        { "demo", Demo, "2-digit addition: SFT on demonstrations 70% off by one, then Archer with the verifier; about 30 s on a 2-core CPU" },
        { "quick", Quick, "the same pipeline on 1-digit addition at toy scale: seconds on a CPU (tests)" },
    };
}
