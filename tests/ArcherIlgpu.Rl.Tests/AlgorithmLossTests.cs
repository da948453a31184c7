using ArcherIlgpu.Rl.Algorithms;

namespace ArcherIlgpu.Rl.Tests;

public class AlgorithmLossTests
{
    // Two responses of T = 5; row 0 full, row 1 has 3 tokens. Entropies make token 2 of each row the high one.
    const int Rows = 2, T = 5;
    static readonly float[] Entropy = [0.1f, 0.2f, 3.0f, 0.3f, 0.1f, 0.5f, 0.4f, 2.0f, 9f, 9f];
    static readonly float[] Mask = [1, 1, 1, 1, 1, 1, 1, 1, 0, 0];
    // Every valid token has ratio 1.4 and A = +1: clipped at 1.2 when low-entropy, free when high-entropy (ε = 0.5).
    static readonly float[] Old = [-1f, -2f, -0.5f, -0.1f, -3f, -1f, -0.2f, -2.5f, 0f, 0f];
    static readonly float[] LogP = Old.Select(o => o + MathF.Log(1.4f)).ToArray();
    static readonly float[] Ref = Old.Select(o => o - 0.3f).ToArray();
    static readonly float[] Adv = [1, 1, 1, 1, 1, 1, 1, 1, 0, 0];

    static AlgorithmLossInputs Inputs(float[]? adv = null) => new()
    {
        Rows = Rows, T = T, LogProbs = LogP, OldLogProbs = Old, RefLogProbs = Ref, Entropies = Entropy, Advantages = adv ?? Adv, Mask = Mask,
    };

    [Fact]
    public void ArcherClassifiesPerResponseAndWidensHighEntropyClipping()
    {
        var loss = new AlgorithmLoss(AlgorithmRegistry.Get("archer"));
        var d = new float[Rows * T];
        var res = loss.Compute(Inputs(), d);
        Assert.Equal(new byte[] { 1, 1, 2, 1, 1, 1, 1, 2, 0, 0 }, loss.LastClasses.ToArray());
        // Low tokens: clipped, so only the KL gradient remains: β_k·(1 − e^δ)/N_low/rows with δ = −0.3 − ln 1.4.
        double delta = -0.3 - Math.Log(1.4);
        double klGrad = 0.001 * (1 - Math.Exp(delta));
        Assert.Equal(klGrad / 4 / 2, d[0], 1e-8);
        Assert.Equal(klGrad / 2 / 2, d[5], 1e-8);
        // High tokens: unclipped policy gradient −A·r over the response's token count; β_r = 0.
        Assert.Equal(-1.4 / 5 / 2, d[2], 1e-6);
        Assert.Equal(-1.4 / 3 / 2, d[7], 1e-6);
        Assert.Equal(0f, d[8]);
        Assert.Equal(2, res.Clips.Tokens[1]);
        Assert.Equal(6, res.Clips.ClippedHigh[0]);
        Assert.Equal(0, res.Clips.ClippedHigh[1]);

        // The same as composing the pieces by hand.
        var tau = new float[Rows]; var cls = new byte[Rows * T];
        TokenClassifier.PerResponse(Entropy, Mask, Rows, T, 0.8, tau, cls);
        var cl = new float[10]; var ch = new float[10]; var pw = new float[10]; var kw = new float[10];
        TokenParameters.FromClasses(cls, new(0.2f, 0.2f, 0.001f), new(0.5f, 0.5f, 0f), cl, ch, pw, kw);
        var d2 = new float[10];
        var res2 = PolicyLoss.Compute(new PolicyLossBatch
        {
            Rows = Rows, T = T, LogProbs = LogP, OldLogProbs = Old, RefLogProbs = Ref, Advantages = Adv, Mask = Mask, Classes = cls,
            ClipLow = cl, ClipHigh = ch, PolicyWeight = pw, KlWeight = kw,
        }, new PolicyLossSettings(), d2);
        Assert.Equal(res2.Loss, res.Loss);
        Assert.Equal(d2, d);
    }

    [Fact]
    public void EntropyMaskTrainsOnlyTheBatchTopTokens()
    {
        var loss = new AlgorithmLoss(AlgorithmRegistry.Get("entropy-mask"));
        var d = new float[Rows * T];
        var res = loss.Compute(Inputs(), d);
        // 8 valid entropies, sorted [0.1, 0.1, 0.2, 0.3, 0.4, 0.5, 2, 3]: p = 0.8·7 = 5.6, τ = 0.5 + 0.6·1.5 = 1.4 → 2 and 3 kept.
        Assert.Equal(new byte[] { 1, 1, 2, 1, 1, 1, 1, 2, 0, 0 }, loss.LastClasses.ToArray());
        for (int t = 0; t < 10; t++)
            if (t != 2 && t != 7) Assert.Equal(0f, d[t]);
        // Clip 0.2/0.28: r = 1.4 is clipped on the kept tokens as well, so no gradient anywhere; the loss is
        // −1.28 on the 2 kept tokens over all 8 valid tokens.
        Assert.Equal(-1.28 * 2 / 8, res.Loss, 1e-6);
    }

    [Fact]
    public void GrpoIgnoresEntropyAndKl()
    {
        var loss = new AlgorithmLoss(AlgorithmRegistry.Get("grpo"));
        var d = new float[Rows * T];
        var res = loss.Compute(Inputs() with { RefLogProbs = default }, d);
        Assert.All(loss.LastClasses.ToArray().Take(8), c => Assert.Equal(TokenClass.Low, c));
        Assert.Equal(0, res.KlTerm);
        // r = 1.4 > 1.28: everything clipped; loss −1.28 per token, seq-mean-token-mean.
        Assert.Equal(-1.28, res.Loss, 1e-6);
    }

    [Fact]
    public void LoptiPassesSplitTheGradient()
    {
        var loss = new AlgorithmLoss(AlgorithmRegistry.Get("ar-lopti") with { Low = new(0.2, 0.6, 0.001), High = new(0.2, 0.6, 0.001) });
        float[] adv = [1, -1, 2, 0.5f, -2, 1, 1, -1, 0, 0];
        var all = new float[10]; var low = new float[10]; var high = new float[10];
        loss.Compute(Inputs(adv), all);
        loss.Compute(Inputs(adv), low, pass: LoptiPass.LowProbability);
        loss.Compute(Inputs(adv), high, pass: LoptiPass.HighProbability);
        for (int t = 0; t < 10; t++)
        {
            bool isLow = Mask[t] > 0 && MathF.Exp(Old[t]) < 0.5f;
            Assert.True(isLow ? high[t] == 0 : low[t] == 0, $"token {t} trained in the wrong pass");
            // Denominators are shared, so the two passes add up to the full update.
            Assert.Equal(all[t], low[t] + high[t], 1e-7f);
        }
        // AR reweighting: the low-probability token 0 (π_old = e^-1) gets A' = (0.3·e^-1 + 0.7)·1.
        var plain = new AlgorithmLoss(AlgorithmRegistry.Get("ar-lopti") with { AdvantageReweighting = false, Low = new(0.2, 0.6, 0), High = new(0.2, 0.6, 0), UseKl = false });
        var reweighted = new AlgorithmLoss(AlgorithmRegistry.Get("ar-lopti") with { Low = new(0.2, 0.6, 0), High = new(0.2, 0.6, 0), UseKl = false });
        var dp = new float[10]; var dr = new float[10];
        plain.Compute(Inputs(adv), dp);
        reweighted.Compute(Inputs(adv), dr);
        Assert.Equal(dp[0] * (0.3 * Math.Exp(-1) + 0.7), dr[0], 1e-7);
    }

    [Fact]
    public void MisconfigurationFailsClearly()
    {
        var loss = new AlgorithmLoss(AlgorithmRegistry.Get("archer"));
        var e = Assert.Throws<ArgumentException>(() => loss.Compute(Inputs() with { RefLogProbs = default }, new float[10]));
        Assert.Contains("reference", e.Message);
        Assert.Throws<NotSupportedException>(() => new AlgorithmLoss(new AlgorithmConfig { EntropyCoef = 0.01 }));
    }

    [Fact]
    public void GivenClassesOverrideTheClassification()
    {
        var loss = new AlgorithmLoss(AlgorithmRegistry.Get("archer"));
        byte[] cls = [2, 2, 2, 2, 2, 2, 2, 2, 0, 0];
        loss.Compute(Inputs() with { Classes = cls }, new float[10]);
        Assert.Equal(cls, loss.LastClasses.ToArray());
    }
}
