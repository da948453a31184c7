namespace ArcherIlgpu.Runs.Tests;

public enum Scheduler { Constant, LinearWarmup, CosineDecay }

/// <summary>Positional, like AlgorithmConfig's ClassLossSettings.</summary>
public sealed record ClipSettings(double ClipLow, double ClipHigh, double KlCoef = 0.001);

public sealed record OptimSettings
{
    public double LearningRate { get; init; } = 1e-4;
    public float Beta2 { get; init; } = 0.999f;
    public Scheduler Schedule { get; init; } = Scheduler.LinearWarmup;
}

public sealed record TestConfig
{
    public string Name { get; init; } = "tiny";
    public int Steps { get; init; } = 100;
    public long Seed { get; init; } = 42;
    public bool UseKl { get; init; } = true;
    public double DualClipC { get; init; } = 10;
    public int? MaxTokens { get; init; }
    public string? Note { get; init; }
    public int[] EvalK { get; init; } = [1, 4];
    public ClipSettings Low { get; init; } = new(0.2, 0.2);
    public OptimSettings Algo { get; init; } = new();
    /// <summary>Computed: not a key.</summary>
    public int HalfSteps => Steps / 2;

    public void Validate()
    {
        if (Steps < 1) throw new ArgumentException($"steps must be >= 1, got {Steps}");
    }

    // arrays are compared by reference in records; compare their contents
    public bool Equals(TestConfig? other) => other != null && Name == other.Name && Steps == other.Steps && Seed == other.Seed
        && UseKl == other.UseKl && DualClipC.Equals(other.DualClipC) && MaxTokens == other.MaxTokens && Note == other.Note
        && EvalK.SequenceEqual(other.EvalK) && Low == other.Low && Algo == other.Algo;
    public override int GetHashCode() => HashCode.Combine(Name, Steps, Seed);
}

public sealed record ProblemsConfig
{
    public int Batch { get; init; } = 8;
    public int MiniBatch { get; init; } = 4;
    public IEnumerable<string> Validate()
    {
        if (MiniBatch > Batch) yield return $"mini_batch ({MiniBatch}) must be <= batch ({Batch})";
    }
}

public class ConfigBinderTests : IDisposable
{
    readonly string dir = Directory.CreateTempSubdirectory("runs-config-").FullName;
    public void Dispose() => Directory.Delete(dir, recursive: true);

    string WriteFile(string json)
    {
        string path = Path.Combine(dir, "config.json");
        File.WriteAllText(path, json);
        return path;
    }

    [Fact]
    public void FileThenSetsOverrideInOrder()
    {
        string file = WriteFile("""
            {
              // comments and trailing commas are allowed
              "steps": 250,
              "algo": { "learning_rate": 3e-5, "schedule": "cosine_decay" },
              "low": { "clip_high": 0.28 },
            }
            """);
        var c = ConfigBinder.Bind(new TestConfig(), file, ["steps=300", "algo.beta2=0.95", "use_kl=false", "name=run one", "low.kl_coef=0"]);
        Assert.Equal(300, c.Steps);                 // --set wins over the file
        Assert.Equal(3e-5, c.Algo.LearningRate);    // from the file
        Assert.Equal(Scheduler.CosineDecay, c.Algo.Schedule);
        Assert.Equal(0.95f, c.Algo.Beta2);
        Assert.False(c.UseKl);
        Assert.Equal("run one", c.Name);
        Assert.Equal(new ClipSettings(0.2, 0.28, 0), c.Low); // positional record: untouched fields keep their values
        Assert.Equal(42, c.Seed);
    }

    [Fact]
    public void DefaultsAreNeverModified()
    {
        var defaults = new TestConfig();
        ConfigBinder.Bind(defaults, null, ["algo.learning_rate=1", "low.clip_low=0.1", "steps=5"]);
        Assert.Equal(new TestConfig(), defaults);
        Assert.Equal(1e-4, defaults.Algo.LearningRate);
        Assert.Equal(0.2, defaults.Low.ClipLow);
    }

    [Theory]
    [InlineData("algo.schedule=CosineDecay")]
    [InlineData("algo.schedule=cosine_decay")]
    [InlineData("algo.schedule=COSINE-DECAY")]
    [InlineData("algo.schedule=cosinedecay")]
    public void EnumsBindByNameInAnyCase(string set) =>
        Assert.Equal(Scheduler.CosineDecay, ConfigBinder.Bind(new TestConfig(), null, [set]).Algo.Schedule);

    [Fact]
    public void NullablesListsAndSpecialNumbers()
    {
        var c = ConfigBinder.Bind(new TestConfig(), null, ["max_tokens=64", "eval_k=1,8,16", "dual_clip_c=inf", "note=hello=world"]);
        Assert.Equal(64, c.MaxTokens);
        Assert.Equal([1, 8, 16], c.EvalK);
        Assert.Equal(double.PositiveInfinity, c.DualClipC);
        Assert.Equal("hello=world", c.Note); // only the first '=' splits
        var d = ConfigBinder.Bind(c, WriteFile("""{"max_tokens": null, "eval_k": [2, 3], "dual_clip_c": "-Infinity"}"""));
        Assert.Null(d.MaxTokens);
        Assert.Equal([2, 3], d.EvalK);
        Assert.Equal(double.NegativeInfinity, d.DualClipC);
    }

    [Fact]
    public void UnknownSetKeyNamesItAndListsValidKeysClosestFirst()
    {
        var e = Assert.Throws<ConfigException>(() => ConfigBinder.Bind(new TestConfig(), null, ["stpes=3"]));
        Assert.Equal("stpes", e.Key);
        Assert.Contains("'stpes'", e.Message);
        Assert.Contains("Did you mean 'steps'", e.Message);
        foreach (var key in new[] { "name", "steps", "seed", "use_kl", "low.clip_low", "algo.learning_rate", "algo.schedule" })
            Assert.Contains(key, e.Message);
        Assert.DoesNotContain("half_steps", e.Message); // computed property, not a key
    }

    [Fact]
    public void UnknownNestedKeyInFileNamesFileAndJsonPathAndSectionKeys()
    {
        string file = WriteFile("""{"algo": {"learning_rat": 0.1}}""");
        var e = Assert.Throws<ConfigException>(() => ConfigBinder.Bind(new TestConfig(), file, null));
        Assert.Equal("algo.learning_rat", e.Key);
        Assert.Equal(file, e.File);
        Assert.Contains(file, e.Message);
        Assert.Contains("$.algo.learning_rat", e.Message);
        Assert.Contains("Did you mean 'algo.learning_rate'", e.Message);
        Assert.Contains("algo.beta2", e.Message);
        Assert.Contains("algo.schedule", e.Message);
        Assert.DoesNotContain("low.clip_low", e.Message); // only the section's own keys
    }

    [Theory]
    [InlineData("steps=abc", "steps", "abc", "integer")]
    [InlineData("steps=2.5", "steps", "2.5", "integer")]
    [InlineData("steps=99999999999", "steps", "99999999999", "Int32")]
    [InlineData("use_kl=maybe", "use_kl", "maybe", "true or false")]
    [InlineData("algo.learning_rate=fast", "algo.learning_rate", "fast", "a number")]
    [InlineData("algo.schedule=cosine", "algo.schedule", "cosine", "constant, linear_warmup, cosine_decay")]
    [InlineData("eval_k=1,x", "eval_k", "x", "list of integers")]
    public void WrongTypeFromSetNamesKeyValueAndExpectedType(string set, string key, string value, string expected)
    {
        var e = Assert.Throws<ConfigException>(() => ConfigBinder.Bind(new TestConfig(), null, [set]));
        Assert.Equal(key, e.Key);
        Assert.Contains(key, e.Message);
        Assert.Contains($"'{value}'", e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Theory]
    [InlineData("""{"steps": "100"}""", "$.steps", "an integer", "\"100\"")]
    [InlineData("""{"use_kl": 1}""", "$.use_kl", "true or false", "1")]
    [InlineData("""{"algo": 3}""", "$.algo", "a section", "3")]
    [InlineData("""{"algo": {"schedule": "weekly"}}""", "$.algo.schedule", "one of: constant", "\"weekly\"")]
    [InlineData("""{"steps": null}""", "$.steps", "an integer", "null")]
    public void WrongTypeFromFileNamesPathExpectedAndValue(string json, string path, string expected, string value)
    {
        var e = Assert.Throws<ConfigException>(() => ConfigBinder.Bind(new TestConfig(), WriteFile(json), null));
        Assert.Contains(path, e.Message);
        Assert.Contains(expected, e.Message);
        Assert.Contains(value, e.Message);
    }

    [Fact]
    public void BrokenJsonAndMissingFileAreClear()
    {
        var e = Assert.Throws<ConfigException>(() => ConfigBinder.Bind(new TestConfig(), WriteFile("{\"steps\": 3,\n \"seed\": }"), null));
        Assert.Contains("not valid JSON", e.Message);
        Assert.Contains("line 2", e.Message);
        var missing = Path.Combine(dir, "nope.json");
        var m = Assert.Throws<ConfigException>(() => ConfigBinder.Bind(new TestConfig(), missing, null));
        Assert.Contains(missing, m.Message);
    }

    [Fact]
    public void SetOnSectionOrThroughScalarIsExplained()
    {
        var section = Assert.Throws<ConfigException>(() => ConfigBinder.Bind(new TestConfig(), null, ["algo=3"]));
        Assert.Contains("is a section", section.Message);
        Assert.Contains("algo.learning_rate", section.Message);
        var scalar = Assert.Throws<ConfigException>(() => ConfigBinder.Bind(new TestConfig(), null, ["steps.x=3"]));
        Assert.Contains("not a section", scalar.Message);
        var noEquals = Assert.Throws<ConfigException>(() => ConfigBinder.Bind(new TestConfig(), null, ["steps"]));
        Assert.Contains("key=value", noEquals.Message);
        // a whole section as JSON is fine
        var c = ConfigBinder.Bind(new TestConfig(), null, ["""low={"clip_low": 0.1, "clip_high": 0.3}"""]);
        Assert.Equal(new ClipSettings(0.1, 0.3), c.Low);
    }

    [Fact]
    public void ValidateRunsAfterBindingBothStyles()
    {
        var thrown = Assert.Throws<ConfigException>(() => ConfigBinder.Bind(new TestConfig(), null, ["steps=0"]));
        Assert.Contains("steps must be >= 1, got 0", thrown.Message);
        var listed = Assert.Throws<ConfigException>(() => ConfigBinder.Bind(new ProblemsConfig(), null, ["mini_batch=16"]));
        Assert.Contains("mini_batch (16) must be <= batch (8)", listed.Message);
        Assert.Equal(16, ConfigBinder.Bind(new ProblemsConfig(), null, ["mini_batch=16", "batch=32"]).MiniBatch);
    }

    [Fact]
    public void WriterRoundTripsToAnEqualRecord()
    {
        var original = ConfigBinder.Bind(new TestConfig(), null,
            ["steps=7", "seed=-3", "name=a \"quoted\" name", "max_tokens=12", "eval_k=5", "dual_clip_c=inf",
             "low.clip_low=0.123456789012345", "algo.beta2=0.9876543", "algo.schedule=constant", "note=x"]);
        string json = ConfigWriter.ToJson(original);
        Assert.Contains("\"learning_rate\"", json);          // snake_case
        Assert.Contains("\"schedule\": \"constant\"", json);  // enums by name, indented
        Assert.Contains("\"dual_clip_c\": \"Infinity\"", json);
        Assert.DoesNotContain("half_steps", json);
        var back = ConfigBinder.Bind(new TestConfig(), WriteFile(json), null);
        Assert.Equal(original, back);
        Assert.Equal(json, ConfigWriter.ToJson(back));
    }

    [Fact]
    public void FlattenAndKeysListLeavesInDeclarationOrder()
    {
        var keys = ConfigBinder.Keys<TestConfig>();
        Assert.Equal(["name", "steps", "seed", "use_kl", "dual_clip_c", "max_tokens", "note", "eval_k",
            "low.clip_low", "low.clip_high", "low.kl_coef", "algo.learning_rate", "algo.beta2", "algo.schedule"], keys);
        var flat = ConfigWriter.Flatten(new TestConfig()).ToDictionary(p => p.Key, p => p.Value);
        Assert.Equal("linear_warmup", flat["algo.schedule"]);
        Assert.Equal("1,4", flat["eval_k"]);
        Assert.Equal("null", flat["max_tokens"]);
    }
}

public class PresetRegistryTests
{
    static PresetRegistry<TestConfig> Registry() => new("run preset")
    {
        { "tiny", new TestConfig { Steps = 10 }, "seconds on CPU" },
        { "small", new TestConfig { Steps = 1000, Name = "small" }, "minutes on a GPU" },
    };

    [Fact]
    public void GetIsCaseInsensitiveAndBindAppliesSets()
    {
        var r = Registry();
        Assert.Equal(10, r.Get("TINY").Steps);
        Assert.Equal(["tiny", "small"], r.Names);
        var bound = r.Bind("small", null, ["steps=5"]);
        Assert.Equal(5, bound.Steps);
        Assert.Equal("small", bound.Name);
        Assert.Equal(1000, r["small"].Steps); // the preset itself is untouched
        Assert.Contains("tiny   seconds on CPU", r.Describe());
    }

    [Fact]
    public void UnknownPresetListsValidNames()
    {
        var e = Assert.Throws<ConfigException>(() => Registry().Get("tinny"));
        Assert.Contains("unknown run preset 'tinny'", e.Message);
        Assert.Contains("Did you mean 'tiny'", e.Message);
        Assert.Contains("Valid: tiny, small", e.Message);
        Assert.Throws<ArgumentException>(() => Registry().Add("Tiny", new TestConfig()));
    }
}
