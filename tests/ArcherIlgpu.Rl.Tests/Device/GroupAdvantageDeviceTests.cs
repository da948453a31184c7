using ArcherIlgpu.Kernels;

namespace ArcherIlgpu.Rl.Tests.Device;

/// <summary>
/// Issue 14: the step's advantages are computed on the device (<see cref="Backend.GroupAdvantages"/>), against the float64
/// host formula (<see cref="Advantages"/>, tests/Reference) and hand-worked values.
/// </summary>
[Collection(DeviceCollection.Name)]
public class GroupAdvantageDeviceTests
{
    static float[] Run(Backend be, float[] rewards, float[] mask, int T, int groupSize, AdvantageEstimator estimator, double epsilon = 1e-6)
    {
        var a = be.Upload<float>(Enumerable.Repeat(7f, mask.Length).ToArray());   // every entry must be written
        be.GroupAdvantages(be.Upload<float>(rewards), be.Upload<float>(mask), rewards.Length, T, groupSize, estimator, epsilon, a);
        return be.ToArray(a);
    }

    /// <summary>The hand-worked groups of AdvantageTests, one token per response plus a padding token.</summary>
    [SkippableTheory, InlineData("cpu"), InlineData("ilgpu-cpu"), InlineData("cuda")]
    public void HandWorkedGroups(string backend)
    {
        var be = TestBackends.Get(backend);
        float[] mask = [1, 0, 1, 0, 1, 0, 1, 0];
        // [1, 0, 0, 0]: mean 0.25, unbiased std 0.5 → 1.5, −0.5 (ε = 1e-6 shifts the 7th digit).
        var grpo = Run(be, [1, 0, 0, 0], mask, 2, 4, AdvantageEstimator.Grpo);
        Assert.Equal([1.5f, 0, -0.5f, 0, -0.5f, 0, -0.5f, 0], grpo, (x, y) => Math.Abs(x - y) < 1e-5);
        float[] mask6 = [1, 1, 1, 1, 1, 1];
        // Two groups of 3: [1, 0, 0] and [0, 2, 1]. Dr. GRPO: r − mean; RLOO: r − mean of the other two.
        Assert.Equal([2 / 3f, -1 / 3f, -1 / 3f, -1f, 1f, 0f], Run(be, [1, 0, 0, 0, 2, 1], mask6, 1, 3, AdvantageEstimator.DrGrpo),
            (x, y) => Math.Abs(x - y) < 1e-6);
        Assert.Equal([1f, -0.5f, -0.5f, -1.5f, 1.5f, 0f], Run(be, [1, 0, 0, 0, 2, 1], mask6, 1, 3, AdvantageEstimator.Rloo),
            (x, y) => Math.Abs(x - y) < 1e-6);
        // A uniform group has no advantage anywhere.
        Assert.All(Run(be, [1, 1, 1], [1, 1, 1], 1, 3, AdvantageEstimator.Grpo), x => Assert.Equal(0f, x));
    }

    /// <summary>
    /// Random groups of 4 and 8 with {0, 1}, ±1 and shaped (fractional) rewards, ragged masks: equal to the float64 host
    /// formula spread over the valid tokens. cpu: bit for bit (the same float64 operations). ilgpu-cpu: the kernel gets ε as
    /// float32 (a relative change of 3e-8 in std + ε), so within one float32 rounding: 1e-6 relative (plus 1e-7 near 0).
    /// (cuda sums in float32 under Fast32BitOnly; it runs only the hand-worked cases above.)
    /// </summary>
    [SkippableTheory]
    [InlineData("cpu", AdvantageEstimator.Grpo), InlineData("cpu", AdvantageEstimator.DrGrpo), InlineData("cpu", AdvantageEstimator.Rloo)]
    [InlineData("ilgpu-cpu", AdvantageEstimator.Grpo), InlineData("ilgpu-cpu", AdvantageEstimator.DrGrpo), InlineData("ilgpu-cpu", AdvantageEstimator.Rloo)]
    public void MatchesTheFloat64HostFormula(string backend, AdvantageEstimator estimator)
    {
        var be = TestBackends.Get(backend);
        var rng = new Random(17);
        foreach (int groupSize in new[] { 4, 8 })
        {
            const int Groups = 5, T = 7;
            int R = Groups * groupSize;
            var rewards = new float[R];
            for (int i = 0; i < R; i++)
                rewards[i] = (i / groupSize % 3) switch
                {
                    0 => rng.Next(2),                                        // {0, 1}
                    1 => rng.Next(2) == 0 ? -1f : 1f,                        // DAPO's ±1
                    _ => (float)(rng.Next(2) - 0.5 * rng.NextDouble()),      // with an overlong penalty
                };
            rewards[0] = 1; rewards[1] = 0;   // group 0 is never uniform
            var mask = new float[R * T];
            for (int i = 0; i < R; i++)
                for (int t = rng.Next(T); t < T; t++) mask[i * T + t] = 1;   // each row: a random-length valid tail
            var perResponse = new float[R];
            Advantages.Compute(estimator, rewards, groupSize, perResponse, 1e-6);
            var expected = new float[R * T];
            Advantages.BroadcastToTokens(perResponse, mask, T, expected);

            var got = Run(be, rewards, mask, T, groupSize, estimator);
            if (backend == "cpu") Assert.Equal(expected, got);
            else Close.All(Array.ConvertAll(expected, v => (double)v), got, 1e-7, 1e-6, $"{backend} {estimator} G={groupSize}");
            Assert.Contains(expected, v => Math.Abs(v) > 0.1);
        }
    }

    [Fact]
    public void RejectsGroupsOfOneRaggedBatchesAndShortBuffers()
    {
        using var be = new CpuBackend();
        var rewards = be.Upload<float>(new float[4]);
        var mask = be.Upload<float>(new float[8]);
        var a = be.Upload<float>(new float[8]);
        Assert.Throws<ArgumentOutOfRangeException>(() => be.GroupAdvantages(rewards, mask, 4, 2, 1, AdvantageEstimator.Grpo, 1e-6, a));
        Assert.Throws<ArgumentException>(() => be.GroupAdvantages(rewards, mask, 4, 2, 3, AdvantageEstimator.Grpo, 1e-6, a));
        var ex = Assert.Throws<ArgumentException>(() => be.GroupAdvantages(rewards, mask, 4, 2, 2, AdvantageEstimator.Grpo, 1e-6, a.Slice(0, 7)));
        Assert.Contains("needs 8", ex.Message);
    }
}
