using ArcherIlgpu.Rl.Losses;
using ArcherIlgpu.Runs;

namespace ArcherIlgpu.Rl.Algorithms;

/// <summary>
/// Named algorithm presets. Each is an <see cref="AlgorithmConfig"/>; they differ only in masks, clip
/// ranges, KL weights, aggregation and sampling:
/// <list type="bullet">
/// <item><c>archer</c>: archer-spec.md §9, the released code.</item>
/// <item><c>grpo</c>: the Archer paper's GRPO baseline (§4.2): clip 0.2/0.28, no KL, no classes; everything
/// else shared with Archer's trainer [inferred].</item>
/// <item><c>dapo</c>: the DAPO recipe (§4.3): clip 0.2/0.28, c = 10, global token mean, dynamic sampling
/// (3× generation, ≤ 10 batches), overlong shaping 4096 of 20480, ±1 reward, no KL, 1 PPO epoch, 512 prompts
/// in mini-batches of 32 [recipe].</item>
/// <item><c>entropy-mask</c>: 80/20 (§4.4): DAPO plus the batch-level top-20% entropy mask (≥), policy weight 0 on
/// the other tokens, which stay in the denominator.</item>
/// <item><c>ar-lopti</c>: AR-Lopti (§4.5): α = 0.3, η = 0.5, low-probability tokens first; its own clip
/// 0.2/0.24, KL 0.001 (k3) on all tokens, n = 8; the rest shared with Archer's trainer.</item>
/// </list>
/// </summary>
public static class AlgorithmRegistry
{
    static readonly Dictionary<string, Func<AlgorithmConfig>> presets = new(StringComparer.Ordinal)
    {
        ["archer"] = () => new AlgorithmConfig(),
        ["grpo"] = () => new AlgorithmConfig
        {
            Name = "grpo",
            Classification = EntropyClassification.None,
            Low = new ClassLossSettings(0.2, 0.28, 0.0),
            High = new ClassLossSettings(0.2, 0.28, 0.0),
            UseKl = false,
            KlAggregation = KlAggregation.SameAsPolicy,
        },
        ["dapo"] = Dapo,
        ["entropy-mask"] = () => Dapo() with
        {
            Name = "entropy-mask",
            Classification = EntropyClassification.Batch,
            EntropyQuantile = 0.8,
            TieRule = HighEntropyRule.GreaterOrEqual,
            Low = new ClassLossSettings(0.2, 0.28, 0.0, PolicyWeight: 0.0),
            High = new ClassLossSettings(0.2, 0.28, 0.0, PolicyWeight: 1.0),
        },
        ["ar-lopti"] = () => new AlgorithmConfig
        {
            Name = "ar-lopti",
            GroupSize = 8,
            Classification = EntropyClassification.None,
            Low = new ClassLossSettings(0.2, 0.24, 0.001),
            High = new ClassLossSettings(0.2, 0.24, 0.001),
            UseKl = true,
            KlAggregation = KlAggregation.SameAsPolicy,
            AdvantageReweighting = true,
            ReweightAlpha = 0.3,
            LowProbabilityIsolation = true,
            LowProbabilityEta = 0.5,
        },
    };

    static AlgorithmConfig Dapo() => new()
    {
        Name = "dapo",
        Classification = EntropyClassification.None,
        Low = new ClassLossSettings(0.2, 0.28, 0.0),
        High = new ClassLossSettings(0.2, 0.28, 0.0),
        UseKl = false,
        KlAggregation = KlAggregation.SameAsPolicy,
        DualClipC = 10.0,
        Aggregation = LossAggregation.TokenMean,
        Filter = GroupFilterMode.DynamicSampling,
        OversampleFactor = 3.0,
        MaxGenerationBatches = 10,
        OverlongShaping = true,
        OverlongBuffer = 4096,
        MaxResponseTokens = 20480,
        RewardCorrect = 1.0,
        RewardWrong = -1.0,
        PpoEpochs = 1,
        TrainBatchPrompts = 512,
        MiniBatchPrompts = 32,
        DivideByFullMiniBatch = false,
    };

    /// <summary>Other names an algorithm goes by: the papers call the entropy mask "80/20".</summary>
    static readonly Dictionary<string, string> aliases = new(StringComparer.Ordinal)
    {
        ["80/20"] = "entropy-mask",
        ["8020"] = "entropy-mask",
    };

    /// <summary>The registered names (aliases not included).</summary>
    public static IReadOnlyList<string> Names => presets.Keys.Order(StringComparer.Ordinal).ToArray();

    /// <summary>The names for help and error messages, each alias beside its algorithm: "entropy-mask (or 80/20, 8020)".</summary>
    public static string Describe() => string.Join(", ", Names.Select(n =>
    {
        var others = aliases.Where(a => a.Value == n).Select(a => a.Key).ToList();
        return others.Count == 0 ? n : $"{n} (or {string.Join(", ", others)})";
    }));

    /// <summary>The registered name <paramref name="name"/> stands for (itself, or the algorithm of an alias); null if unknown.</summary>
    public static string? Canonical(string name) =>
        presets.ContainsKey(name) ? name : aliases.TryGetValue(name, out var target) ? target : null;

    /// <summary>A fresh copy of the preset (by name or alias); unknown names fail with the list of valid ones.</summary>
    public static AlgorithmConfig Get(string name)
    {
        if (Canonical(name) is string known) return presets[known]();
        throw new ArgumentException($"unknown algorithm \"{name}\"; valid algorithms: {Describe()}", nameof(name));
    }

    /// <summary>The preset at a scale: <see cref="AlgorithmScale.Small"/> for small models on a CPU, or null for the paper's own scale.</summary>
    public static AlgorithmConfig Get(string name, AlgorithmScale? scale) => scale is null ? Get(name) : scale.ApplyTo(Get(name));

    /// <summary>Adds or replaces a preset.</summary>
    public static void Register(string name, Func<AlgorithmConfig> preset) => presets[name] = preset;
}

/// <summary>
/// How big an RL run is, apart from what makes the algorithm what it is: samples per prompt, prompts per
/// step and per optimizer step, learning rate and warm-up, response length. The presets carry the papers'
/// scale (64 prompts × 16 samples, lr 1e-6, 32,768-token responses: nothing moves in minutes on a CPU);
/// <see cref="Small"/> is the one small scale that <c>archer train-rl</c> defaults to and the demo starts from.
/// </summary>
public sealed record AlgorithmScale(int GroupSize, int PromptsPerStep, int MiniBatchPrompts, double LearningRate, int WarmupSteps, int MaxResponseTokens)
{
    /// <summary>
    /// 16 prompts × 8 samples in two optimizer steps, lr 5e-5 after 2 warm-up steps, responses up to 64 tokens.
    /// Measured: the demo (tiny GPT-2, 2-digit sums) gains with lr 1e-4 and 5e-5 and loses with 2e-4 and
    /// above; README's qwen2-tiny after SFT goes from held-out avg@8 0.579 to 0.703 in 1000 steps (about a
    /// minute on 2 CPU cores), 0.713 with 1e-4, and down to 0.48 with 3e-4 (300 steps).
    /// </summary>
    public static AlgorithmScale Small { get; } = new(GroupSize: 8, PromptsPerStep: 16, MiniBatchPrompts: 8, LearningRate: 5e-5, WarmupSteps: 2, MaxResponseTokens: 64);

    /// <summary>
    /// The preset with this scale. The warm-up's first step already moves (a short run cannot spend a step at
    /// lr 0), and DAPO's overlong buffer keeps its share: half the response length.
    /// </summary>
    public AlgorithmConfig ApplyTo(AlgorithmConfig preset)
    {
        var c = preset with
        {
            GroupSize = GroupSize,
            TrainBatchPrompts = PromptsPerStep,
            MiniBatchPrompts = MiniBatchPrompts,
            LearningRate = LearningRate,
            WarmupSteps = WarmupSteps,
            Warmup = WarmupRule.StepPlusOneOverWarmup,
            MaxResponseTokens = MaxResponseTokens,
        };
        return c.OverlongShaping ? c with { OverlongBuffer = Math.Max(1, MaxResponseTokens / 2) } : c;
    }
}

/// <summary>
/// key=value overrides of an <see cref="AlgorithmConfig"/>, bound by the project's one config binder
/// (<see cref="ConfigBinder"/>): on the command line every setting is <c>rl.KEY=VALUE</c> (train-rl's and
/// the demo's <c>--set</c> alike), KEY being the snake_case property name, dotted for a class's fields
/// (<c>rl.low.clip_high=0.3</c>). Values parse as the property's type (numbers in invariant culture,
/// true/false, enum names in any case with '-' or '_' between words, "inf" for infinity). Unknown keys
/// fail with "did you mean" and the valid keys; unparsable values name the key, the value and what was expected.
/// </summary>
public static class AlgorithmOverrides
{
    /// <summary>The prefix of every algorithm setting on the command line.</summary>
    public const string Prefix = "rl.";

    /// <summary>The section the binder sees, so that keys and messages read "rl.KEY".</summary>
    sealed record Root
    {
        public AlgorithmConfig Rl { get; init; } = new();
    }

    /// <summary>Applies "rl.KEY=VALUE" strings in order (a key without "rl." is refused with "did you mean 'rl.KEY'").</summary>
    public static AlgorithmConfig ApplySets(AlgorithmConfig config, IEnumerable<string> sets) =>
        ConfigBinder.Bind(new Root { Rl = config }, sets: sets).Rl;

    /// <summary>Applies KEY=VALUE pairs whose keys are written without the "rl." prefix (e.g. the demo's stored rl.overrides).</summary>
    public static AlgorithmConfig Apply(AlgorithmConfig config, IEnumerable<KeyValuePair<string, string>> overrides) =>
        ApplySets(config, overrides.Select(kv => $"{Prefix}{kv.Key}={kv.Value}"));

    public static AlgorithmConfig Apply(AlgorithmConfig config, string key, string value) => Apply(config, [KeyValuePair.Create(key, value)]);

    /// <summary>Every valid key (without "rl.") with its current value, as the binder reads it back, e.g. for train-rl's config.json.</summary>
    public static IReadOnlyList<(string Key, string Value)> Describe(AlgorithmConfig config) => ConfigWriter.Flatten(config);

    /// <summary>Whether <paramref name="key"/> (without "rl.") names a setting or a group of settings ("low").</summary>
    public static bool IsKey(string key) => Keys.Any(k => k == key || k.StartsWith(key + ".", StringComparison.Ordinal));

    public static IReadOnlyList<string> Keys => ConfigBinder.Keys<AlgorithmConfig>();
}
