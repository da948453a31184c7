using ArcherIlgpu.Rl.Losses;

namespace ArcherIlgpu.Rl.Algorithms;

/// <summary>
/// The per-token inputs of one mini-batch, all [Rows, T]. <see cref="Entropies"/> come from the same forward
/// pass as <see cref="LogProbs"/> (current policy, detached). <see cref="Classes"/>, if given, replaces the
/// classification (for classifying once per rollout instead of every pass). <see cref="RefLogProbs"/> may be
/// empty when the algorithm has no KL.
/// </summary>
public readonly ref struct AlgorithmLossInputs
{
    public int Rows { get; init; }
    public int T { get; init; }
    public ReadOnlySpan<float> LogProbs { get; init; }
    public ReadOnlySpan<float> OldLogProbs { get; init; }
    public ReadOnlySpan<float> RefLogProbs { get; init; }
    public ReadOnlySpan<float> Entropies { get; init; }
    /// <summary>Advantage per token (<see cref="Advantages.BroadcastToTokens"/>), before AR reweighting.</summary>
    public ReadOnlySpan<float> Advantages { get; init; }
    public ReadOnlySpan<float> Mask { get; init; }
    public ReadOnlySpan<byte> Classes { get; init; }
}

/// <summary>
/// One algorithm's loss for a mini-batch: classify tokens by entropy (per response, per batch or not at
/// all), expand per-class clip ranges, policy weights and KL coefficients to tokens, apply AR-Lopti's
/// advantage reweighting and pass restriction when configured, and evaluate <see cref="PolicyLoss.Compute"/>.
/// Holds scratch arrays that grow to the largest batch seen, so repeated calls do not allocate.
/// Not thread-safe.
/// </summary>
public sealed class AlgorithmLoss
{
    float[] clipLow = [], clipHigh = [], policyWeight = [], klWeight = [], advantages = [], thresholds = [], lowMask = [], highMask = [];
    byte[] classes = [];

    public AlgorithmLoss(AlgorithmConfig config)
    {
        Config = config.Validate();
        if (config.EntropyCoef != 0)
            throw new NotSupportedException("entropy_coef != 0: an entropy bonus needs the gradient of the logits, which the per-token loss does not produce");
    }

    public AlgorithmConfig Config { get; }

    /// <summary>Token classes of the last call, [Rows, T].</summary>
    public ReadOnlySpan<byte> LastClasses => classes;
    /// <summary>Per-response thresholds τ_i of the last call (per-response classification only), [Rows].</summary>
    public ReadOnlySpan<float> LastThresholds => thresholds;

    /// <summary>
    /// Evaluates the loss; <paramref name="dLogProbs"/> [Rows, T] is OVERWRITTEN with dLoss/dℓ.
    /// <paramref name="sequenceDivisor"/>: responses to divide by in sequence-mean modes (null: Rows).
    /// </summary>
    public PolicyLossResult Compute(in AlgorithmLossInputs x, Span<float> dLogProbs, double? sequenceDivisor = null, LoptiPass pass = LoptiPass.All)
    {
        int n = x.Rows * x.T;
        Ensure(n, x.Rows);
        if (x.Mask.Length != n) throw new ArgumentException($"Mask has length {x.Mask.Length}, expected rows × T = {n}");
        bool useKl = Config.HasKl;
        if (useKl && x.RefLogProbs.IsEmpty) throw new ArgumentException($"algorithm \"{Config.Name}\" has a KL term but no reference log-probs were given");

        Classify(x);
        TokenParameters.FromClasses(classes, Config.LowParameters, Config.HighParameters, clipLow, clipHigh, policyWeight, klWeight);

        if (x.Advantages.Length != n) throw new ArgumentException($"Advantages has length {x.Advantages.Length}, expected rows × T = {n}");
        if (Config.AdvantageReweighting)
            ArLopti.ReweightAdvantages(x.Advantages, x.OldLogProbs, x.Mask, (float)Config.ReweightAlpha, advantages);
        else
            x.Advantages.CopyTo(advantages);

        if (pass != LoptiPass.All)
        {
            // AR-Lopti keeps every token in the denominator and zeroes the advantage and the KL weight of the
            // tokens that belong to the other pass.
            ArLopti.SplitLowProbability(x.OldLogProbs, x.Mask, (float)Config.LowProbabilityEta, lowMask, highMask);
            var keep = pass == LoptiPass.LowProbability ? lowMask : highMask;
            for (int t = 0; t < n; t++)
                if (!(keep[t] > 0)) { advantages[t] = 0f; klWeight[t] = 0f; }
        }

        var batch = new PolicyLossBatch
        {
            Rows = x.Rows, T = x.T,
            LogProbs = x.LogProbs, OldLogProbs = x.OldLogProbs, Advantages = advantages.AsSpan(0, n), Mask = x.Mask,
            Classes = classes.AsSpan(0, n), ClipLow = clipLow.AsSpan(0, n), ClipHigh = clipHigh.AsSpan(0, n),
            PolicyWeight = policyWeight.AsSpan(0, n),
            RefLogProbs = useKl ? x.RefLogProbs : default,
            KlWeight = useKl ? klWeight.AsSpan(0, n) : default,
        };
        return PolicyLoss.Compute(batch, Config.ToPolicyLossSettings(sequenceDivisor), dLogProbs);
    }

    void Classify(in AlgorithmLossInputs x)
    {
        int n = x.Rows * x.T;
        var cls = classes.AsSpan(0, n);
        if (!x.Classes.IsEmpty)
        {
            if (x.Classes.Length != n) throw new ArgumentException($"Classes has length {x.Classes.Length}, expected rows × T = {n}");
            x.Classes.CopyTo(cls);
            return;
        }
        switch (Config.Classification)
        {
            case EntropyClassification.None:
                for (int t = 0; t < n; t++) cls[t] = x.Mask[t] > 0 ? TokenClass.Low : TokenClass.None;
                break;
            case EntropyClassification.PerResponse:
                TokenClassifier.PerResponse(x.Entropies, x.Mask, x.Rows, x.T, Config.EntropyQuantile, thresholds.AsSpan(0, x.Rows), cls, Config.TieRule);
                break;
            case EntropyClassification.Batch:
                TokenClassifier.BatchLevel(x.Entropies, x.Mask, Config.EntropyQuantile, cls, Config.TieRule);
                break;
        }
    }

    void Ensure(int n, int rows)
    {
        if (classes.Length != n)
        {
            classes = new byte[n];
            clipLow = new float[n]; clipHigh = new float[n]; policyWeight = new float[n]; klWeight = new float[n];
            advantages = new float[n]; lowMask = new float[n]; highMask = new float[n];
        }
        if (thresholds.Length != rows) thresholds = new float[rows];
    }
}
