using ArcherIlgpu.Model;
using ArcherIlgpu.Kernels;
using ArcherIlgpu.Model.Gpt2;
using ArcherIlgpu.Model.Tokenizers;

namespace ArcherIlgpu.Cli.Tests;

/// <summary>
/// Bad input through the command line: one line on stderr naming the key, file, line or value and what
/// was expected; a non-zero exit code; never a stack trace. (Token ids outside the vocabulary and
/// ragged token files: <see cref="LossCommandTests"/>; bad SFT JSONL: <see cref="TrainSftCommandTests"/>.)
/// </summary>
public class BadInputTests
{
    static CliResult Fails(params string[] args)
    {
        var r = Archer.Run(args);
        Assert.True(r.ExitCode != 0, "expected a failure:\n" + r);
        Assert.DoesNotContain("   at ", r.Err);          // no stack trace
        Assert.DoesNotContain("Exception", r.Err);
        return r;
    }

    static CliResult Demo(params string[] sets) =>
        Fails(["demo", "--preset", "quick", "--device", "cpu", "--runs-dir", Path.Combine(Path.GetTempPath(), "archer-never-created"), .. sets]);

    [Fact]
    public void UnknownConfigKeyIsNamedWithTheClosestValidKey()
    {
        var r = Demo("--set", "rl.grup_size=4");
        Assert.Contains("rl.grup_size", r.Err);
        Assert.Contains("rl.group_size", r.Err);
        Assert.Contains("Valid keys", r.Err);
    }

    /// <summary>A mistyped algorithm setting that is close to no demo key is still matched against the algorithm's keys.</summary>
    [Fact]
    public void AMistypedAlgorithmKeyInTheDemoSuggestsTheAlgorithmsKey()
    {
        var r = Demo("--set", "rl.ppo_epoch=2");
        Assert.Contains("unknown config key 'rl.ppo_epoch'", r.Err);
        Assert.Contains("Did you mean 'rl.ppo_epochs'?", r.Err);
        Assert.Contains("rl.low.clip_high", r.Err);   // the algorithm's keys are listed with the demo's
        Assert.Single(r.Err.TrimEnd().Split('\n'));
    }

    [Fact]
    public void UnknownKeyInAConfigFileNamesTheFileAndJsonPath()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("c.json"), "{\"rl\": {\"steps\": 3, \"groups\": 4}}");
        var r = Demo("--config", dir.File("c.json"));
        Assert.Contains("c.json", r.Err);
        Assert.Contains("$.rl.groups", r.Err);
        Assert.Contains("rl.group_size", r.Err);
    }

    [Fact]
    public void MistypedValueNamesKeyValueAndExpectedType()
    {
        var r = Demo("--set", "rl.steps=many");
        Assert.Contains("rl.steps", r.Err);
        Assert.Contains("many", r.Err);
        Assert.Contains("integer", r.Err);
    }

    [Theory]
    [InlineData("rl.group_size=1", "rl.group_size must be >= 2")]
    [InlineData("rl.entropy_quantile=1.5", "rl.entropy_quantile (ρ) must be in (0, 1), got 1.5")]
    [InlineData("rl.entropy_quantile=0", "must be in (0, 1), got 0")]
    [InlineData("rl.learning_rate=-0.001", "rl.learning_rate must be >= 0, got -0.001")]
    [InlineData("sft.learning_rate=-1", "sft.learning_rate must be a positive number, got -1")]
    [InlineData("eval.samples=0", "eval.samples must be >= 1")]
    [InlineData("rl.overrides=low.clip_low=2", "low.clip_low must be in [0, 1), got 2")]
    public void OutOfRangeValuesAreRejectedWithTheRange(string set, string expected)
    {
        var r = Demo("--set", set);
        Assert.Contains(expected, r.Err);
    }

    [Fact]
    public void UnknownPresetListsTheValidOnes()
    {
        var r = Fails("demo", "--preset", "huge");
        Assert.Contains("huge", r.Err);
        Assert.Contains("demo, quick", r.Err);
    }

    [Theory]
    [InlineData("fp16", "precision: unknown precision 'fp16'; valid: fp32, tf32, bf16")]
    [InlineData("bf16", "--precision bf16 needs tensor cores (device cuda, or ilgpu-cpu to emulate them); the cpu backend computes in fp32")]
    public void APrecisionTheDeviceCannotGiveIsRefusedInTheDemo(string precision, string expected)
    {
        var r = Demo("--precision", precision);
        Assert.Contains(expected, r.Err);
        Assert.Single(r.Err.TrimEnd().Split('\n'));
    }

    /// <summary>The cpu backend computes in float32: asking it for bf16 or tf32 is an error, never a silent float32 run.</summary>
    [Theory]
    [InlineData("bench", "train", "--preset", "tiny", "--device", "cpu", "--precision", "tf32")]
    [InlineData("bench", "generate", "--preset", "tiny", "--device", "cpu", "--precision", "bf16")]
    public void AReducedPrecisionOnTheCpuBackendIsRefused(params string[] args)
    {
        var r = Fails(args);
        Assert.Contains("needs tensor cores", r.Err);
        Assert.Contains("the cpu backend computes in fp32", r.Err);
    }

    [Fact]
    public void AnUnknownPrecisionNamesTheValidOnes()
    {
        var r = Fails("bench", "train", "--preset", "tiny", "--device", "cpu", "--precision", "half");
        Assert.Contains("--precision must be one of fp32, tf32, bf16, not 'half'", r.Err);
    }

    [Fact]
    public void UnknownDeviceListsTheValidNames()
    {
        var r = Fails("demo", "--preset", "quick", "--device", "tpu", "--runs-dir", Path.Combine(Path.GetTempPath(), "archer-never-created"));
        Assert.Contains("tpu", r.Err);
        Assert.Contains("cpu", r.Err);
    }

    [SkippableFact]
    public void ADeviceThatIsNotThereIsNamed()
    {
        Skip.If(Devices.Available().Contains("cuda"), "this machine has a CUDA device");
        var r = Fails("demo", "--preset", "quick", "--device", "cuda", "--runs-dir", Path.Combine(Path.GetTempPath(), "archer-no-cuda-runs"));
        Assert.Contains("'cuda' is not available", r.Err);
        Assert.Contains("available devices: ", r.Err);
    }

    [Fact]
    public void ResumingSomethingThatIsNotARunIsExplained()
    {
        using var dir = new TempDir();
        var r = Fails("demo", "--resume", dir.Path);
        Assert.Contains(dir.Path, r.Err);
        Assert.Contains("not a run folder", r.Err);
    }

    // ------------------------------------------------------------------ datasets (the jsonl task)

    static CliResult DemoOnJsonl(string path) => Demo("--set", "task.name=jsonl", "--set", $"task.options=path={path}");

    [Fact]
    public void EmptyDatasetIsNamed()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("empty.jsonl"), "\n\n");
        var r = DemoOnJsonl(dir.File("empty.jsonl"));
        Assert.Contains("empty.jsonl", r.Err);
        Assert.Contains("empty", r.Err);
    }

    [Fact]
    public void UnparsableJsonlLineIsNamedWithItsLineNumber()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("d.jsonl"), "{\"prompt\": \"1+1=\", \"answer\": \"2\"}\n{\"prompt\": \"2+2=\", \"answer\": \n");
        var r = DemoOnJsonl(dir.File("d.jsonl"));
        Assert.Contains("d.jsonl:2", r.Err);
        Assert.Contains("not valid JSON", r.Err);
    }

    [Fact]
    public void PromptLongerThanTheContextIsNamed()
    {
        using var dir = new TempDir();
        // 82+ characters each; the tiny model's context is 64. 300 distinct lines, so that the demo's 16 evaluation
        // problems exist among the dataset's held-out tenth and the error comes from the prompt's length.
        var lines = Enumerable.Range(0, 300).Select(i => $"{{\"prompt\": \"{string.Concat(Enumerable.Repeat("1+", 40))}{i}=\", \"answer\": \"{40 + i}\"}}");
        File.WriteAllLines(dir.File("long.jsonl"), lines);
        var r = DemoOnJsonl(dir.File("long.jsonl"));
        Assert.Contains("context length 64", r.Err);
        Assert.Contains("1+1+1+", r.Err);   // which problem
    }

    // ------------------------------------------------------------------ model folders through archer eval

    /// <summary>A small valid model folder (tiny preset, char tokenizer).</summary>
    internal static string ModelFolder(TempDir dir)
    {
        string path = dir.File("model");
        using var backend = new CpuBackend();
        var tokenizer = CharTokenizer.ForArithmetic();
        using var model = new Gpt2Model(backend, Gpt2Config.Preset("tiny") with { VocabSize = tokenizer.VocabSize }, seed: 3);
        Checkpoint.Save(model, path);
        TokenizerFiles.Save(tokenizer, path);
        return path;
    }

    static CliResult Eval(string model) =>
        Fails("eval", "--model", model, "--task", "arithmetic", "--task-option", "max_digits=1", "--problems", "2", "--n", "1", "--device", "cpu");

    [Fact]
    public void TheValidFolderEvaluates()
    {
        using var dir = new TempDir();
        var r = Archer.Run("eval", "--model", ModelFolder(dir), "--task", "arithmetic", "--task-option", "max_digits=1", "--problems", "2", "--n", "1", "--device", "cpu");
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("pass@1", r.Out);
    }

    [Fact]
    public void MissingWeightsFileIsNamed()
    {
        using var dir = new TempDir();
        string model = ModelFolder(dir);
        File.Delete(Path.Combine(model, "model.safetensors"));
        var r = Eval(model);
        Assert.Contains("model.safetensors", r.Err);
        Assert.Contains("not found", r.Err);
        Assert.Single(r.Err.Trim().Split('\n'));
    }

    [Theory]
    [InlineData(4)]        // not even the header length
    [InlineData(100)]      // header cut short
    [InlineData(-1000)]    // data cut short (1000 bytes missing at the end)
    public void TruncatedWeightsFileIsNamed(int keep)
    {
        using var dir = new TempDir();
        string path = Path.Combine(ModelFolder(dir), "model.safetensors");
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..(keep > 0 ? keep : bytes.Length + keep)]);
        var r = Eval(Path.GetDirectoryName(path)!);
        Assert.Contains("model.safetensors", r.Err);
        Assert.Single(r.Err.Trim().Split('\n'));
    }

    [Fact]
    public void CorruptHeaderIsNamed()
    {
        using var dir = new TempDir();
        string path = Path.Combine(ModelFolder(dir), "model.safetensors");
        var bytes = File.ReadAllBytes(path);
        bytes[12] = (byte)'}';   // inside the JSON header
        bytes[13] = (byte)'@';
        File.WriteAllBytes(path, bytes);
        var r = Eval(Path.GetDirectoryName(path)!);
        Assert.Contains("model.safetensors", r.Err);
    }

    [Fact]
    public void TensorShapeThatDisagreesWithTheConfigIsNamed()
    {
        using var dir = new TempDir();
        string model = ModelFolder(dir);
        string config = Path.Combine(model, "config.json");
        File.WriteAllText(config, File.ReadAllText(config).Replace("\"n_embd\": 32", "\"n_embd\": 64"));
        var r = Eval(model);
        Assert.Contains("has shape", r.Err);
        Assert.Contains("expected", r.Err);
        Assert.Contains("tensor '", r.Err);
        Assert.Contains("model.safetensors", r.Err);
    }

    [Fact]
    public void UnsupportedModelTypeIsNamed()
    {
        using var dir = new TempDir();
        string model = ModelFolder(dir);
        string config = Path.Combine(model, "config.json");
        File.WriteAllText(config, File.ReadAllText(config).Replace("\"model_type\": \"gpt2\"", "\"model_type\": \"bert\""));
        var r = Eval(model);
        Assert.Contains("config.json", r.Err);
        Assert.Contains("model_type 'bert' is not supported; supported model types: gpt2, llama, qwen2, qwen3", r.Err);
    }

    [Fact]
    public void MissingModelFolderIsNamed()
    {
        using var dir = new TempDir();
        var r = Eval(dir.File("nothing-here"));
        Assert.Contains("nothing-here", r.Err);
        Assert.Contains("not found", r.Err);
    }

    // ------------------------------------------------------------------ sizes, devices, files: one line, exit 1

    /// <summary>Exit code 1 and exactly one line on stderr, holding every one of <paramref name="expected"/>.</summary>
    static CliResult OneLine(CliResult r, params string[] expected)
    {
        Assert.True(r.ExitCode == 1, "expected exit code 1:\n" + r);
        Assert.Single(r.Err.TrimEnd().Split('\n'));
        foreach (var e in expected) Assert.Contains(e, r.Err);
        return r;
    }

    static bool HasGpu => Devices.Available().Contains("cuda");

    /// <summary>Sizes up to ~80 GB can fit a big machine; where they would, their test has nothing to refuse.</summary>
    static bool HostHasOver64GiB => MemoryEstimate.HostMemory() > (64L << 30);

    [Fact]
    public void HundredMillionPromptsPerStepAreRefusedBeforeAnythingIsGenerated()
    {
        using var dir = new TempDir();
        OneLine(Fails("demo", "--preset", "quick", "--device", "cpu", "--runs-dir", dir.File("runs"), "--set", "rl.prompts_per_step=100000000"),
            "rl.prompts_per_step=100000000", "positions in one pass; at most 2,147,483,647 fit");
        Assert.False(Directory.Exists(dir.File("runs")));   // refused before the run folder was created
    }

    [Fact]
    public void HundredMillionSftBatchIsRefused() =>
        OneLine(Demo("--set", "sft.batch_size=100000000"), "sft.batch_size=100000000", "6,400,000,000 positions");

    [Fact]
    public void AMillionSftBatchIsRefusedForItsLogits() =>
        OneLine(Demo("--set", "sft.batch_size=1000000"), "sft.batch_size=1000000", "the logits would need 3,648,000,000 elements in one buffer");

    /// <summary>20 one-digit additions in the train-sft format.</summary>
    static string SftData(TempDir dir)
    {
        string path = dir.File("sft.jsonl");
        File.WriteAllLines(path, Enumerable.Range(0, 20).Select(i => $"{{\"prompt\": \"{i % 10}+1=\", \"completion\": \"{i % 10 + 1}\"}}"));
        return path;
    }

    static CliResult TrainSft(TempDir dir, string batch) =>
        Fails("train-sft", "--data", SftData(dir), "--out", dir.File("out"), "--batch-size", batch, "--steps", "2", "--device", "cpu");

    [SkippableFact]
    public void AMillionTrainSftBatchIsRefusedWithTheEstimate()
    {
        Skip.If(HostHasOver64GiB, "a million sequences of this data fit a machine this big");
        using var dir = new TempDir();
        OneLine(TrainSft(dir, "1000000"), "--batch-size 1000000 needs about", "GiB is available");
        Assert.False(Directory.Exists(dir.File("out")));   // refused before the output folder was written
    }

    [Fact]
    public void HundredMillionTrainSftBatchIsRefusedAnywhere()
    {
        using var dir = new TempDir();
        OneLine(TrainSft(dir, "100000000"), "--batch-size 100000000");
    }

    [SkippableFact]
    public void AMillionGeneratedSamplesAreRefusedWithTheEstimate()
    {
        Skip.If(HostHasOver64GiB, "a million samples of the tiny model fit a machine this big");
        using var dir = new TempDir();
        OneLine(Fails("generate", "--model", ModelFolder(dir), "--prompt", "1+1=", "--samples", "1000000", "--device", "cpu"),
            "--samples 1000000 needs about", "KV cache", "is available");
    }

    [Fact]
    public void HundredMillionGeneratedSamplesAreRefusedAnywhere()
    {
        using var dir = new TempDir();
        OneLine(Fails("generate", "--model", ModelFolder(dir), "--prompt", "1+1=", "--samples", "100000000", "--device", "cpu"), "--samples 100000000");
    }

    [Fact]
    public void AHundredMillionEvaluationSamplesAreRefused() =>
        OneLine(Demo("--set", "eval.samples=100000000"), "eval.samples=100000000", "completions");

    [SkippableFact]
    public void SelfCheckOnAMissingGpuListsTheDevices()
    {
        Skip.If(HasGpu, "this machine has a CUDA device");
        OneLine(Fails("selfcheck", "--device", "cuda"), "archer selfcheck: error: device 'cuda' is not available", "available devices: cpu");
    }

    [SkippableFact]
    public void BenchOnAMissingGpuListsTheDevices()
    {
        Skip.If(HasGpu, "this machine has a CUDA device");
        OneLine(Fails("bench", "train", "--device", "cuda", "--preset", "tiny"), "archer bench train: error: device 'cuda' is not available", "available devices: cpu");
    }

    [Fact]
    public void AnUnknownDeviceInTheEnvironmentIsNamedWithTheVariable()
    {
        // The tests of this assembly run one at a time (Usings.cs), so the variable is seen by this test alone.
        string? old = Environment.GetEnvironmentVariable(Devices.EnvironmentVariable);
        Environment.SetEnvironmentVariable(Devices.EnvironmentVariable, "bogus");
        try
        {
            OneLine(Fails("selfcheck"), "ARCHER_DEVICE=bogus: unknown device 'bogus'", "valid names: auto, cpu");
            OneLine(Fails("demo", "--preset", "quick", "--runs-dir", Path.Combine(Path.GetTempPath(), "archer-never-created")), "ARCHER_DEVICE=bogus");
        }
        finally { Environment.SetEnvironmentVariable(Devices.EnvironmentVariable, old); }
    }

    [Fact]
    public void MakeSftDataIntoAFolderIsRefused()
    {
        using var dir = new TempDir();
        OneLine(Fails("make-sft-data", "--task", "arithmetic", "--out", dir.Path), $"--out '{dir.Path}' is a folder", "JSONL file");
    }

    /// <summary>A run folder with two metrics lines.</summary>
    static string RunFolder(TempDir dir)
    {
        string run = dir.File("run");
        Directory.CreateDirectory(run);
        File.WriteAllLines(Path.Combine(run, "metrics.jsonl"), ["{\"step\": 1, \"rl/loss\": 0.5}", "{\"step\": 2, \"rl/loss\": 0.4}"]);
        return run;
    }

    [Fact]
    public void ReportThatCannotWriteItsChartsSaysWhy()
    {
        using var dir = new TempDir();
        string run = RunFolder(dir);
        File.WriteAllText(Path.Combine(run, "plots"), "");   // a file where report writes its charts folder (as root, chmod would not stop it)
        OneLine(Fails("report", run), "archer report: error: cannot write the report", "plots");
    }

    [SkippableFact]
    public void ReportOnAReadOnlyRunSaysWhy()
    {
        Skip.If(OperatingSystem.IsWindows() || Environment.UserName == "root", "needs file permissions that bind this user");
        if (OperatingSystem.IsWindows()) return;
        using var dir = new TempDir();
        string run = RunFolder(dir);
        File.SetUnixFileMode(run, UnixFileMode.UserRead | UnixFileMode.UserExecute);
        try { OneLine(Fails("report", run), "cannot write the report", "read-only"); }
        finally { File.SetUnixFileMode(run, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute); }
    }

    [Fact]
    public void ADuplicateKeyInAConfigFileIsNamedWithTheFile()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("c.json"), "{\"rl\": {\"steps\": 3, \"steps\": 4}}");
        OneLine(Demo("--config", dir.File("c.json")), "c.json", "key 'steps' is given twice (at $.rl.steps)");
    }

    [Fact]
    public void AFolderAsConfigFileIsNamed()
    {
        using var dir = new TempDir();
        OneLine(Demo("--config", dir.Path), $"config file '{dir.Path}' is a folder; expected a JSON file");
    }

    [Fact]
    public void AFarTooHighLearningRateStopsSftWithAClearMessage()
    {
        var r = OneLine(Demo("--set", "sft.learning_rate=1e10"), "not finite in 10 consecutive steps", "peak learning rate 1E+10", "lower the learning rate (sft.learning_rate)");
        Assert.DoesNotContain("outside the vocabulary", r.Err);
        Assert.DoesNotContain("evaluating", r.Out);   // stopped before sampling anything
    }

    /// <summary>The divergence message names the key the user sets the learning rate with, in each command that trains.</summary>
    [Fact]
    public void ADivergenceNamesTheLearningRateKeyOfTheCommand()
    {
        OneLine(Demo("--set", "rl.learning_rate=1e10"), "lower the learning rate (rl.learning_rate)");
        using var dir = new TempDir();
        OneLine(Fails("train-sft", "--data", SftData(dir), "--out", dir.File("sft"), "--lr", "1e10", "--steps", "40", "--batch-size", "4", "--device", "cpu"),
            "not finite in 10 consecutive steps", "lower the learning rate (--lr)");
        OneLine(Fails("train-rl", "--algo", "grpo", "--model", ModelFolder(dir), "--task", "arithmetic", "--task-option", "max_digits=1", "operators=+",
                "--steps", "5", "--group-size", "4", "--prompts-per-step", "4", "--set", "rl.learning_rate=1e10", "--out", dir.File("rl"), "--device", "cpu"),
            "lower the learning rate (--set rl.learning_rate)");
    }
}
