using System.Globalization;
using System.Reflection;
using System.Text;
using ArcherIlgpu.Rl.Losses;

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

    public static IReadOnlyList<string> Names => presets.Keys.Order(StringComparer.Ordinal).ToArray();

    /// <summary>A fresh copy of the preset; unknown names fail with the list of valid ones.</summary>
    public static AlgorithmConfig Get(string name)
    {
        if (presets.TryGetValue(name, out var make)) return make();
        throw new ArgumentException($"unknown algorithm \"{name}\"; valid algorithms: {string.Join(", ", Names)}", nameof(name));
    }

    /// <summary>Adds or replaces a preset.</summary>
    public static void Register(string name, Func<AlgorithmConfig> preset) => presets[name] = preset;
}

/// <summary>
/// key=value overrides of an <see cref="AlgorithmConfig"/>: keys are snake_case property names
/// ("ppo_epochs", "low.clip_high"); values parse as the property's type (numbers in invariant culture,
/// true/false, enum names in any case with '-' or '_' between words, "inf" for infinity). Unknown keys
/// and unparsable values fail naming the key, the value and what was expected.
/// </summary>
public static class AlgorithmOverrides
{
    public static AlgorithmConfig Apply(AlgorithmConfig config, IEnumerable<KeyValuePair<string, string>> overrides)
    {
        foreach (var (key, value) in overrides) config = Apply(config, key, value);
        return config;
    }

    public static AlgorithmConfig Apply(AlgorithmConfig config, string key, string value)
    {
        var path = key.Split('.');
        return (AlgorithmConfig)SetPath(config, path, 0, value, key);
    }

    /// <summary>Every valid key with its current value, e.g. for printing the resolved config.</summary>
    public static IReadOnlyList<(string Key, string Value)> Describe(AlgorithmConfig config)
    {
        var list = new List<(string, string)>();
        void Walk(object obj, string prefix)
        {
            foreach (var p in Settable(obj.GetType()))
            {
                var v = p.GetValue(obj);
                if (p.PropertyType == typeof(ClassLossSettings)) Walk(v!, prefix + SnakeCase(p.Name) + ".");
                else list.Add((prefix + SnakeCase(p.Name), Format(v)));
            }
        }
        Walk(config, "");
        return list;
    }

    public static IReadOnlyList<string> Keys => Describe(new AlgorithmConfig()).Select(k => k.Key).ToArray();

    static object SetPath(object target, string[] path, int depth, string value, string fullKey)
    {
        var props = Settable(target.GetType());
        var prop = props.FirstOrDefault(p => SnakeCase(p.Name) == path[depth])
            ?? throw new ArgumentException($"unknown algorithm setting \"{fullKey}\"; valid settings: {string.Join(", ", Keys)}");
        var copy = Clone(target);
        if (depth == path.Length - 1)
        {
            if (prop.PropertyType == typeof(ClassLossSettings))
                throw new ArgumentException($"\"{fullKey}\" is a group; set one of its fields, e.g. {fullKey}.clip_low");
            prop.SetValue(copy, Parse(prop.PropertyType, value, fullKey));
        }
        else
        {
            if (prop.PropertyType != typeof(ClassLossSettings))
                throw new ArgumentException($"unknown algorithm setting \"{fullKey}\"; \"{path[depth]}\" has no fields");
            prop.SetValue(copy, SetPath(prop.GetValue(target)!, path, depth + 1, value, fullKey));
        }
        return copy;
    }

    static PropertyInfo[] Settable(Type t) =>
        t.GetProperties(BindingFlags.Public | BindingFlags.Instance).Where(p => p.CanWrite && p.GetIndexParameters().Length == 0 && p.Name != "EqualityContract").ToArray();

    static object Clone(object o) =>
        typeof(object).GetMethod("MemberwiseClone", BindingFlags.NonPublic | BindingFlags.Instance)!.Invoke(o, null)!;

    static object Parse(Type type, string value, string key)
    {
        var v = value.Trim();
        string Expected(string what) => $"setting \"{key}\": expected {what}, got \"{value}\"";
        if (type == typeof(string)) return v;
        if (type == typeof(int))
            return int.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out int i) ? i : throw new ArgumentException(Expected("an integer"));
        if (type == typeof(double))
        {
            if (v is "inf" or "infinity" or "+inf") return double.PositiveInfinity;
            return double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out double d) && !double.IsNaN(d) ? d
                : throw new ArgumentException(Expected("a number"));
        }
        if (type == typeof(bool))
            return bool.TryParse(v, out bool b) ? b : throw new ArgumentException(Expected("true or false"));
        if (type.IsEnum)
        {
            var norm = v.Replace("-", "").Replace("_", "");
            foreach (var name in Enum.GetNames(type))
                if (string.Equals(name, norm, StringComparison.OrdinalIgnoreCase)) return Enum.Parse(type, name);
            throw new ArgumentException(Expected("one of " + string.Join(", ", Enum.GetNames(type).Select(KebabCase))));
        }
        throw new ArgumentException($"setting \"{key}\" has type {type.Name}, which cannot be set from text");
    }

    static string Format(object? v) => v switch
    {
        double d => d.ToString("R", CultureInfo.InvariantCulture),
        Enum e => KebabCase(e.ToString()),
        bool b => b ? "true" : "false",
        null => "",
        _ => Convert.ToString(v, CultureInfo.InvariantCulture) ?? "",
    };

    static string SnakeCase(string name) => Separate(name, '_');
    static string KebabCase(string name) => Separate(name, '-');

    static string Separate(string name, char sep)
    {
        var sb = new StringBuilder();
        for (int i = 0; i < name.Length; i++)
        {
            char c = name[i];
            if (char.IsUpper(c) && i > 0) sb.Append(sep);
            sb.Append(char.ToLowerInvariant(c));
        }
        return sb.ToString();
    }
}
