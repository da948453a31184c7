using System.Text.Json;
using ArcherIlgpu.Rl.Tasks;
using ArcherIlgpu.Rl.Training;

namespace ArcherIlgpu.Cli.Tests;

/// <summary>Held-out problems through the commands: make-sft-data never writes an eval problem; eval reads problem files and reports unseen targets.</summary>
public class HeldOutCommandTests
{
    static List<string> Prompts(string path) => File.ReadAllLines(path).Select(l =>
    {
        using var doc = JsonDocument.Parse(l);
        return doc.RootElement.GetProperty("prompt").GetString()!;
    }).ToList();

    [Theory]
    [InlineData("countdown", "format=steps", 400, 100)]
    [InlineData("arithmetic", "max_digits=1", 2000, 41)]   // all 41 held-out problems of the 300 one-digit + - * ones
    [InlineData("arithmetic", "operators=+", 300, 16)]    // with max_digits=1 below: 16 of the 100 one-digit sums are held out
    public void SftDataNeverHoldsAnEvaluationProblem(string task, string option, int count, int evalProblems)
    {
        using var dir = new TempDir();
        var args = new List<string> { "make-sft-data", "--task", task, "--task-option", option, "--count", $"{count}", "--held-out", $"{evalProblems}", "--out", dir.File("sft.jsonl") };
        var options = new Dictionary<string, string> { [option.Split('=')[0]] = option.Split('=')[1] };
        if (option == "operators=+") { args.AddRange(["--task-option", "max_digits=1"]); options["max_digits"] = "1"; }
        var r = Archer.Run([.. args]);
        Assert.True(r.ExitCode == 0, r.ToString());
        // The problems `archer eval` (and train-rl --eval-problems) evaluate by default.
        var eval = Evaluator.HeldOut(TaskRegistry.Create(task, options), evalProblems).Select(e => e.Prompt).ToHashSet();
        var train = Prompts(dir.File("sft.jsonl"));
        Assert.Equal(count, train.Count);
        Assert.DoesNotContain(train, eval.Contains);
        Assert.Equal(eval, Prompts(dir.File("sft.heldout.jsonl")).ToHashSet());
    }

    [Fact]
    public void SftDataFromAProblemsFile()
    {
        using var dir = new TempDir();
        // 1 1 T → T is solvable for every T; targets 24 and 37 are unseen targets, never trained on.
        File.WriteAllLines(dir.File("p.jsonl"), ["""{"numbers":[1,1,30],"target":30}""", """{"numbers":[1,1,24],"target":24}""", """{"numbers":[2,1,40],"target":37}"""]);
        var r = Archer.Run("make-sft-data", "--task", "countdown", "--task-option", "format=steps", "--problems-file", dir.File("p.jsonl"), "--count", "6", "--out", dir.File("sft.jsonl"));
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Equal(Enumerable.Repeat("1 1 30>30:", 6), Prompts(dir.File("sft.jsonl")));
        Assert.Contains("training uses 1 of its 3 problems", r.Out);

        File.WriteAllLines(dir.File("bad.jsonl"), ["""{"numbers":[1,1,30],"target":30}""", """{"numbers":[1,1,30]}"""]);
        var bad = Archer.Run("make-sft-data", "--task", "countdown", "--problems-file", dir.File("bad.jsonl"), "--out", dir.File("x.jsonl"));
        Assert.NotEqual(0, bad.ExitCode);
        Assert.Contains("bad.jsonl:2:", bad.Err);
        Assert.Contains("target", bad.Err);
        Assert.DoesNotContain("   at ", bad.Err);
    }

    [Fact]
    public void EvalReadsAProblemsFileAndNamesABadLine()
    {
        using var dir = new TempDir();
        string model = BadInputTests.ModelFolder(dir);
        File.WriteAllLines(dir.File("p.jsonl"), ["""{"numbers":[84,9,14,28],"target":73}""", "", """{"numbers":[5,5,7],"target":7}"""]);
        string[] common = ["eval", "--model", model, "--task", "countdown", "--task-option", "format=steps", "--n", "2", "--max-response-tokens", "6", "--device", "cpu"];
        var r = Archer.Run([.. common, "--problems-file", dir.File("p.jsonl")]);
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Matches(@"problems\s+2\b", r.Out);
        Assert.Contains("verdict/format", r.Out);
        Assert.DoesNotContain("unseen targets", r.Out);

        File.WriteAllLines(dir.File("bad.jsonl"), ["""{"numbers":[84,9,14,28],"target":73}""", """{"numbers":[84,9],"target":"x"}"""]);
        var bad = Archer.Run([.. common, "--problems-file", dir.File("bad.jsonl")]);
        Assert.NotEqual(0, bad.ExitCode);
        Assert.Contains("bad.jsonl:2:", bad.Err);
        Assert.DoesNotContain("   at ", bad.Err);
    }

    [Fact]
    public void EvalReportsUnseenTargetsSeparately()
    {
        using var dir = new TempDir();
        var r = Archer.Run("eval", "--model", BadInputTests.ModelFolder(dir), "--task", "countdown", "--task-option", "format=steps", "--problems", "3", "--n", "1",
            "--max-response-tokens", "4", "--device", "cpu");
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("eval on unseen targets:", r.Out);
        var json = r.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries)[^1];
        using var doc = JsonDocument.Parse(json);
        Assert.True(doc.RootElement.TryGetProperty("eval/unseen_targets/avg@1", out _), json);
        Assert.True(doc.RootElement.TryGetProperty("eval/verdict/correct", out _), json);
    }

    [Fact]
    public void TrainRlTrainsOnAProblemsFileAndCountsVerdicts()
    {
        using var dir = new TempDir();
        File.WriteAllLines(dir.File("p.jsonl"), ["""{"numbers":[1,1,30],"target":30}""", """{"numbers":[3,5,2],"target":16}"""]);
        string run = dir.File("run");
        string[] args = ["train-rl", "--algo", "grpo", "--model", BadInputTests.ModelFolder(dir), "--task", "countdown", "--task-option", "format=steps",
            "--steps", "1", "--group-size", "2", "--prompts-per-step", "2", "--out", run, "--device", "cpu", "--sample-every", "1"];
        var r = Archer.Run([.. args, "--problems-file", dir.File("p.jsonl")]);
        Assert.True(r.ExitCode == 0, r.ToString());
        using var metrics = JsonDocument.Parse(File.ReadAllLines(Path.Combine(run, "metrics.jsonl"))[0]);
        double total = new[] { "correct", "wrong_target", "arithmetic", "unavailable", "format" }
            .Sum(v => metrics.RootElement.GetProperty("verdict/" + v).GetDouble());
        Assert.Equal(1.0, total, 12);
        // Only the file's problems were drawn (neither is held out: 30 and 16 are trained targets and neither problem falls in the hash share).
        Assert.All(File.ReadAllLines(Path.Combine(run, "samples.jsonl")), l => Assert.Matches("\"prompt\":\"(1 1 30>30:|3 5 2>16:)\"", l));

        File.WriteAllLines(dir.File("bad.jsonl"), ["""{"numbers":[1,1,30],"target":30}""", """{"numbers":[1,1,30],"target":-1}"""]);
        var bad = Archer.Run([.. args, "--problems-file", dir.File("bad.jsonl")]);
        Assert.NotEqual(0, bad.ExitCode);
        Assert.Contains("bad.jsonl:2:", bad.Err);
    }
}
