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
        var make = Archer.Run("make-sft-data", "--task", "arithmetic", "-o", "operators=+", "-o", "min_digits=2", "-o", "max_digits=2",
            "--count", "4000", "--held-out", "200", "--out", dir.File("add.jsonl"));
        Assert.True(make.ExitCode == 0, make.ToString());

        // tiny preset, 2000 steps: measured ~7 s on 2 cores and 100% held-out exact match; the thresholds
        // below leave room for another machine's rounding to land elsewhere on the learning curve.
        var model = Path.Combine(dir.Path, "model");
        var train = Archer.Run("train-sft", "--data", dir.File("add.jsonl"), "--held-out", dir.File("add.heldout.jsonl"), "--out", model,
            "--preset", "tiny", "--steps", "2000", "--batch-size", "32", "--lr", "0.005", "--seed", "1", "--device", "cpu");
        output.WriteLine(train.Out);
        Assert.True(train.ExitCode == 0, train.ToString());

        var m = Regex.Match(train.Out, @"held-out loss ([\d.]+) \(from ([\d.]+)\), greedy exact match (\d+)/(\d+)");
        Assert.True(m.Success, train.Out);
        double after = double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture), before = double.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture);
        int correct = int.Parse(m.Groups[3].Value), total = int.Parse(m.Groups[4].Value);
        Assert.Equal(200, total);
        Assert.True(after < 0.25 * before, $"held-out loss went from {before} to {after} only");
        Assert.True(correct > total / 2, $"greedy exact match {correct}/{total}");
        Assert.Matches(@"step 200/2000  loss [\d.]+  held-out [\d.]+  \d+ tok/s  elapsed \d+s  ETA \d+s", train.Out);

        foreach (var file in new[] { "config.json", "model.safetensors", "tokenizer_char.json" })
            Assert.True(File.Exists(Path.Combine(model, file)), file + " missing");
        Assert.Empty(Directory.GetFiles(model, "*.tmp"));

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
