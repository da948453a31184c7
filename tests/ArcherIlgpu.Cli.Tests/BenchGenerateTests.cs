namespace ArcherIlgpu.Cli.Tests;

public class BenchGenerateTests
{
    [Fact]
    public void ResultLineCarriesTheTransfersPerGeneratedToken()
    {
        var r = Archer.Run("bench", "generate", "--preset", "tiny", "--batch", "2", "--prompt-length", "2", "--new-tokens", "20", "--device", "cpu");
        Assert.True(r.ExitCode == 0, r.ToString());
        // 2 rows × 20 tokens (temperature 1, no end token: every row runs to 20) = 40 tokens, worked by hand:
        // uploads: prefill tokens [2×2], row ids [2], prompt lengths [2] = 3 copies, 32 bytes;
        // downloads: the status [2] after 16 tokens, then status [2], counts [2], tokens [2×20], log-probs [2×20] = 5 copies, 344 bytes.
        Assert.Contains("h2d_calls=0.075 d2h_calls=0.125 h2d_bytes=0.8 d2h_bytes=8.6", r.Out);
        Assert.Contains("host→device       3 copies, 32 bytes", r.Out);
    }
}
