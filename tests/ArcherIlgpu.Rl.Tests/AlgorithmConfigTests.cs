using ArcherIlgpu.Rl.Algorithms;

namespace ArcherIlgpu.Rl.Tests;

public class AlgorithmConfigTests
{
    [Fact]
    public void RegistryHasEveryAlgorithmAndRejectsUnknownNames()
    {
        // The registry is process-wide and open to users (the study sample registers its ablations),
        // so other tests may have added names: the five built-ins must all be there.
        Assert.Subset(AlgorithmRegistry.Names.ToHashSet(), new HashSet<string> { "ar-lopti", "archer", "dapo", "entropy-mask", "grpo" });
        foreach (var name in AlgorithmRegistry.Names)
        {
            var c = AlgorithmRegistry.Get(name).Validate();
            Assert.Equal(name, c.Name);
        }
        var e = Assert.Throws<ArgumentException>(() => AlgorithmRegistry.Get("ppo"));
        Assert.Contains("archer", e.Message);
        Assert.Contains("entropy-mask", e.Message);
    }

    [Fact]
    public void ArcherDefaultsAreTheSpecTable()
    {
        // archer-spec.md §9.
        var c = AlgorithmRegistry.Get("archer");
        Assert.Equal(EntropyClassification.PerResponse, c.Classification);
        Assert.Equal(0.8, c.EntropyQuantile);
        Assert.Equal(HighEntropyRule.Greater, c.TieRule);
        Assert.Equal(new ClassLossSettings(0.2, 0.2, 0.001), c.Low);
        Assert.Equal(new ClassLossSettings(0.5, 0.5, 0.0), c.High);
        Assert.Equal(10.0, c.DualClipC);
        Assert.Equal(20.0, c.LogRatioClamp);
        Assert.Equal(KlEstimator.K3, c.KlEstimator);
        Assert.Equal((20.0, 10.0), (c.KlDeltaClamp, c.KlValueClamp));
        Assert.Equal(KlAggregation.PerClassMean, c.KlAggregation);
        Assert.Equal(LossAggregation.SeqMeanTokenMean, c.Aggregation);
        Assert.Equal(AdvantageEstimator.Grpo, c.Advantage);
        Assert.Equal(GroupFilterMode.DropUniform, c.Filter);
        Assert.Equal((16, 1.0, 1.0, 0), (c.GroupSize, c.Temperature, c.TopP, c.TopK));
        Assert.Equal((64, 32, 3), (c.TrainBatchPrompts, c.MiniBatchPrompts, c.PpoEpochs));
        Assert.Equal((1e-6, 0.9, 0.999, 0.1, 1.0, 10), (c.LearningRate, c.Beta1, c.Beta2, c.WeightDecay, c.GradClip, c.WarmupSteps));
        Assert.False(c.OverlongShaping);
        Assert.Equal(0.0, c.EntropyCoef);
        Assert.Equal((0.0, 1.0), (c.RewardWrong, c.RewardCorrect));
    }

    [Fact]
    public void BaselinesDifferWhereTheSpecSays()
    {
        var grpo = AlgorithmRegistry.Get("grpo");
        Assert.Equal(EntropyClassification.None, grpo.Classification);
        Assert.Equal((0.2, 0.28), (grpo.Low.ClipLow, grpo.Low.ClipHigh));
        Assert.Equal(0f, grpo.LowParameters.KlCoef);

        var dapo = AlgorithmRegistry.Get("dapo");
        Assert.Equal(LossAggregation.TokenMean, dapo.Aggregation);
        Assert.Equal((GroupFilterMode.DynamicSampling, 3.0, 10), (dapo.Filter, dapo.OversampleFactor, dapo.MaxGenerationBatches));
        Assert.Equal((true, 4096, 20480), (dapo.OverlongShaping, dapo.OverlongBuffer, dapo.MaxResponseTokens));
        Assert.Equal(-1.0, dapo.RewardWrong);

        var mask = AlgorithmRegistry.Get("entropy-mask");
        Assert.Equal(EntropyClassification.Batch, mask.Classification);
        Assert.Equal(HighEntropyRule.GreaterOrEqual, mask.TieRule);
        Assert.Equal(0f, mask.LowParameters.PolicyWeight);
        Assert.Equal(1f, mask.HighParameters.PolicyWeight);
        Assert.Equal(LossAggregation.TokenMean, mask.Aggregation);

        var ar = AlgorithmRegistry.Get("ar-lopti");
        Assert.True(ar.AdvantageReweighting && ar.LowProbabilityIsolation);
        Assert.Equal((0.3, 0.5), (ar.ReweightAlpha, ar.LowProbabilityEta));
    }

    [Fact]
    public void ValidateListsEveryProblem()
    {
        var bad = new AlgorithmConfig { GroupSize = 1, EntropyQuantile = 1.2, LearningRate = -1, Low = new ClassLossSettings(1.5, 0.2, 0.001) };
        var e = Assert.Throws<ArgumentException>(() => bad.Validate());
        Assert.Contains("group_size", e.Message);
        Assert.Contains("entropy_quantile", e.Message);
        Assert.Contains("learning_rate", e.Message);
        Assert.Contains("low.clip_low", e.Message);
        Assert.Throws<ArgumentException>(() => new AlgorithmConfig { DualClipC = 1.0 }.Validate());
        Assert.Throws<ArgumentException>(() => new AlgorithmConfig { MiniBatchPrompts = 65 }.Validate());
    }

    [Fact]
    public void OverridesParseTypesAndRejectUnknownKeys()
    {
        var baseline = AlgorithmRegistry.Get("archer");
        var c = AlgorithmOverrides.Apply(baseline, new Dictionary<string, string>
        {
            ["low.clip_high"] = "0.3",
            ["ppo_epochs"] = "2",
            ["aggregation"] = "token-mean",
            ["kl_aggregation"] = "same_as_policy",
            ["dual_clip_c"] = "inf",
            ["reclassify_every_pass"] = "false",
        });
        Assert.Equal(0.3, c.Low.ClipHigh);
        Assert.Equal(0.2, c.Low.ClipLow);
        Assert.Equal(2, c.PpoEpochs);
        Assert.Equal(LossAggregation.TokenMean, c.Aggregation);
        Assert.Equal(KlAggregation.SameAsPolicy, c.KlAggregation);
        Assert.Equal(double.PositiveInfinity, c.DualClipC);
        Assert.False(c.ReclassifyEveryPass);
        // The original is untouched.
        Assert.Equal(0.2, baseline.Low.ClipHigh);
        Assert.Equal(3, baseline.PpoEpochs);

        var e = Assert.ThrowsAny<ArgumentException>(() => AlgorithmOverrides.Apply(baseline, "ppo_epoch", "2"));
        Assert.Contains("ppo_epochs", e.Message);
        var e2 = Assert.ThrowsAny<ArgumentException>(() => AlgorithmOverrides.Apply(baseline, "ppo_epochs", "two"));
        Assert.Contains("integer", e2.Message);
        var e3 = Assert.ThrowsAny<ArgumentException>(() => AlgorithmOverrides.Apply(baseline, "aggregation", "mean"));
        Assert.Contains("seq_mean_token_mean", e3.Message);
        Assert.ThrowsAny<ArgumentException>(() => AlgorithmOverrides.Apply(baseline, "low", "1"));
        Assert.ThrowsAny<ArgumentException>(() => AlgorithmOverrides.Apply(baseline, "low.nope", "1"));
    }

    [Fact]
    public void DescribedSettingsRoundTrip()
    {
        foreach (var name in AlgorithmRegistry.Names)
        {
            var preset = AlgorithmRegistry.Get(name);
            var rebuilt = AlgorithmOverrides.Apply(new AlgorithmConfig(),
                AlgorithmOverrides.Describe(preset).Select(kv => KeyValuePair.Create(kv.Key, kv.Value)));
            Assert.Equal(preset, rebuilt);
        }
    }

    [Fact]
    public void WarmupStartsAtZero()
    {
        var c = new AlgorithmConfig();
        Assert.Equal(0.0, c.LearningRateAt(0));
        Assert.Equal(0.5e-6, c.LearningRateAt(5), 1e-18);
        Assert.Equal(1e-6, c.LearningRateAt(10));
        Assert.Equal(1e-6, c.LearningRateAt(500));
        var d = c with { Warmup = WarmupRule.StepPlusOneOverWarmup };
        Assert.Equal(1e-7, d.LearningRateAt(0), 1e-18);
        Assert.Equal(1e-6, (c with { WarmupSteps = 0 }).LearningRateAt(0));
    }

    [Fact]
    public void ToPolicyLossSettingsCarriesTheScalars()
    {
        var s = AlgorithmRegistry.Get("dapo").ToPolicyLossSettings(sequenceDivisor: 32);
        Assert.Equal(new PolicyLossSettings(10, 20, LossAggregation.TokenMean, KlAggregation.SameAsPolicy, KlEstimator.K3, 20, 10, 32, 1), s);
    }
}
