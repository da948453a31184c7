using System.Text.Json;

namespace ArcherIlgpu.Cli.Tests;

public class MakeSftDataCommandTests
{
    static List<(string Prompt, string Completion)> ReadJsonl(string path) =>
        File.ReadAllLines(path).Select(l =>
        {
            using var doc = JsonDocument.Parse(l);
            return (doc.RootElement.GetProperty("prompt").GetString()!, doc.RootElement.GetProperty("completion").GetString()!);
        }).ToList();

    [Fact]
    public void TwoDigitAdditionWithDisjointHeldOut()
    {
        using var dir = new TempDir();
        var r = Archer.Run("make-sft-data", "--task", "arithmetic", "--task-option", "operators=+", "--task-option", "min_digits=2", "--task-option", "max_digits=2",
            "--count", "300", "--held-out", "50", "--seed", "3", "--out", dir.File("add.jsonl"));
        Assert.True(r.ExitCode == 0, r.ToString());
        var train = ReadJsonl(dir.File("add.jsonl"));
        var held = ReadJsonl(dir.File("add.heldout.jsonl"));
        Assert.Equal(300, train.Count);
        Assert.Equal(50, held.Count);
        foreach (var (prompt, completion) in train.Concat(held))
        {
            // Checked independently of the task: "a+b=" with two-digit operands, completion the sum.
            var m = System.Text.RegularExpressions.Regex.Match(prompt, @"^(\d\d)\+(\d\d)=$");
            Assert.True(m.Success, prompt);
            Assert.Equal((int.Parse(m.Groups[1].Value) + int.Parse(m.Groups[2].Value)).ToString(), completion);
        }
        Assert.Empty(held.Select(h => h.Prompt).Intersect(train.Select(t => t.Prompt)));
        Assert.Equal(50, held.Select(h => h.Prompt).Distinct().Count());
    }

    [Fact]
    public void SameSeedSameFile()
    {
        using var dir = new TempDir();
        foreach (var name in new[] { "a.jsonl", "b.jsonl" })
            Assert.Equal(0, Archer.Run("make-sft-data", "--task", "arithmetic", "--count", "20", "--seed", "9", "--out", dir.File(name)).ExitCode);
        Assert.Equal(File.ReadAllText(dir.File("a.jsonl")), File.ReadAllText(dir.File("b.jsonl")));
    }

    [Fact]
    public void UnknownTaskListsTheValidOnes()
    {
        using var dir = new TempDir();
        var r = Archer.Run("make-sft-data", "--task", "sorting", "--out", dir.File("x.jsonl"));
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("sorting", r.Err);
        Assert.Contains("arithmetic", r.Err);
        Assert.False(File.Exists(dir.File("x.jsonl")));
    }

    [Fact]
    public void BadTaskOptionIsReported()
    {
        using var dir = new TempDir();
        var r = Archer.Run("make-sft-data", "--task", "arithmetic", "--task-option", "digits=2", "--out", dir.File("x.jsonl"));
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("digits", r.Err);
        Assert.Contains("max_digits", r.Err);
        r = Archer.Run("make-sft-data", "--task", "arithmetic", "--task-option", "max_digits", "--out", dir.File("x.jsonl"));
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("key=value", r.Err);
    }

    [Fact]
    public void TooFewDistinctProblemsForTheHeldOutFails()
    {
        using var dir = new TempDir();
        // 1-digit addition has 100 distinct problems, 16 of them held out: asking for 17 must fail, naming the 16.
        var r = Archer.Run("make-sft-data", "--task", "arithmetic", "--task-option", "operators=+", "--task-option", "max_digits=1",
            "--count", "2000", "--held-out", "17", "--out", dir.File("x.jsonl"));
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("held-out", r.Err);
        Assert.Contains("only 16", r.Err);
    }
}
