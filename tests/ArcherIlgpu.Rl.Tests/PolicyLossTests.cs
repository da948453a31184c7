using ArcherIlgpu.Rl.Tests.Reference;

namespace ArcherIlgpu.Rl.Tests;

public class PolicyLossTests
{
    static readonly ClassParameters LowP = new(0.2f, 0.2f, 0.001f);
    static readonly ClassParameters HighP = new(0.5f, 0.5f, 0.0f);

    /// <summary>One valid token in one row: every aggregation then equals the token's own loss.</summary>
    static (PolicyLossResult Result, float Grad) One(float logp, float old, float adv, byte cls, PolicyLossSettings? s = null,
        float? refLogp = null, ClassParameters? low = null, ClassParameters? high = null)
    {
        var p = cls == TokenClass.High ? (high ?? HighP) : (low ?? LowP);
        var d = new float[1];
        var batch = new PolicyLossBatch
        {
            Rows = 1, T = 1,
            LogProbs = new[] { logp }, OldLogProbs = new[] { old }, Advantages = new[] { adv }, Mask = new[] { 1f },
            Classes = new[] { cls }, ClipLow = new[] { p.ClipLow }, ClipHigh = new[] { p.ClipHigh },
            RefLogProbs = refLogp is null ? default : new[] { refLogp.Value },
            KlWeight = refLogp is null ? default : new[] { p.KlCoef },
        };
        var r = PolicyLoss.Compute(batch, s ?? new PolicyLossSettings(), d);
        return (r, d[0]);
    }

    // Hand values: r = exp(Δ) is set exactly by choosing Δ = ln r; float32 rounding of ln r and exp gives
    // errors of a few ulp of r, so 1e-5 absolute is ample for values of order 1.
    const double Tol = 1e-5;

    [Fact]
    public void PositiveAdvantageInsideTheRangeIsUnclipped()
    {
        var (res, g) = One(MathF.Log(1.1f), 0f, 1f, TokenClass.Low);
        Assert.Equal(-1.1, res.Loss, Tol);
        Assert.Equal(-1.1, g, Tol); // d(−A·r)/dℓ = −A·r
        Assert.Equal(0, res.Clips.ClipFraction);
    }

    [Fact]
    public void PositiveAdvantageAboveTheRangeIsClippedHighWithZeroGradient()
    {
        var (res, g) = One(MathF.Log(1.5f), 0f, 1f, TokenClass.Low);
        Assert.Equal(-1.2, res.Loss, Tol);
        Assert.Equal(0f, g);
        Assert.Equal(1, res.Clips.ClippedHigh[0]);
        Assert.Equal(0, res.Clips.ClippedLow[0]);
        Assert.Equal(1.0, res.Clips.ClipFraction);
    }

    [Fact]
    public void HighEntropyTokenUsesItsWiderRange()
    {
        // r = 1.4 would be clipped at 1.2 as a low-entropy token, but not within [0.5, 1.5].
        var (res, g) = One(MathF.Log(1.4f), 0f, 2f, TokenClass.High);
        Assert.Equal(-2.8, res.Loss, Tol);
        Assert.Equal(-2.8, g, Tol);
        Assert.Equal(0, res.Clips.ClippedHigh[1]);
        Assert.Equal(1, res.Clips.Tokens[1]);

        var (res2, g2) = One(MathF.Log(1.6f), 0f, 2f, TokenClass.High);
        Assert.Equal(-3.0, res2.Loss, Tol);
        Assert.Equal(0f, g2);
        Assert.Equal(1, res2.Clips.ClippedHigh[1]);
    }

    [Fact]
    public void NegativeAdvantageBelowTheRangeIsClippedLow()
    {
        // A = −1, r = 0.5: max(0.5, 0.8) = 0.8 from the clipped branch.
        var (res, g) = One(MathF.Log(0.5f), 0f, -1f, TokenClass.Low);
        Assert.Equal(0.8, res.Loss, Tol);
        Assert.Equal(0f, g);
        Assert.Equal(1, res.Clips.ClippedLow[0]);
        // Same ratio as a high-entropy token: 0.5 is the boundary of [0.5, 1.5]; r = 0.6 is inside.
        var (res2, g2) = One(MathF.Log(0.6f), 0f, -1f, TokenClass.High);
        Assert.Equal(0.6, res2.Loss, Tol);
        Assert.Equal(0.6, g2, Tol);
    }

    [Fact]
    public void NegativeAdvantageAboveTheRangeIsUnclippedUntilTheDualClip()
    {
        // A = −1, r = 5: max(5, 1.2) = 5 < c = 10: the unclipped branch, gradient −A·r = 5.
        var (res, g) = One(MathF.Log(5f), 0f, -1f, TokenClass.Low);
        Assert.Equal(5.0, res.Loss, 1e-4);
        Assert.Equal(5.0, g, 1e-4);
        Assert.Equal(0, res.Clips.DualClipped[0]);
        // r = 12: capped at −A·c = 10 with zero gradient.
        var (res2, g2) = One(MathF.Log(12f), 0f, -1f, TokenClass.Low);
        Assert.Equal(10.0, res2.Loss, Tol);
        Assert.Equal(0f, g2);
        Assert.Equal(1, res2.Clips.DualClipped[0]);
        Assert.Equal(1.0, res2.Clips.DualClipFraction);
        // With c = 3 (verl's default) r = 5 is capped too.
        var (res3, g3) = One(MathF.Log(5f), 0f, -0.5f, TokenClass.Low, new PolicyLossSettings(DualClipC: 3));
        Assert.Equal(1.5, res3.Loss, Tol);
        Assert.Equal(0f, g3);
    }

    [Fact]
    public void LogRatioClampStopsTheGradient()
    {
        var noDual = new PolicyLossSettings(DualClipC: double.PositiveInfinity);
        // Δ = 25 is clamped to 20: L = −A·e^20 and, since the clamp binds, no gradient flows.
        var (res, g) = One(25f, 0f, -1f, TokenClass.Low, noDual);
        Assert.Equal(Math.Exp(20), res.Loss, Math.Exp(20) * 1e-6);
        Assert.Equal(0f, g);
        // Just inside the clamp the gradient is −A·r.
        var (res2, g2) = One(19.5f, 0f, -1f, TokenClass.Low, noDual);
        Assert.Equal(Math.Exp(19.5), g2, Math.Exp(19.5) * 1e-5);
        Assert.True(double.IsFinite(res2.Loss));
        // Δ = −25 with A > 0: r = e^-20; max(−e^-20, −0.8) is the unclipped branch, and the clamp blocks its gradient.
        var (res3, g3) = One(-25f, 0f, 1f, TokenClass.Low);
        Assert.Equal(-Math.Exp(-20), res3.Loss, 1e-12);
        Assert.Equal(0f, g3);
    }

    [Fact]
    public void K3KlOnLowTokenAddsValueAndGradient()
    {
        // ℓ = ℓ_old (r = 1), A = 0: only the KL remains. δ = ℓ_ref − ℓ = −0.5:
        // k3 = e^-0.5 + 0.5 − 1 = 0.1065306597, dk3/dℓ = 1 − e^-0.5 = 0.3934693403.
        var (res, g) = One(-1f, -1f, 0f, TokenClass.Low, refLogp: -1.5f);
        Assert.Equal(0.001 * 0.1065306597, res.Loss, 1e-9);
        Assert.Equal(0.001 * 0.3934693403, g, 1e-9);
        Assert.Equal(0.1065306597, res.KlLow, 1e-6);
        Assert.Equal(0, res.KlHigh);
        // The same token as high entropy: β_r = 0, so no loss or gradient, but the KL is still reported.
        var (res2, g2) = One(-1f, -1f, 0f, TokenClass.High, refLogp: -1.5f);
        Assert.Equal(0, res2.Loss);
        Assert.Equal(0f, g2);
        Assert.Equal(0.1065306597, res2.KlHigh, 1e-6);
    }

    [Fact]
    public void KlClampsStopTheGradient()
    {
        // δ = 3: e^3 − 4 = 16.09 > 10, value clamped to 10, gradient 0.
        var (res, g) = One(-4f, -4f, 0f, TokenClass.Low, refLogp: -1f);
        Assert.Equal(0.001 * 10, res.Loss, 1e-9);
        Assert.Equal(0f, g);
        // δ = −25: clamped to −20, k3 = e^-20 + 19 = 19 → 10, gradient 0.
        var (res2, g2) = One(0f, 0f, 0f, TokenClass.Low, refLogp: -25f);
        Assert.Equal(0.001 * 10, res2.Loss, 1e-9);
        Assert.Equal(0f, g2);
    }

    [Theory]
    [InlineData(KlEstimator.K1)]
    [InlineData(KlEstimator.K2)]
    [InlineData(KlEstimator.K3)]
    public void KlEstimatorsMatchTheirDefinitionsAndDerivatives(KlEstimator estimator)
    {
        double Value(double lp, double rf) => estimator switch
        {
            KlEstimator.K1 => lp - rf,
            KlEstimator.K2 => 0.5 * (lp - rf) * (lp - rf),
            _ => Math.Exp(rf - lp) - (rf - lp) - 1,
        };
        foreach (var (lp, rf) in new[] { (-1.0, -1.5), (-0.2, -2.0), (-3.0, -0.5), (-1.0, -1.0) })
        {
            var (v, g) = PolicyLoss.Kl(estimator, (float)lp, (float)rf, 20, 10);
            Assert.Equal(Value(lp, rf), v, 1e-5);
            double fd = (Value(lp + 1e-6, rf) - Value(lp - 1e-6, rf)) / 2e-6;
            // Central differences in float64 (~1e-9) vs float32 exp (~1e-7 relative on values ≤ e^2.5).
            Assert.Equal(fd, g, 1e-5);
        }
    }

    [Fact]
    public void MetricsUseArcherNames()
    {
        var (res, _) = One(MathF.Log(1.5f), 0f, 1f, TokenClass.Low, refLogp: -0.5f);
        var m = res.ToMetrics();
        Assert.Equal(1.0, m["actor/pg_clipfrac"]);
        Assert.Equal(1.0, m["actor/clipfrac_low_entropy_upper"]);
        Assert.Equal(0.0, m["actor/pg_clipfrac_lower"]);
        Assert.Equal(-Math.Log(1.5), m["actor/ppo_kl"], 1e-6);
        Assert.Equal(res.KlLow, m["actor/low_entropy_kl_loss"]);
    }

    [Fact]
    public void KlOffMeansNoKlTerm()
    {
        var (res, g) = One(-1f, -1f, 0f, TokenClass.Low);
        Assert.Equal(0, res.Loss);
        Assert.Equal(0f, g);
        Assert.Equal(0, res.Kl);
    }

    [Fact]
    public void AggregationModesByHand()
    {
        // Row 0: 2 valid tokens with losses −1, −3 (A = 1, 3 at r = 1); row 1: 1 valid token with loss −5, one padding.
        float[] adv = [1, 3, 5, 0];
        float[] mask = [1, 1, 1, 0];
        float[] zeros = new float[4];
        float[] eps = [0.2f, 0.2f, 0.2f, 0.2f];
        PolicyLossResult Run(PolicyLossSettings s, float[] d) => PolicyLoss.Compute(new PolicyLossBatch
        {
            Rows = 2, T = 2, LogProbs = zeros, OldLogProbs = zeros, Advantages = adv, Mask = mask, ClipLow = eps, ClipHigh = eps,
        }, s, d);

        var d = new float[4];
        // token mean: (−1 −3 −5)/3 = −3, dL/dℓ_t = −A_t/3.
        Assert.Equal(-3.0, Run(new PolicyLossSettings(Aggregation: LossAggregation.TokenMean), d).Loss, 1e-6);
        Assert.Equal(new[] { -1 / 3f, -1f, -5 / 3f, 0f }, d, (x, y) => Math.Abs(x - y) < 1e-6);
        // seq-mean-token-mean: ((−1 −3)/2 + (−5)/1)/2 = −3.5.
        Assert.Equal(-3.5, Run(new PolicyLossSettings(Aggregation: LossAggregation.SeqMeanTokenMean), d).Loss, 1e-6);
        Assert.Equal(new[] { -0.25f, -0.75f, -2.5f, 0f }, d, (x, y) => Math.Abs(x - y) < 1e-6);
        // seq-mean-token-sum: ((−4) + (−5))/2 = −4.5.
        Assert.Equal(-4.5, Run(new PolicyLossSettings(Aggregation: LossAggregation.SeqMeanTokenSum), d).Loss, 1e-6);
        // divided by a full mini-batch of 4 responses instead of the 2 present: −3.5·2/4.
        Assert.Equal(-1.75, Run(new PolicyLossSettings(SequenceDivisor: 4), d).Loss, 1e-6);
    }

    [Fact]
    public void PerClassKlMeansAverageEachClassOverItsOwnTokens()
    {
        // One response: two low tokens with δ = −0.5 and δ = 0.5, one high token with δ = 1; r = 1, A = 0.
        float[] logp = [0, 0, 0];
        float[] refl = [-0.5f, 0.5f, 1f];
        byte[] cls = [TokenClass.Low, TokenClass.Low, TokenClass.High];
        double K3(double d) => Math.Exp(d) - d - 1;
        var d = new float[3];
        var clipLow = new float[3]; var clipHigh = new float[3]; var pw = new float[3]; var kw = new float[3];
        var low = new ClassParameters(0.2f, 0.2f, 0.001f);
        var high = new ClassParameters(0.5f, 0.5f, 0.01f);
        TokenParameters.FromClasses(cls, low, high, clipLow, clipHigh, pw, kw);
        var batch = new PolicyLossBatch
        {
            Rows = 1, T = 3, LogProbs = logp, OldLogProbs = logp, RefLogProbs = refl, Advantages = new float[3], Mask = [1, 1, 1],
            Classes = cls, ClipLow = clipLow, ClipHigh = clipHigh, PolicyWeight = pw, KlWeight = kw,
        };
        var res = PolicyLoss.Compute(batch, new PolicyLossSettings(), d);
        double klLow = (K3(-0.5) + K3(0.5)) / 2, klHigh = K3(1);
        Assert.Equal(klLow, res.KlLow, 1e-6);
        Assert.Equal(klHigh, res.KlHigh, 1e-6);
        Assert.Equal(0.001 * klLow + 0.01 * klHigh, res.Loss, 1e-8);
        Assert.Equal(0.001 * (1 - Math.Exp(-0.5)) / 2, d[0], 1e-8);
        Assert.Equal(0.01 * (1 - Math.Exp(1)), d[2], 1e-8);

        // The paper's form: β_t·k3 inside the response's token mean over all 3 tokens.
        var paper = PolicyLoss.Compute(batch, new PolicyLossSettings(KlAggregation: KlAggregation.SameAsPolicy), d);
        Assert.Equal((0.001 * (K3(-0.5) + K3(0.5)) + 0.01 * K3(1)) / 3, paper.Loss, 1e-8);
    }

    [Fact]
    public void PaddingWithNonFiniteLogProbsLeaksNothing()
    {
        float[] logp = [-0.1f, float.NaN, float.NegativeInfinity];
        float[] old = [-0.2f, float.NaN, 0f];
        var d = new float[] { 9, 9, 9 };
        var res = PolicyLoss.Compute(new PolicyLossBatch
        {
            Rows = 1, T = 3, LogProbs = logp, OldLogProbs = old, RefLogProbs = [-0.3f, float.NaN, float.NaN], KlWeight = [0.001f, 0.001f, 0.001f],
            Advantages = [1, 1, 1], Mask = [1, 0, 0], ClipLow = [0.2f, 0.2f, 0.2f], ClipHigh = [0.2f, 0.2f, 0.2f],
        }, new PolicyLossSettings(), d);
        Assert.True(double.IsFinite(res.Loss));
        Assert.Equal(0f, d[1]);
        Assert.Equal(0f, d[2]);
        Assert.Equal(1, res.Clips.ValidTokens);
    }

    [Fact]
    public void EmptyRowContributesNothingAndStaysFinite()
    {
        var d = new float[4];
        var res = PolicyLoss.Compute(new PolicyLossBatch
        {
            Rows = 2, T = 2, LogProbs = new float[4], OldLogProbs = new float[4], Advantages = [2, 2, 7, 7], Mask = [1, 0, 0, 0],
            ClipLow = [0.2f, 0.2f, 0.2f, 0.2f], ClipHigh = [0.2f, 0.2f, 0.2f, 0.2f], RefLogProbs = [-1, -1, -1, -1], KlWeight = [1, 1, 1, 1],
        }, new PolicyLossSettings(), d);
        // Row 0: −2 + k3(−1); row 1 has no token and counts as a response with loss 0; mean over the 2 rows.
        Assert.Equal((-2 + (Math.Exp(-1) + 1 - 1)) / 2, res.Loss, 1e-6);
        Assert.Equal(0f, d[2]);
        Assert.Equal(0f, d[3]);
    }

    [Fact]
    public void PolicyWeightZeroMasksGradientButKeepsTheDenominator()
    {
        // 80/20 style: token 0 masked out of the policy term, still counted in the token mean.
        var d = new float[2];
        var res = PolicyLoss.Compute(new PolicyLossBatch
        {
            Rows = 1, T = 2, LogProbs = new float[2], OldLogProbs = new float[2], Advantages = [1, 1], Mask = [1, 1],
            ClipLow = [0.2f, 0.2f], ClipHigh = [0.28f, 0.28f], PolicyWeight = [0, 1],
        }, new PolicyLossSettings(Aggregation: LossAggregation.TokenMean), d);
        Assert.Equal(-0.5, res.Loss, 1e-6);
        Assert.Equal(0f, d[0]);
        Assert.Equal(-0.5f, d[1], 1e-6f);
    }

    public static IEnumerable<object[]> Modes()
    {
        foreach (var agg in Enum.GetValues<LossAggregation>())
            foreach (var kl in Enum.GetValues<KlAggregation>())
                yield return [agg, kl];
    }

    /// <summary>
    /// Random batches with padding, an empty row and both classes; log-ratios and KL deltas are drawn away
    /// from every kink (clip bounds, dual-clip cap, clamp edges), including tokens deep inside the clamps.
    /// The float32 value and gradient are held to the float64 reference and its central differences.
    /// </summary>
    [Theory, MemberData(nameof(Modes))]
    public void GradientMatchesFiniteDifferencesOfTheFloat64Reference(LossAggregation agg, KlAggregation klMode)
    {
        const int rows = 4, T = 9;
        var rng = new Random(1234 + (int)agg * 10 + (int)klMode);
        int n = rows * T;
        var reference = new PolicyLossReference
        {
            Rows = rows, T = T, Aggregation = agg, KlMode = klMode, TokenSumNormalizer = 5, Divisor = agg == LossAggregation.TokenMean ? null : 6,
            Old = new double[n], Ref = new double[n], Adv = new double[n], Mask = new double[n], ClipLow = new double[n], ClipHigh = new double[n],
            PolicyWeight = new double[n], KlWeight = new double[n], Classes = new byte[n],
        };
        var logp = new double[n];
        int[] lengths = [9, 1, 0, 5]; // full, one token, empty, padded
        for (int i = 0; i < rows; i++)
        {
            double a = rng.NextDouble() < 0.5 ? -(0.2 + rng.NextDouble()) : 0.2 + rng.NextDouble();
            for (int t = 0; t < T; t++)
            {
                int k = i * T + t;
                bool valid = t < lengths[i];
                reference.Mask[k] = valid ? 1 : 0;
                bool high = rng.NextDouble() < 0.3;
                reference.Classes[k] = valid ? (high ? TokenClass.High : TokenClass.Low) : TokenClass.None;
                reference.ClipLow[k] = high ? 0.5 : 0.2;
                reference.ClipHigh[k] = high ? 0.5 : 0.28;
                reference.KlWeight[k] = high ? 0.02 : 0.05;
                reference.PolicyWeight[k] = rng.Next(3) switch { 0 => 0.0, 1 => 0.5, _ => 1.0 };
                reference.Adv[k] = a;
                reference.Old[k] = -rng.NextDouble() * 3;
                double delta = DrawAwayFrom(rng, [Math.Log(1 - reference.ClipLow[k]), Math.Log(1 + reference.ClipHigh[k]), Math.Log(reference.C)]);
                logp[k] = reference.Old[k] + delta;
                // KL delta δ = ℓ_ref − ℓ: mostly in [−1, 1], sometimes where the value clamp binds (δ ≈ 3.5) or the δ clamp (±25).
                double kd = rng.Next(6) switch { 0 => 3.5, 1 => -25, _ => rng.NextDouble() * 2 - 1 };
                reference.Ref[k] = logp[k] + kd;
            }
        }

        float[] F(double[] x) => Array.ConvertAll(x, v => (float)v);
        var d = new float[n];
        var result = PolicyLoss.Compute(new PolicyLossBatch
        {
            Rows = rows, T = T, LogProbs = F(logp), OldLogProbs = F(reference.Old), RefLogProbs = F(reference.Ref), Advantages = F(reference.Adv),
            Mask = F(reference.Mask), Classes = reference.Classes, ClipLow = F(reference.ClipLow), ClipHigh = F(reference.ClipHigh),
            PolicyWeight = F(reference.PolicyWeight), KlWeight = F(reference.KlWeight),
        }, new PolicyLossSettings(Aggregation: agg, KlAggregation: klMode, SequenceDivisor: reference.Divisor, TokenSumNormalizer: 5), d);

        // The reference runs on the float32-rounded inputs so both see the same numbers.
        var lp32 = Array.ConvertAll(F(logp), v => (double)v);
        reference.Old = Array.ConvertAll(F(reference.Old), v => (double)v);
        reference.Ref = Array.ConvertAll(F(reference.Ref), v => (double)v);
        double expected = reference.Loss(lp32);
        // Value: float32 per-token terms (relative error ~1e-7) summed over ≤ 36 tokens; loss magnitudes ≤ ~30.
        Assert.Equal(expected, result.Loss, 1e-5 * Math.Max(1, Math.Abs(expected)));

        const double h = 1e-5;
        for (int k = 0; k < n; k++)
        {
            var plus = (double[])lp32.Clone(); plus[k] += h;
            var minus = (double[])lp32.Clone(); minus[k] -= h;
            double fd = (reference.Loss(plus) - reference.Loss(minus)) / (2 * h);
            // Central differences in float64 with h = 1e-5 are accurate to ~1e-9 on these smooth pieces; the
            // float32 gradient carries ~1e-6 relative error from r = exp(Δ) (r ≤ 10 here).
            Assert.True(Math.Abs(fd - d[k]) <= 2e-6 + 1e-4 * Math.Abs(fd), $"token {k}: finite difference {fd}, gradient {d[k]}");
        }
    }

    static double DrawAwayFrom(Random rng, double[] kinks)
    {
        while (true)
        {
            double delta = rng.Next(8) switch
            {
                0 => 25 * (rng.Next(2) * 2 - 1),     // deep inside the log-ratio clamp
                1 => 2.0 + rng.NextDouble() * 0.6,   // around the dual-clip cap r = 10 (ln 10 = 2.30)
                _ => rng.NextDouble() * 1.6 - 0.8,
            };
            if (kinks.All(k => Math.Abs(delta - k) > 0.01)) return delta;
        }
    }
}
