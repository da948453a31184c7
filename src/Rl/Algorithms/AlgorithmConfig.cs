using System.Text.Json.Serialization;
using ArcherIlgpu.Rl.Losses;

namespace ArcherIlgpu.Rl.Algorithms;

/// <summary>Which tokens are classified by entropy, and over what scope.</summary>
public enum EntropyClassification
{
    /// <summary>No classification: every valid token is in the low class (uses the low-class parameters).</summary>
    None,
    /// <summary>Per-response quantile (Archer).</summary>
    PerResponse,
    /// <summary>One quantile over every valid token of the batch (80/20).</summary>
    Batch,
}

/// <summary>What happens to prompt groups whose rewards are all equal.</summary>
public enum GroupFilterMode
{
    /// <summary>Keep everything.</summary>
    None,
    /// <summary>Drop them, no refill: the batch shrinks (Archer's "rejection_sample").</summary>
    DropUniform,
    /// <summary>Drop them and generate more until the batch is full (DAPO's dynamic sampling).</summary>
    DynamicSampling,
}

/// <summary>Linear warm-up convention.</summary>
public enum WarmupRule
{
    /// <summary>multiplier = step / warmup for step &lt; warmup, counting from 0, so the first step has lr 0 (verl/HF; Archer's code).</summary>
    StepOverWarmup,
    /// <summary>multiplier = (step + 1) / warmup: the first step already moves.</summary>
    StepPlusOneOverWarmup,
}

/// <summary>Loss parameters of one token class.</summary>
/// <param name="ClipLow">ε_lo: the ratio is clipped below at 1 − ε_lo.</param>
/// <param name="ClipHigh">ε_hi: the ratio is clipped above at 1 + ε_hi.</param>
/// <param name="KlCoef">β: weight of the KL to the reference on this class.</param>
/// <param name="PolicyWeight">Multiplier of the policy term (0 masks the gradient, as 80/20 does to low-entropy tokens).</param>
public sealed record ClassLossSettings(double ClipLow, double ClipHigh, double KlCoef, double PolicyWeight = 1.0)
{
    public ClassParameters ToParameters() => new((float)ClipLow, (float)ClipHigh, (float)KlCoef, (float)PolicyWeight);
}

/// <summary>
/// Everything that distinguishes GRPO, DAPO, the 80/20 entropy mask, Archer and AR-Lopti, with Archer's
/// released-code defaults (archer-spec.md §9). Sources per default: [code] = ArcherCodeR's script and
/// trainer, [paper] = Archer paper v2, [verl] = verl defaults, [recipe] = the DAPO recipe script,
/// [ar-lopti] = AR-Lopti's script. Override with <c>with</c> or <see cref="AlgorithmOverrides"/>
/// (keys are the snake_case property names, "low.clip_low" for nested ones).
/// </summary>
public sealed record AlgorithmConfig
{
    /// <summary>Registry name of the preset this came from.</summary>
    public string Name { get; init; } = "archer";

    // ---------------------------------------------------------------- rewards and advantages
    /// <summary>G, responses per prompt: 16 [code].</summary>
    public int GroupSize { get; init; } = 16;
    /// <summary>GRPO advantages, std-normalised [code].</summary>
    public AdvantageEstimator Advantage { get; init; } = AdvantageEstimator.Grpo;
    /// <summary>ε in (r − mean)/(std + ε): 1e-6 [code].</summary>
    public double AdvantageEpsilon { get; init; } = 1e-6;
    /// <summary>Reward of a correct answer: 1 [code].</summary>
    public double RewardCorrect { get; init; } = 1.0;
    /// <summary>Reward of a wrong answer: 0 [code] (DAPO's recipe: −1).</summary>
    public double RewardWrong { get; init; } = 0.0;

    // ---------------------------------------------------------------- sampling and filtering
    /// <summary>Drop all-equal groups without refill [code].</summary>
    public GroupFilterMode Filter { get; init; } = GroupFilterMode.DropUniform;
    /// <summary>Prompts generated per batch as a multiple of the train batch under dynamic sampling: 1 (DAPO: 3 [recipe]).</summary>
    public double OversampleFactor { get; init; } = 1.0;
    /// <summary>Most generation batches per step under dynamic sampling: 1 (DAPO: 10 [recipe]).</summary>
    public int MaxGenerationBatches { get; init; } = 1;
    /// <summary>DAPO's soft overlong punishment: off [code].</summary>
    public bool OverlongShaping { get; init; } = false;
    /// <summary>Length of the overlong buffer L_c: 4096 [recipe].</summary>
    public int OverlongBuffer { get; init; } = 4096;
    /// <summary>Penalty at the maximum length: 1.0 [recipe].</summary>
    public double OverlongPenaltyFactor { get; init; } = 1.0;
    /// <summary>Rollout temperature: 1.0 [code].</summary>
    public double Temperature { get; init; } = 1.0;
    /// <summary>Rollout top-p: 1.0 [code].</summary>
    public double TopP { get; init; } = 1.0;
    /// <summary>Rollout top-k: 0 = off [code].</summary>
    public int TopK { get; init; } = 0;
    /// <summary>Maximum prompt tokens: 2048 [code]. Small-model presets shrink this.</summary>
    public int MaxPromptTokens { get; init; } = 2048;
    /// <summary>Maximum response tokens: 32768 [code]. Small-model presets shrink this.</summary>
    public int MaxResponseTokens { get; init; } = 32768;
    /// <summary>Evaluation temperature: 0.8 [paper §5.1].</summary>
    public double EvalTemperature { get; init; } = 0.8;
    /// <summary>Evaluation top-p: 1.0 [paper §5.1].</summary>
    public double EvalTopP { get; init; } = 1.0;

    // ---------------------------------------------------------------- token classification
    /// <summary>Per-response entropy quantile [code].</summary>
    public EntropyClassification Classification { get; init; } = EntropyClassification.PerResponse;
    /// <summary>ρ = token_entropy_quantile: 0.8 [code default; paper].</summary>
    public double EntropyQuantile { get; init; } = 0.8;
    /// <summary>High iff H &gt; τ, ties low [code]; the paper writes ≥.</summary>
    public HighEntropyRule TieRule { get; init; } = HighEntropyRule.Greater;
    /// <summary>Recompute the classes in every update pass with the current policy [code]; false = once per rollout (paper Algorithm 1).</summary>
    public bool ReclassifyEveryPass { get; init; } = true;

    // ---------------------------------------------------------------- policy loss
    /// <summary>Low-entropy tokens: clip 0.2/0.2, β_k = 0.001 [code+paper].</summary>
    public ClassLossSettings Low { get; init; } = new(0.2, 0.2, 0.001);
    /// <summary>High-entropy tokens: clip 0.5/0.5, β_r = 0 [code+paper].</summary>
    public ClassLossSettings High { get; init; } = new(0.5, 0.5, 0.0);
    /// <summary>Dual-clip c for A &lt; 0: 10 [code script] (verl default 3).</summary>
    public double DualClipC { get; init; } = 10.0;
    /// <summary>Clamp of ℓ − ℓ_old before exp: 20 [verl].</summary>
    public double LogRatioClamp { get; init; } = 20.0;
    /// <summary>Use the KL-to-reference term (and load a reference model): on [code].</summary>
    public bool UseKl { get; init; } = true;
    /// <summary>k3 / low_var_kl [code].</summary>
    public KlEstimator KlEstimator { get; init; } = KlEstimator.K3;
    /// <summary>k3's clamps: δ ±20, value ±10 [verl].</summary>
    public double KlDeltaClamp { get; init; } = 20.0;
    public double KlValueClamp { get; init; } = 10.0;
    /// <summary>KL averaged per response over each class separately [code]; SameAsPolicy is the paper's Eq. 5.</summary>
    public KlAggregation KlAggregation { get; init; } = KlAggregation.PerClassMean;
    /// <summary>Mean over responses of each response's token mean [code, micro-batch 1].</summary>
    public LossAggregation Aggregation { get; init; } = LossAggregation.SeqMeanTokenMean;
    /// <summary>Constant divisor of seq-mean-token-sum: 1.</summary>
    public double TokenSumNormalizer { get; init; } = 1.0;
    /// <summary>Entropy bonus coefficient: 0 [code].</summary>
    public double EntropyCoef { get; init; } = 0.0;

    // ---------------------------------------------------------------- AR-Lopti
    /// <summary>AR: A' = (α·π_old + 1 − α)·A. Off except in ar-lopti.</summary>
    public bool AdvantageReweighting { get; init; } = false;
    /// <summary>α = 0.3 [ar-lopti].</summary>
    public double ReweightAlpha { get; init; } = 0.3;
    /// <summary>Lopti: update on tokens with π_old &lt; η first, then on the rest. Off except in ar-lopti.</summary>
    public bool LowProbabilityIsolation { get; init; } = false;
    /// <summary>η = 0.5 [ar-lopti].</summary>
    public double LowProbabilityEta { get; init; } = 0.5;

    // ---------------------------------------------------------------- update schedule and optimizer
    /// <summary>Prompts per training step: 64 [code]. Key "prompts_per_step", as train-rl's --prompts-per-step.</summary>
    [JsonPropertyName("prompts_per_step")]
    public int TrainBatchPrompts { get; init; } = 64;
    /// <summary>Prompts per optimizer step: 32 [code].</summary>
    public int MiniBatchPrompts { get; init; } = 32;
    /// <summary>Passes over the batch per step: 3 [code].</summary>
    public int PpoEpochs { get; init; } = 3;
    /// <summary>Reshuffle mini-batches every epoch: false [code].</summary>
    public bool ShuffleMiniBatches { get; init; } = false;
    /// <summary>Divide a partly filled mini-batch by its full size (responses), as Archer's gradient accumulation does [code]; false divides by the rows present.</summary>
    public bool DivideByFullMiniBatch { get; init; } = true;
    /// <summary>AdamW lr: 1e-6 [code].</summary>
    public double LearningRate { get; init; } = 1e-6;
    public double Beta1 { get; init; } = 0.9;
    public double Beta2 { get; init; } = 0.999;
    /// <summary>AdamW weight decay: 0.1 [code].</summary>
    public double WeightDecay { get; init; } = 0.1;
    /// <summary>Global gradient-norm clip: 1.0 [code]; 0 disables.</summary>
    public double GradClip { get; init; } = 1.0;
    /// <summary>Linear warm-up length in training steps: 10 [code].</summary>
    public int WarmupSteps { get; init; } = 10;
    /// <summary>Warm-up convention: step/warmup, first step at lr 0 [code].</summary>
    public WarmupRule Warmup { get; init; } = WarmupRule.StepOverWarmup;

    /// <summary>The learning rate of training step <paramref name="step"/> (counting from 0): constant after a linear warm-up.</summary>
    public double LearningRateAt(int step)
    {
        if (WarmupSteps <= 0) return LearningRate;
        double s = Warmup == WarmupRule.StepOverWarmup ? step : step + 1;
        return LearningRate * Math.Min(1.0, s / WarmupSteps);
    }

    /// <summary>The scalar settings of the policy loss; <paramref name="sequenceDivisor"/> is the response count to divide by (null: rows present).</summary>
    public PolicyLossSettings ToPolicyLossSettings(double? sequenceDivisor = null) => new(
        DualClipC, LogRatioClamp, Aggregation, KlAggregation, KlEstimator, KlDeltaClamp, KlValueClamp, sequenceDivisor, TokenSumNormalizer);

    /// <summary>Whether the loss has a KL term (on, with some β &gt; 0): the one place that decides whether reference
    /// log-probs (and a frozen reference model) are needed.</summary>
    public bool HasKl => UseKl && (Low.KlCoef > 0 || High.KlCoef > 0);

    /// <summary>Low-class parameters, β zeroed when the KL is off.</summary>
    public ClassParameters LowParameters => (UseKl ? Low : Low with { KlCoef = 0 }).ToParameters();
    /// <summary>High-class parameters, β zeroed when the KL is off.</summary>
    public ClassParameters HighParameters => (UseKl ? High : High with { KlCoef = 0 }).ToParameters();

    /// <summary>Throws <see cref="ArgumentException"/> listing every invalid value.</summary>
    public AlgorithmConfig Validate()
    {
        var errors = new List<string>();
        void Require(bool ok, string message) { if (!ok) errors.Add(message); }

        Require(GroupSize >= 2, $"group_size must be >= 2 (a group of one has no baseline), got {GroupSize}");
        Require(AdvantageEpsilon >= 0, $"advantage_epsilon must be >= 0, got {AdvantageEpsilon}");
        Require(double.IsFinite(RewardCorrect) && double.IsFinite(RewardWrong) && RewardCorrect > RewardWrong,
            $"reward_correct ({RewardCorrect}) must be greater than reward_wrong ({RewardWrong})");
        Require(OversampleFactor >= 1, $"oversample_factor must be >= 1, got {OversampleFactor}");
        Require(MaxGenerationBatches >= 1, $"max_generation_batches must be >= 1, got {MaxGenerationBatches}");
        Require(!OverlongShaping || (OverlongBuffer >= 1 && OverlongBuffer <= MaxResponseTokens),
            $"overlong_buffer must be in 1..max_response_tokens ({MaxResponseTokens}), got {OverlongBuffer}");
        Require(OverlongPenaltyFactor >= 0, $"overlong_penalty_factor must be >= 0, got {OverlongPenaltyFactor}");
        Require(Temperature > 0, $"temperature must be > 0, got {Temperature}");
        Require(TopP > 0 && TopP <= 1, $"top_p must be in (0, 1], got {TopP}");
        Require(TopK >= 0, $"top_k must be >= 0 (0 = off), got {TopK}");
        Require(MaxPromptTokens >= 1, $"max_prompt_tokens must be >= 1, got {MaxPromptTokens}");
        Require(MaxResponseTokens >= 1, $"max_response_tokens must be >= 1, got {MaxResponseTokens}");
        Require(EvalTemperature >= 0, $"eval_temperature must be >= 0, got {EvalTemperature}");
        Require(EvalTopP > 0 && EvalTopP <= 1, $"eval_top_p must be in (0, 1], got {EvalTopP}");
        Require(EntropyQuantile > 0 && EntropyQuantile < 1, $"entropy_quantile ρ must be in (0, 1), got {EntropyQuantile}");
        CheckClass("low", Low, errors);
        CheckClass("high", High, errors);
        Require(DualClipC > 1, $"dual_clip_c must be > 1 (use infinity to disable), got {DualClipC}");
        Require(LogRatioClamp > 0, $"log_ratio_clamp must be > 0, got {LogRatioClamp}");
        Require(KlDeltaClamp > 0, $"kl_delta_clamp must be > 0, got {KlDeltaClamp}");
        Require(KlValueClamp > 0, $"kl_value_clamp must be > 0, got {KlValueClamp}");
        Require(TokenSumNormalizer > 0, $"token_sum_normalizer must be > 0, got {TokenSumNormalizer}");
        Require(EntropyCoef >= 0, $"entropy_coef must be >= 0, got {EntropyCoef}");
        Require(ReweightAlpha >= 0 && ReweightAlpha <= 1, $"reweight_alpha must be in [0, 1], got {ReweightAlpha}");
        Require(LowProbabilityEta > 0 && LowProbabilityEta <= 1, $"low_probability_eta must be in (0, 1], got {LowProbabilityEta}");
        Require(TrainBatchPrompts >= 1, $"prompts_per_step must be >= 1, got {TrainBatchPrompts}");
        Require(MiniBatchPrompts >= 1 && MiniBatchPrompts <= TrainBatchPrompts,
            $"mini_batch_prompts must be in 1..prompts_per_step ({TrainBatchPrompts}), got {MiniBatchPrompts}");
        Require(PpoEpochs >= 1, $"ppo_epochs must be >= 1, got {PpoEpochs}");
        Require(LearningRate >= 0 && double.IsFinite(LearningRate), $"learning_rate must be >= 0, got {LearningRate}");
        Require(Beta1 >= 0 && Beta1 < 1, $"beta1 must be in [0, 1), got {Beta1}");
        Require(Beta2 >= 0 && Beta2 < 1, $"beta2 must be in [0, 1), got {Beta2}");
        Require(WeightDecay >= 0, $"weight_decay must be >= 0, got {WeightDecay}");
        Require(GradClip >= 0, $"grad_clip must be >= 0 (0 = off), got {GradClip}");
        Require(WarmupSteps >= 0, $"warmup_steps must be >= 0, got {WarmupSteps}");
        if (errors.Count > 0)
            throw new ArgumentException($"invalid algorithm config \"{Name}\":\n  " + string.Join("\n  ", errors));
        return this;
    }

    static void CheckClass(string name, ClassLossSettings c, List<string> errors)
    {
        if (!(c.ClipLow >= 0 && c.ClipLow < 1)) errors.Add($"{name}.clip_low must be in [0, 1), got {c.ClipLow}");
        if (!(c.ClipHigh >= 0 && double.IsFinite(c.ClipHigh))) errors.Add($"{name}.clip_high must be >= 0, got {c.ClipHigh}");
        if (!(c.KlCoef >= 0 && double.IsFinite(c.KlCoef))) errors.Add($"{name}.kl_coef must be >= 0, got {c.KlCoef}");
        if (!(c.PolicyWeight >= 0 && double.IsFinite(c.PolicyWeight))) errors.Add($"{name}.policy_weight must be >= 0, got {c.PolicyWeight}");
    }
}
