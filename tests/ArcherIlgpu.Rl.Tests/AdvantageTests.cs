namespace ArcherIlgpu.Rl.Tests;

public class AdvantageTests
{
    [Fact]
    public void GrpoByHand()
    {
        // Group [1, 0, 0, 0]: mean 0.25, unbiased std sqrt((0.5625 + 3·0.0625)/3) = 0.5.
        // A = (1 − 0.25)/0.5 = 1.5 and (0 − 0.25)/0.5 = −0.5 (ε = 1e-6 shifts the 7th digit).
        // Group [1, 1, 0]: mean 2/3, std sqrt((1/9 + 1/9 + 4/9)/2) = sqrt(1/3) → A = (1/3)/0.57735 = 0.57735, −1.1547.
        float[] r = [1, 0, 0, 0];
        var a = new float[4];
        Advantages.Grpo(r, 4, a);
        Assert.Equal(1.5f, a[0], 1e-5f);
        Assert.Equal(-0.5f, a[1], 1e-5f);

        float[] r3 = [1, 1, 0];
        var a3 = new float[3];
        Advantages.Grpo(r3, 3, a3);
        Assert.Equal(0.5773503f, a3[0], 1e-5f);
        Assert.Equal(-1.1547005f, a3[2], 1e-5f);
    }

    [Fact]
    public void GrpoOfUniformGroupIsZero()
    {
        var a = new float[6];
        Advantages.Grpo([1, 1, 1, 0, 0, 0], 3, a);
        Assert.All(a, x => Assert.Equal(0f, x));
    }

    [Fact]
    public void DrGrpoAndRlooByHand()
    {
        float[] r = [1, 0, 0, 0, 2, 1];   // two groups of 3
        var a = new float[6];
        Advantages.DrGrpo(r, 3, a);
        Assert.Equal(new[] { 2 / 3f, -1 / 3f, -1 / 3f, -1f, 1f, 0f }, a, (x, y) => Math.Abs(x - y) < 1e-6);
        Advantages.Rloo(r, 3, a);
        // r_i − mean of the other two: 1 − 0, 0 − 0.5, 0 − 0.5; 0 − 1.5, 2 − 0.5, 1 − 1.
        Assert.Equal(new[] { 1f, -0.5f, -0.5f, -1.5f, 1.5f, 0f }, a, (x, y) => Math.Abs(x - y) < 1e-6);
    }

    [Fact]
    public void RejectsGroupsOfOneAndRaggedBatches()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => Advantages.Grpo([1], 1, new float[1]));
        Assert.Throws<ArgumentException>(() => Advantages.Grpo([1, 0, 1], 2, new float[3]));
    }

    [Fact]
    public void BroadcastFillsValidTokensOnly()
    {
        var perToken = new float[6];
        Advantages.BroadcastToTokens([2f, -1f], [1, 1, 0, 1, 0, 0], 3, perToken);
        Assert.Equal(new[] { 2f, 2f, 0f, -1f, 0f, 0f }, perToken);
    }

    [Fact]
    public void GroupFilterDropsUniformGroups()
    {
        var keep = new bool[4];
        var counts = GroupFilter.KeepInformative([0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0], 3, keep);
        Assert.Equal(new[] { true, false, true, false }, keep);
        Assert.Equal(new GroupFilterCounts(SolveNone: 1, SolveAll: 1, Kept: 2), counts);
        // ±1 rewards: all −1 is "solve none".
        var keep2 = new bool[1];
        Assert.Equal(1, GroupFilter.KeepInformative([-1, -1], 2, keep2).SolveNone);
    }

    [Fact]
    public void OverlongShapingByHand()
    {
        // Lmax 20480, buffer 4096: no penalty up to 16384, then linear to −1 at 20480.
        Assert.Equal(0f, OverlongShaping.Penalty(16384, 20480, 4096));
        Assert.Equal(-0.5f, OverlongShaping.Penalty(16384 + 2048, 20480, 4096));
        Assert.Equal(-1f, OverlongShaping.Penalty(20480, 20480, 4096));
        Assert.Equal(-0.25f, OverlongShaping.Penalty(20480, 20480, 4096, factor: 0.25f));
        Assert.Equal(0f, OverlongShaping.Penalty(10, 100, 20));
    }
}
