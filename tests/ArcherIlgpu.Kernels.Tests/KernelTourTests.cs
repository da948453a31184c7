using KernelTour;

namespace ArcherIlgpu.Kernels.Tests;

/// <summary>
/// The kernel tour (samples/KernelTour) is documentation that runs: these tests keep it honest on
/// every backend. Its gradient check compares the backward against finite differences of the forward,
/// so it holds the backward to an independent computation, not to itself.
/// </summary>
public class KernelTourTests
{
    [SkippableTheory, MemberData(nameof(TestBackends.Names), MemberType = typeof(TestBackends))]
    public void Tour_gradient_check_passes(string device)
    {
        var backend = TestBackends.Get(device);
        var log = new StringWriter();
        bool passed = Tour.Run(backend, log);
        var text = log.ToString();
        Assert.True(passed, text);
        // The lesson must show every op of the block, in both directions.
        foreach (var op in new[] { "LayerNormForward", "AttentionForward", "GeluForward", "ResidualForward",
                                   "ResidualBackward", "GeluBackward", "AttentionBackward", "LayerNormBackward" })
            Assert.Contains(op, text);
        Assert.Contains("PASS", text);
    }

    /// <summary>The check can fail: a backward that is off by 1% (well above the float32 noise of the
    /// finite difference, ~1e-5 relative here, and above the 1e-3 tolerance) is reported.</summary>
    [SkippableTheory, MemberData(nameof(TestBackends.Names), MemberType = typeof(TestBackends))]
    public void Tour_gradient_check_catches_a_one_percent_error(string device)
    {
        var backend = TestBackends.Get(device);
        var log = new StringWriter();
        using var tour = new Tour(backend, log);
        tour.Forward();
        tour.Backward();
        tour.SpoilCheckedGradient(1.01f);
        Assert.False(tour.CheckGradient(), log.ToString());
        Assert.Contains("FAIL", log.ToString());
    }
}
