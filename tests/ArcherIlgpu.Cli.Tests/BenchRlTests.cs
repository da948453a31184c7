using System.Globalization;
using System.Text.RegularExpressions;

namespace ArcherIlgpu.Cli.Tests;

public class BenchRlTests
{
    [Fact]
    public void TimesEveryPhaseAndReportsGflopsAgainstThePeak()
    {
        var r = Archer.Run("bench", "rl", "--preset", "qwen2-tiny", "--prompts", "2", "--group-size", "2", "--max-response-tokens", "4",
            "--steps", "1", "--warmup", "0", "--device", "cpu");
        Assert.True(r.ExitCode == 0, r.ToString());
        var m = Regex.Match(r.Out, @"RESULT .*rows=4 rollout_tok_per_s=([\d.]+) update_tok_per_s=([\d.]+) update_gflops=([\d.]+) logprob_gflops=([\d.]+) fma_peak_gflops=([\d.]+)");
        Assert.True(m.Success, r.Out);
        for (int g = 1; g <= 5; g++) Assert.True(double.Parse(m.Groups[g].Value, CultureInfo.InvariantCulture) > 0, r.Out);
        Assert.Contains("% of the FMA peak", r.Out);
        var t = Regex.Match(r.Out, @"RESULT .* h2d_calls=([\d.]+) d2h_calls=([\d.]+) h2d_bytes=([\d.]+) d2h_bytes=([\d.]+)");
        Assert.True(t.Success, r.Out);   // a step uploads its batch and downloads its metrics: every count is positive
        for (int g = 1; g <= 4; g++) Assert.True(double.Parse(t.Groups[g].Value, CultureInfo.InvariantCulture) > 0, r.Out);
    }

    [Fact]
    public void BadCountsAreOneLine()
    {
        var r = Archer.Run("bench", "rl", "--steps", "0", "--device", "cpu");
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("--steps", r.Err);
        Assert.DoesNotContain("   at ", r.Err);
    }
}
