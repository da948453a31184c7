using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using Xunit.Abstractions;

namespace ArcherIlgpu.Cli.Tests;

/// <summary>What a new user does: make a dataset, train on it, generate from the saved folder.</summary>
public class TrainSftEndToEndTests(ITestOutputHelper output)
{
    [Fact]
    public void AdditionDataTrainsAModelThatAnswersMostHeldOutProblems()
    {
        using var dir = new TempDir();
        var clock = Stopwatch.StartNew();
        // tiny preset, 2000 steps: measured ~7 s on 2 cores and 100% held-out exact match; the thresholds
        // below leave room for another machine's rounding to land elsewhere on the learning curve.
        var runDir = Path.Combine(dir.Path, "run");
        var r = AdditionSft.Run(dir, runDir, "tiny", steps: 2000);
        var model = Path.Combine(runDir, "checkpoints", "step-002000");
        var train = r.Train;
        output.WriteLine(train.Out);
        Assert.Equal(200, r.Total);
        Assert.True(r.LossAfter < 0.25 * r.LossBefore, $"held-out loss went from {r.LossBefore} to {r.LossAfter} only");
        Assert.True(r.Correct > r.Total / 2, $"greedy exact match {r.Correct}/{r.Total}");
        Assert.Matches(@"step 200/2000  loss [\d.]+  held-out [\d.]+  \d+ tok/s  elapsed \d+s  ETA \d+s", train.Out);

        foreach (var file in new[] { "config.json", "model.safetensors", "tokenizer_char.json" })
            Assert.True(File.Exists(Path.Combine(model, file)), file + " missing");
        Assert.Empty(Directory.GetFiles(model, "*.tmp"));
        Assert.Empty(Directory.GetDirectories(Path.Combine(runDir, "checkpoints"), "*.tmp"));

        var greedy = Archer.Run("generate", "--model", model, "--prompt", "35+58=", "--temperature", "0", "--max-new-tokens", "6", "--device", "cpu");
        Assert.True(greedy.ExitCode == 0, greedy.ToString());
        Assert.Matches(@"^\d{1,3}\n$", greedy.Out.Replace("\r", ""));

        var sampled = Archer.Run("generate", "--model", model, "--prompt", "35+58=", "--samples", "3", "--seed", "7", "--device", "cpu");
        Assert.True(sampled.ExitCode == 0, sampled.ToString());
        Assert.Equal(3, Regex.Matches(sampled.Out, "--- sample").Count);
        Assert.Equal(sampled.Out, Archer.Run("generate", "--model", model, "--prompt", "35+58=", "--samples", "3", "--seed", "7", "--device", "cpu").Out);
        output.WriteLine($"end to end: {clock.Elapsed.TotalSeconds:F1} s");
    }
}
