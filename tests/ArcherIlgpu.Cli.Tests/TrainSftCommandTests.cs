namespace ArcherIlgpu.Cli.Tests;

public class TrainSftCommandTests
{
    static void WriteData(string path, int n)
    {
        var lines = Enumerable.Range(0, n).Select(i => $"{{\"prompt\":\"{i % 10}+1=\",\"completion\":\"{i % 10 + 1}\"}}");
        File.WriteAllLines(path, lines);
    }

    [Fact]
    public void MissingDataFileIsReported()
    {
        using var dir = new TempDir();
        var r = Archer.Run("train-sft", "--data", dir.File("absent.jsonl"), "--out", dir.File("m"), "--device", "cpu");
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("absent.jsonl", r.Err);
        Assert.Contains("not found", r.Err);
    }

    [Fact]
    public void BadJsonLineNamesTheLine()
    {
        using var dir = new TempDir();
        WriteData(dir.File("d.jsonl"), 5);
        File.AppendAllText(dir.File("d.jsonl"), "{\"prompt\": \"1+1=\"}\n");
        var r = Archer.Run("train-sft", "--data", dir.File("d.jsonl"), "--out", dir.File("m"), "--device", "cpu");
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("d.jsonl:6", r.Err);
        Assert.Contains("completion", r.Err);
    }

    [Fact]
    public void HeldOutFileAndFractionTogetherAreRefused()
    {
        using var dir = new TempDir();
        WriteData(dir.File("d.jsonl"), 5);
        var r = Archer.Run("train-sft", "--data", dir.File("d.jsonl"), "--held-out", dir.File("d.jsonl"), "--held-out-fraction", "0.2",
            "--out", dir.File("m"), "--device", "cpu");
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("--held-out-fraction", r.Err);
    }

    [Fact]
    public void UnknownPresetListsTheValidOnes()
    {
        using var dir = new TempDir();
        WriteData(dir.File("d.jsonl"), 5);
        var r = Archer.Run("train-sft", "--data", dir.File("d.jsonl"), "--preset", "huge", "--out", dir.File("m"), "--device", "cpu");
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("huge", r.Err);
        Assert.Contains("tiny", r.Err);
    }

    [Fact]
    public void InitContinuesFromASavedFolderWithItsTokenizer()
    {
        using var dir = new TempDir();
        WriteData(dir.File("d.jsonl"), 40);
        var first = Archer.Run("train-sft", "--data", dir.File("d.jsonl"), "--out", dir.File("a"), "--preset", "tiny", "--steps", "5", "--batch-size", "4", "--device", "cpu");
        Assert.True(first.ExitCode == 0, first.ToString());
        // --init takes a model folder, or a run folder for its newest checkpoint.
        string checkpoint = Path.Combine(dir.File("a"), "checkpoints", "step-000005");
        var second = Archer.Run("train-sft", "--data", dir.File("d.jsonl"), "--init", checkpoint, "--out", dir.File("b"), "--steps", "5", "--batch-size", "4", "--device", "cpu");
        Assert.True(second.ExitCode == 0, second.ToString());
        Assert.Contains("from " + checkpoint, second.Out);
        var third = Archer.Run("train-sft", "--data", dir.File("d.jsonl"), "--init", dir.File("a"), "--out", dir.File("c"), "--steps", "5", "--batch-size", "4", "--device", "cpu");
        Assert.True(third.ExitCode == 0, third.ToString());
        foreach (var run in new[] { "b", "c" })
            Assert.Equal(File.ReadAllText(Path.Combine(checkpoint, "tokenizer_char.json")),
                         File.ReadAllText(Path.Combine(dir.File(run), "checkpoints", "step-000005", "tokenizer_char.json")));
    }

    [Fact]
    public void GenerateFromAMissingFolderIsReported()
    {
        using var dir = new TempDir();
        var r = Archer.Run("generate", "--model", dir.File("nothing"), "--prompt", "1+1=", "--device", "cpu");
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("nothing", r.Err);
        Assert.Contains("not found", r.Err);
    }

    [Fact]
    public void GenerateWithoutATokenizerSaysWhatIsMissing()
    {
        // The golden folder is a Hugging Face model without tokenizer files.
        var r = Archer.Run("generate", "--model", Archer.GoldenDir, "--prompt", "hi", "--device", "cpu");
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("tokenizer", r.Err);
    }
}
