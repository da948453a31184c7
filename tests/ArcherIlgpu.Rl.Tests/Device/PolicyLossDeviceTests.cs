using ArcherIlgpu.Kernels;

namespace ArcherIlgpu.Rl.Tests.Device;

/// <summary>A random mini-batch that exercises every branch of the loss, with every ratio away from a kink.</summary>
public sealed class LossCase
{
    public int R, T;
    public float[] LogP = [], Old = [], Ref = [], Adv = [], Mask = [];
    public int[] Classes = [];

    /// <summary>
    /// Rows: 0 full, 1 empty, 2 one token, the rest random lengths (R ≥ 5 for every branch); some tokens weigh 0.5. Ratios come from
    /// regions that are inside or outside each class's clip range (±2% jitter keeps them ≥ 8% from the
    /// 0.5/0.8/1.2/1.5 bounds); 14 and e^22 trigger the dual clip (c = 10) and the log-ratio clamp; KL
    /// offsets of 3.5 and ±25 trigger k3's value and δ clamps. Padding holds NaN, which must never be read.
    /// </summary>
    public static LossCase Make(int seed, int R, int T)
    {
        var rng = new Random(seed);
        var c = new LossCase { R = R, T = T };
        int n = R * T;
        c.LogP = new float[n]; c.Old = new float[n]; c.Ref = new float[n]; c.Adv = new float[n]; c.Mask = new float[n]; c.Classes = new int[n];
        double[] ratios = [0.3, 0.65, 0.95, 1.1, 1.3, 1.7, 14];
        for (int i = 0; i < R; i++)
        {
            int len = i == 0 ? T : i == 1 ? 0 : i == 2 ? 1 : 1 + rng.Next(T);
            // Row 0 has A > 0, row 3 A = 0, row 4 A < 0 with a dual-clipped first token; the others random.
            int sign = i == 0 ? 1 : i == 4 ? -1 : rng.Next(2) == 0 ? -1 : 1;
            float adv = i == 3 ? 0f : (float)(sign * (0.3 + 1.7 * rng.NextDouble()));
            for (int t = 0; t < T; t++)
            {
                int k = i * T + t;
                if (t >= len) { c.LogP[k] = c.Old[k] = c.Ref[k] = c.Adv[k] = float.NaN; continue; }
                c.Mask[k] = rng.Next(5) == 0 ? 0.5f : 1f;
                c.Classes[k] = rng.Next(3) == 0 ? 2 : 1;
                c.Adv[k] = adv;
                c.Old[k] = (float)(-3 + 2.95 * rng.NextDouble());
                double logRatio = i == 4 && t == 0 ? Math.Log(14) : rng.Next(12) == 0 ? 22 : Math.Log(ratios[rng.Next(ratios.Length)] * (1 + 0.04 * (rng.NextDouble() - 0.5)));
                c.LogP[k] = (float)(c.Old[k] + logRatio);
                int kl = rng.Next(10);
                double offset = kl == 0 ? 3.5 : kl == 1 ? 25 : kl == 2 ? -25 : 2 * rng.NextDouble() - 1;
                c.Ref[k] = (float)(c.LogP[k] + offset);
            }
        }
        return c;
    }

    public LossReference Reference(PolicyLossParameters p, bool useKl, bool useClasses) => new()
    {
        R = R, T = T, P = p, UseKl = useKl,
        Old = Array.ConvertAll(Old, x => (double)x), Ref = Array.ConvertAll(Ref, x => (double)x),
        Adv = Array.ConvertAll(Adv, x => (double)x), Mask = Array.ConvertAll(Mask, x => (double)x),
        Classes = useClasses ? Classes : null,
    };

    /// <summary>Runs the op on a backend; returns dLogProbs and the statistics.</summary>
    public (float[] Grad, double[] Stats) Run(Backend be, PolicyLossParameters p, bool useKl, bool useClasses)
    {
        var lp = be.Upload<float>(LogP); var old = be.Upload<float>(Old); var rf = be.Upload<float>(Ref);
        var adv = be.Upload<float>(Adv); var mask = be.Upload<float>(Mask); var cls = be.Upload<int>(Classes);
        var d = be.Upload<float>(Enumerable.Repeat(123f, R * T).ToArray());   // OVERWRITTEN: stale values must go
        var stats = be.Upload<float>(Enumerable.Repeat(7f, PolicyLossStats.Count).ToArray());
        be.PolicyLossForwardBackward(lp, old, useKl ? rf : default, adv, mask, useClasses ? cls : default, R, T, p, d, stats);
        return (be.ToArray(d), Array.ConvertAll(be.ToArray(stats), x => (double)x));
    }
}

[Collection(DeviceCollection.Name)]
public class PolicyLossDeviceTests
{
    /// <summary>Clip ranges and weights that differ per class, and β large enough that KL gradients matter.</summary>
    static PolicyLossParameters Params(PolicyAggregation agg, PolicyKlAggregation kl, PolicyKlEstimator est, int rows) => new()
    {
        LowClipLow = 0.2f, LowClipHigh = 0.2f, LowPolicyWeight = 1f, LowKlWeight = 0.3f,
        HighClipLow = 0.5f, HighClipHigh = 0.5f, HighPolicyWeight = 0.7f, HighKlWeight = 0.1f,
        DualClipC = 10f, LogRatioClamp = 20f, KlDeltaClamp = 20f, KlValueClamp = 10f,
        KlEstimator = est, Aggregation = agg, KlAggregation = kl, SequenceDivisor = rows + 2, TokenSumNormalizer = 6,
    };

    /// <summary>
    /// Every aggregation × KL mode × estimator on cpu and cuda. The GPU simulator (about 1 s a call) gets
    /// every aggregation × KL mode once, cycling the estimators: the estimator is PolicyMath code shared
    /// with the cpu path, while aggregation and KL mode decide what the kernels sum and scale.
    /// </summary>
    public static IEnumerable<object[]> Modes()
    {
        int combo = 0;
        foreach (var agg in Enum.GetValues<PolicyAggregation>())
            foreach (var kl in Enum.GetValues<PolicyKlAggregation>())
            {
                foreach (var est in Enum.GetValues<PolicyKlEstimator>())
                {
                    yield return ["cpu", agg, kl, est];
                    yield return ["cuda", agg, kl, est];
                }
                yield return ["ilgpu-cpu", agg, kl, (PolicyKlEstimator)(combo++ % 3)];
            }
    }

    // Tolerances. Values: float32 exp and products carry ~1e-7 relative error per token; the statistics are
    // float32 sums (kernels) of ≤ 60 tokens of magnitude ≤ ~30 (|A|·14 and clamped KL): 1e-5 absolute + relative covers it.
    // Gradients vs central differences of the float64 reference (h = 1e-5: truncation ~1e-10, rounding
    // ~1e-11): the backend's float32 r = exp(Δ) and the final float32 rounding give ~1e-6 relative.
    const double ValueTol = 1e-5, GradAtol = 1e-6, GradRtol = 1e-5;

    [SkippableTheory, MemberData(nameof(Modes))]
    public void MatchesTheFloat64ReferenceAndItsFiniteDifferences(string backend, PolicyAggregation agg, PolicyKlAggregation kl, PolicyKlEstimator est)
    {
        var be = TestBackends.Get(backend);
        var c = LossCase.Make(11 + (int)agg * 7 + (int)kl * 3 + (int)est, R: 6, T: 9);
        var p = Params(agg, kl, est, c.R);
        var (grad, stats) = c.Run(be, p, useKl: true, useClasses: true);
        CheckAgainstReference(c, p, useKl: true, useClasses: true, grad, stats, $"{backend} {agg} {kl} {est}");
    }

    static void CheckAgainstReference(LossCase c, PolicyLossParameters p, bool useKl, bool useClasses, float[] grad, double[] stats, string what)
    {
        var reference = c.Reference(p, useKl, useClasses);
        var lp = Array.ConvertAll(c.LogP, x => (double)x);
        var expected = reference.Stats(lp);
        for (int s = 0; s < PolicyLossStats.Count; s++)
        {
            bool count = s >= PolicyLossStats.Tokens && s < PolicyLossStats.MaskSum;
            Close.One(expected[s], stats[s], count ? 0 : ValueTol, count ? 0 : ValueTol, $"{what}: stats[{s}]");
        }
        // Central differences on valid tokens only: padding holds NaN and must get exactly 0.
        var fd = new double[lp.Length];
        for (int n = 0; n < lp.Length; n++)
        {
            if (!(c.Mask[n] > 0)) continue;
            const double h = 1e-5;
            double keep = lp[n];
            lp[n] = keep + h; double up = reference.Loss(lp);
            lp[n] = keep - h; double down = reference.Loss(lp);
            lp[n] = keep;
            fd[n] = (up - down) / (2 * h);
        }
        Close.All(fd, grad, GradAtol, GradRtol, $"{what}: dLogProbs");
    }

    [SkippableTheory, MemberData(nameof(TestBackends.Names), MemberType = typeof(TestBackends))]
    public void WithoutClassesOrKlEveryValidTokenIsLow(string backend)
    {
        var be = TestBackends.Get(backend);
        var c = LossCase.Make(5, R: 5, T: 7);
        var p = Params(PolicyAggregation.TokenMean, PolicyKlAggregation.SameAsPolicy, PolicyKlEstimator.K3, c.R);
        var (grad, stats) = c.Run(be, p, useKl: false, useClasses: false);
        CheckAgainstReference(c, p, useKl: false, useClasses: false, grad, stats, $"{backend} no classes");
        Assert.Equal(0, stats[PolicyLossStats.Tokens + 1]);
        Assert.Equal(0, stats[PolicyLossStats.KlTerm]);
    }

    [SkippableTheory, MemberData(nameof(TestBackends.Names), MemberType = typeof(TestBackends))]
    public void ArLoptiReweightingAndBothPasses(string backend)
    {
        var be = TestBackends.Get(backend);
        var c = LossCase.Make(9, R: 5, T: 8);
        foreach (var pass in Enum.GetValues<PolicyTokenPass>())
        {
            var p = Params(PolicyAggregation.SeqMeanTokenMean, PolicyKlAggregation.SameAsPolicy, PolicyKlEstimator.K3, c.R);
            p.Reweight = 1; p.ReweightAlpha = 0.3f; p.Pass = pass; p.LoptiLogEta = MathF.Log(0.2f);
            var (grad, stats) = c.Run(be, p, useKl: true, useClasses: true);
            CheckAgainstReference(c, p, useKl: true, useClasses: true, grad, stats, $"{backend} ar-lopti {pass}");
        }
    }

    [SkippableTheory, MemberData(nameof(TestBackends.Names), MemberType = typeof(TestBackends))]
    public void DualClipOffAndTightLogRatioClamp(string backend)
    {
        var be = TestBackends.Get(backend);
        var c = LossCase.Make(21, R: 4, T: 9);
        var p = Params(PolicyAggregation.SeqMeanTokenSum, PolicyKlAggregation.PerClassMean, PolicyKlEstimator.K3, c.R);
        // c = +∞ disables the dual clip; a clamp of 2.5 catches the ratios 14 (ln 14 ≈ 2.64) and e^22.
        p.DualClipC = float.PositiveInfinity; p.LogRatioClamp = 2.5f;
        var (grad, stats) = c.Run(be, p, useKl: true, useClasses: true);
        CheckAgainstReference(c, p, useKl: true, useClasses: true, grad, stats, $"{backend} no dual clip");
        Assert.Equal(0, stats[PolicyLossStats.DualClipped] + stats[PolicyLossStats.DualClipped + 1]);
    }

    [Fact]
    public void TheCaseReachesEveryBranch()
    {
        // Guards the data generator: a test over data that never clips proves nothing about clipping.
        var c = LossCase.Make(11, R: 6, T: 9);
        var s = c.Reference(Params(PolicyAggregation.TokenMean, PolicyKlAggregation.PerClassMean, PolicyKlEstimator.K3, 6), true, true)
            .Stats(Array.ConvertAll(c.LogP, x => (double)x));
        Assert.True(s[PolicyLossStats.Tokens] > 0 && s[PolicyLossStats.Tokens + 1] > 0, "both classes");
        Assert.True(s[PolicyLossStats.ClippedHigh] + s[PolicyLossStats.ClippedHigh + 1] > 0, "clipped with A > 0");
        Assert.True(s[PolicyLossStats.ClippedLow] + s[PolicyLossStats.ClippedLow + 1] > 0, "clipped with A < 0");
        Assert.True(s[PolicyLossStats.DualClipped] + s[PolicyLossStats.DualClipped + 1] > 0, "dual clip");
    }

    [SkippableFact]
    public void CpuAndIlgpuCpuAgree()
    {
        var cpu = TestBackends.Get("cpu");
        var sim = TestBackends.Get("ilgpu-cpu");
        var c = LossCase.Make(33, R: 7, T: 33);
        var p = Params(PolicyAggregation.SeqMeanTokenMean, PolicyKlAggregation.PerClassMean, PolicyKlEstimator.K3, c.R);
        var (g1, s1) = c.Run(cpu, p, true, true);
        var (g2, s2) = c.Run(sim, p, true, true);
        // Same PolicyMath on both; the kernels sum rows in float32 (cpu: float64), ~1e-7 relative per sum over
        // ≤ 231 tokens, so the row scales and the statistics agree to ~1e-6 relative.
        Close.All(Array.ConvertAll(g1, x => (double)x), g2, 1e-8, 2e-6, "dLogProbs cpu vs ilgpu-cpu");
        for (int s = 0; s < PolicyLossStats.Count; s++) Close.One(s1[s], s2[s], 1e-6, 2e-6, $"stats[{s}] cpu vs ilgpu-cpu");
    }

    [Fact]
    public void DeviceEnumsMirrorTheHostEnums()
    {
        Assert.Equal(Enum.GetNames<LossAggregation>(), Enum.GetNames<PolicyAggregation>());
        Assert.Equal(Enum.GetNames<KlAggregation>(), Enum.GetNames<PolicyKlAggregation>());
        Assert.Equal(Enum.GetNames<KlEstimator>().Select(n => n.ToUpperInvariant()), Enum.GetNames<PolicyKlEstimator>().Select(n => n.ToUpperInvariant()));
        Assert.Equal(TokenClass.Low, PolicyMath.ClassLow);
        Assert.Equal(TokenClass.High, PolicyMath.ClassHigh);
        Assert.Equal(TokenClass.None, PolicyMath.ClassNone);
    }
}
