using System.CommandLine;
using System.Text.Json;
using System.Text.RegularExpressions;
using ArcherIlgpu.Cli.Demo;
using ArcherIlgpu.Model;
using ArcherIlgpu.Rl.Algorithms;
using ArcherIlgpu.Runs;

namespace ArcherIlgpu.Cli.Tests;

/// <summary>
/// The CLI reads as one tool (issue 13, item 5): one option name for task options, one spelling of every
/// algorithm setting in demo and train-rl, help with each default once and an example, <c>archer help</c>,
/// one file format for SFT and evaluation, run folders accepted as models, the 80/20 alias, and the
/// README's command lines parse.
/// </summary>
public class OneToolTests
{
    static readonly string[] AdditionOptions = ["--task-option", "operators=+", "min_digits=1", "max_digits=1"];

    // ================================================================ option names

    [Fact]
    public void MakeSftDataTakesTaskOptionLikeEveryOtherCommand()
    {
        using var dir = new TempDir();
        var r = Archer.Run(["make-sft-data", "--task", "arithmetic", .. AdditionOptions, "--count", "5", "--out", dir.File("a.jsonl")]);
        Assert.True(r.ExitCode == 0, r.ToString());
        // Every prompt is a one-digit sum: the options reached the task.
        Assert.All(File.ReadAllLines(dir.File("a.jsonl")), l => Assert.Matches(@"""prompt"":""\d\+\d=""", l));

        var old = Archer.Run("make-sft-data", "--task", "arithmetic", "-o", "operators=+", "--out", dir.File("b.jsonl"));
        Assert.NotEqual(0, old.ExitCode);
        Assert.False(File.Exists(dir.File("b.jsonl")));
        foreach (var command in new[] { "make-sft-data", "train-rl", "eval" })
            Assert.Contains("--task-option", Help(command).Out);
    }

    // ================================================================ --set spelling

    static TrainRlCommand.Settings RlSettings(string algo, params string[] set) =>
        new(algo, "unused", "arithmetic", [], 10, null, null, set, 1, null, 0, 0, 0, 0, "cpu");

    static readonly IModelConfig Gpt2Tiny = Models.Preset("tiny");

    [Fact]
    public void AnAlgorithmSettingIsSpelledTheSameInDemoAndTrainRl()
    {
        string[] sets = ["rl.low.clip_high=0.3", "rl.ppo_epochs=2", "rl.learning_rate=1e-4", "rl.prompts_per_step=4", "rl.mini_batch_prompts=2"];
        var demo = RunConfig.Bind(own => ConfigBinder.Bind(RunPresets.Demo, sets: own), sets).Algorithm();
        var trainRl = TrainRlCommand.ResolveConfig(RlSettings("archer", sets), Gpt2Tiny, TextWriter.Null);
        foreach (var config in new[] { demo, trainRl })
        {
            Assert.Equal(0.3, config.Low.ClipHigh);
            Assert.Equal(0.2, config.Low.ClipLow);       // the preset's, untouched
            Assert.Equal(2, config.PpoEpochs);
            Assert.Equal(1e-4, config.LearningRate);
            Assert.Equal(4, config.TrainBatchPrompts);
            Assert.Equal(2, config.MiniBatchPrompts);
        }
    }

    [Fact]
    public void TrainRlSuggestsTheKeyItMeant()
    {
        var flat = Assert.ThrowsAny<ArgumentException>(() => TrainRlCommand.ResolveConfig(RlSettings("archer", "learning_rate=1e-4"), Gpt2Tiny, TextWriter.Null));
        Assert.Contains("Did you mean 'rl.learning_rate'", flat.Message);
        var typo = Assert.ThrowsAny<ArgumentException>(() => TrainRlCommand.ResolveConfig(RlSettings("archer", "rl.low.clip_hihg=0.3"), Gpt2Tiny, TextWriter.Null));
        Assert.Contains("'rl.low.clip_high'", typo.Message);
        var demo = Assert.ThrowsAny<ArgumentException>(() => RunConfig.Bind(own => ConfigBinder.Bind(RunPresets.Demo, sets: own), ["rl.low.clip_hihg=0.3"]));
        Assert.Contains("'rl.low.clip_high'", demo.Message);
    }

    [Fact]
    public void DemoKeepsAlgorithmSettingsInItsConfigAndChecksThem()
    {
        var config = RunConfig.Bind(own => ConfigBinder.Bind(RunPresets.Demo, sets: own), ["rl.dual_clip_c=5", "rl.steps=3"]);
        Assert.Equal(["dual_clip_c=5"], config.Rl.Overrides);
        Assert.Equal(3, config.Rl.Steps);
        var bad = Assert.ThrowsAny<ArgumentException>(() => RunConfig.Bind(own => ConfigBinder.Bind(RunPresets.Demo, sets: own), ["rl.low.clip_low=2"]));
        Assert.Contains("low.clip_low must be in [0, 1), got 2", bad.Message);
    }

    [Fact]
    public void TrainRlDefaultsToTheSmallScaleAndPaperIsThePreset()
    {
        var small = TrainRlCommand.ResolveConfig(RlSettings("archer"), Gpt2Tiny, TextWriter.Null);
        Assert.Equal((8, 16, 8), (small.GroupSize, small.TrainBatchPrompts, small.MiniBatchPrompts));
        Assert.Equal(AlgorithmScale.Small.LearningRate, small.LearningRate);
        var paper = TrainRlCommand.ResolveConfig(RlSettings("archer") with { Preset = "paper" }, Gpt2Tiny, TextWriter.Null);
        // The paper's scale (archer-spec.md §9): 64 prompts × 16 samples, mini-batches of 32, lr 1e-6; the responses cut to the model's context.
        Assert.Equal((16, 64, 32, 1e-6), (paper.GroupSize, paper.TrainBatchPrompts, paper.MiniBatchPrompts, paper.LearningRate));
        Assert.Equal(Gpt2Tiny.MaxT - 1, paper.MaxResponseTokens);
        // The demo starts from the same small scale.
        Assert.Equal((small.GroupSize, small.TrainBatchPrompts, small.MiniBatchPrompts), (RunPresets.Demo.Rl.GroupSize, RunPresets.Demo.Rl.PromptsPerStep, RunPresets.Demo.Rl.MiniBatchPrompts));
    }

    // ================================================================ 80/20

    [Theory]
    [InlineData("80/20")]
    [InlineData("8020")]
    public void EightyTwentyIsTheEntropyMask(string alias)
    {
        Assert.Equal(AlgorithmRegistry.Get("entropy-mask"), AlgorithmRegistry.Get(alias));
        var rl = TrainRlCommand.ResolveConfig(RlSettings(alias), Gpt2Tiny, TextWriter.Null);
        Assert.Equal(EntropyClassification.Batch, rl.Classification);
        var demo = ConfigBinder.Bind(RunPresets.Demo, sets: [$"rl.algorithm={alias}"]).Algorithm();
        Assert.Equal("entropy-mask", demo.Name);
        Assert.Contains("80/20", Help("train-rl").Out);
    }

    // ================================================================ help

    static CliResult Help(params string[] command) => Archer.Run([.. command, "--help"]);

    static IEnumerable<Command> AllCommands(Command c) => c.Subcommands.SelectMany(s => AllCommands(s).Prepend(s));

    static string[] PathOf(Command root, Command target)
    {
        foreach (var c in root.Subcommands)
        {
            if (c == target) return [c.Name];
            var below = PathOf(c, target);
            if (below.Length > 0) return [c.Name, .. below];
        }
        return [];
    }

    [Fact]
    public void HelpShowsEachDefaultOnceAndAnExampleThatParses()
    {
        var root = Program.CreateRoot();
        foreach (var command in AllCommands(root))
        {
            var path = PathOf(root, command);
            var r = Help(path);
            Assert.True(r.ExitCode == 0, r.ToString());
            foreach (var line in r.Out.Split('\n'))
                Assert.False(Regex.Matches(line, "default", RegexOptions.IgnoreCase).Count > 1, $"{string.Join(' ', path)}: default twice in \"{line.Trim()}\"");
            Assert.Contains("Example", r.Out);
            // A constant default belongs in DefaultValueFactory (help prints it as "[default: X]"), not in the description too.
            foreach (var option in command.Options.Where(o => o.HasDefaultValue))
                Assert.False(Regex.IsMatch(option.Description ?? "", @"\(default[ :]"), $"{string.Join(' ', path)} {option.Name}: \"{option.Description}\" repeats its default");
            foreach (var example in CliHelp.ExamplesOf(command))
            {
                var parse = Program.CreateRoot().Parse(ShellWords(example));
                Assert.True(parse.Errors.Count == 0, $"example \"{example}\": {string.Join("; ", parse.Errors.Select(e => e.Message))}");
                // A group's (bench's) examples run its subcommands.
                Assert.Contains(parse.CommandResult.Command.Name, AllCommands(command).Prepend(command).Select(c => c.Name));
            }
        }
    }

    [Fact]
    public void HelpIsACommand()
    {
        var all = Archer.Run("help");
        Assert.True(all.ExitCode == 0, all.ToString());
        Assert.Contains("train-rl", all.Out);
        Assert.Contains("make-sft-data", all.Out);

        var one = Archer.Run("help", "train-rl");
        Assert.True(one.ExitCode == 0, one.ToString());
        Assert.Equal(Help("train-rl").Out, one.Out);
        Assert.Contains("--preset", one.Out);

        var unknown = Archer.Run("help", "train-lr");
        Assert.Equal(1, unknown.ExitCode);
        Assert.Contains("unknown command 'train-lr'", unknown.Err);
    }

    // ================================================================ README

    /// <summary>
    /// Every <c>dotnet run --project src/Cli -c Release -- ARGS</c> line of README.md (continuations joined)
    /// parses without an error: an option renamed or removed without the README following fails here.
    /// </summary>
    [Fact]
    public void EveryReadmeCommandLineParses()
    {
        var lines = ReadmeCommandLines();
        Assert.True(lines.Count >= 10, $"found only {lines.Count} command lines in the README");
        foreach (var line in lines)
        {
            var parse = Program.CreateRoot().Parse(ShellWords(line));
            Assert.True(parse.Errors.Count == 0, $"README: archer {line}: {string.Join("; ", parse.Errors.Select(e => e.Message))}");
        }
    }

    public static List<string> ReadmeCommandLines()
    {
        string readme = File.ReadAllText(FindRepoFile("README.md")).Replace("\\\n", " ");
        const string start = "dotnet run --project src/Cli -c Release -- ";
        var lines = new List<string>();
        foreach (var raw in readme.Split('\n'))
        {
            int i = raw.IndexOf(start, StringComparison.Ordinal);
            if (i < 0) continue;
            string rest = raw[(i + start.Length)..];
            int comment = rest.IndexOf(" #", StringComparison.Ordinal);
            if (comment >= 0) rest = rest[..comment];
            rest = rest.Split('`')[0];   // a command quoted inside a sentence
            lines.Add(Regex.Replace(rest, @"\s+", " ").Trim());
        }
        return lines;
    }

    static string FindRepoFile(string name)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "ArcherIlgpu.sln"))) return Path.Combine(dir.FullName, name);
        throw new FileNotFoundException("the repository root (ArcherIlgpu.sln) is not above " + AppContext.BaseDirectory);
    }

    /// <summary>Splits a command line as a POSIX shell would for these simple lines: spaces, single and double quotes.</summary>
    public static string[] ShellWords(string line)
    {
        var words = new List<string>();
        var word = new System.Text.StringBuilder();
        bool inWord = false;
        char quote = '\0';
        foreach (char c in line)
        {
            if (quote != '\0') { if (c == quote) quote = '\0'; else word.Append(c); continue; }
            if (c is '"' or '\'') { quote = c; inWord = true; continue; }
            if (char.IsWhiteSpace(c)) { if (inWord) words.Add(word.ToString()); word.Clear(); inWord = false; continue; }
            word.Append(c);
            inWord = true;
        }
        if (inWord) words.Add(word.ToString());
        return words.ToArray();
    }

    // ================================================================ one file format

    [Fact]
    public void OneFileTrainsAndEvaluates()
    {
        using var dir = new TempDir();
        var r = Archer.Run(["make-sft-data", "--task", "arithmetic", .. AdditionOptions, "--count", "3", "--out", dir.File("d.jsonl")]);
        Assert.True(r.ExitCode == 0, r.ToString());
        foreach (var line in File.ReadAllLines(dir.File("d.jsonl")))
        {
            using var doc = JsonDocument.Parse(line);
            var m = Regex.Match(doc.RootElement.GetProperty("prompt").GetString()!, @"^(\d)\+(\d)=$");
            string sum = (int.Parse(m.Groups[1].Value) + int.Parse(m.Groups[2].Value)).ToString();
            Assert.Equal(sum, doc.RootElement.GetProperty("completion").GetString());
            Assert.Equal(sum, doc.RootElement.GetProperty("answer").GetString());
        }

        // An evaluation file ({prompt, answer}, a number answer included) trains; an SFT file ({prompt, completion}) evaluates.
        File.WriteAllLines(dir.File("eval.jsonl"), ["{\"prompt\": \"1+2=\", \"answer\": \"3\"}", "{\"prompt\": \"4+4=\", \"answer\": 8}"]);
        Assert.Equal(new[] { ("1+2=", "3"), ("4+4=", "8") }, SftJsonl.Read(dir.File("eval.jsonl")).Select(p => (p.Prompt, p.Completion)).ToArray());
        File.WriteAllLines(dir.File("sft.jsonl"), ["{\"prompt\": \"1+2=\", \"completion\": \"3\"}", "{\"prompt\": \"2*(3+4)=\", \"completion\": \"3+4 = 7, 2*7 = 14. #### 14\"}"]);
        var task = new Rl.Tasks.JsonlMathTask(dir.File("sft.jsonl"));
        Assert.Equal(new[] { "3", "14" }, task.Examples.Select(e => e.Answer).ToArray());
        Assert.Equal(1.0, task.Reward(task.Examples[1], "#### 14"));
        // A line with both keeps them apart: SFT learns the completion, evaluation checks the answer.
        File.WriteAllLines(dir.File("both.jsonl"), ["{\"prompt\": \"p\", \"completion\": \"work ... 5\", \"answer\": \"5\"}"]);
        Assert.Equal("work ... 5", SftJsonl.Read(dir.File("both.jsonl"))[0].Completion);
        Assert.Equal("5", new Rl.Tasks.JsonlMathTask(dir.File("both.jsonl")).Examples[0].Answer);
    }

    // ================================================================ run folders as models

    [Fact]
    public void GenerateAndEvalTakeARunFolderAndUseItsNewestCheckpoint()
    {
        using var dir = new TempDir();
        TrainTinyAdditionModel(dir);
        string model = ModelFolders.Resolve(dir.File("model"));   // train-sft wrote a run folder: its newest checkpoint

        // A run folder: an older checkpoint, the newest, and a newer one whose save never finished (.tmp).
        string run = dir.File("run");
        string newest = Path.Combine(run, "checkpoints", "step-000020");
        CopyFolder(model, newest);
        Directory.CreateDirectory(Path.Combine(run, "checkpoints", "step-000010"));
        Directory.CreateDirectory(Path.Combine(run, "checkpoints", "step-000030.tmp"));
        File.WriteAllText(Path.Combine(run, RunFolder.MarkerFile), "{}");
        Assert.Equal(Path.GetFullPath(newest), Path.GetFullPath(ModelFolders.Resolve(run)));
        Assert.Equal(model, ModelFolders.Resolve(model));   // a model folder stands for itself

        var direct = Archer.Run("generate", "--model", model, "--prompt", "1+2=", "--temperature", "0", "--device", "cpu");
        var viaRun = Archer.Run("generate", "--model", run, "--prompt", "1+2=", "--temperature", "0", "--device", "cpu");
        Assert.True(viaRun.ExitCode == 0, viaRun.ToString());
        Assert.Equal(direct.Out, viaRun.Out);

        var eval = Archer.Run(["eval", "--model", run, "--task", "arithmetic", .. AdditionOptions, "--problems", "4", "--n", "2", "--device", "cpu"]);
        Assert.True(eval.ExitCode == 0, eval.ToString());

        string empty = dir.File("empty-run");
        Directory.CreateDirectory(Path.Combine(empty, "checkpoints"));
        var none = Archer.Run("generate", "--model", empty, "--prompt", "1+2=", "--device", "cpu");
        Assert.Equal(1, none.ExitCode);
        Assert.Contains("run folder without a complete checkpoint", none.Err);
    }

    [Fact]
    public void ATaskTheTokenizerCannotWriteSaysWhichOptionToGive()
    {
        using var dir = new TempDir();
        TrainTinyAdditionModel(dir);

        // Without operators=+ the task also asks subtractions, whose '-' a model trained on sums has never seen.
        string outDir = dir.File("rl");
        var r = Archer.Run("train-rl", "--algo", "grpo", "--model", dir.File("model"), "--task", "arithmetic", "--task-option", "max_digits=1",
            "--steps", "1", "--out", outDir, "--device", "cpu");
        Assert.Equal(1, r.ExitCode);
        Assert.Matches("has '[-*]', which the model .* has never seen", r.Err);
        Assert.Contains("--task-option operators=+", r.Err);
        Assert.DoesNotContain("Parameter", r.Err);
        Assert.False(Directory.Exists(outDir), "the rejected run wrote its folder");

        var generate = Archer.Run("generate", "--model", dir.File("model"), "--prompt", "3-1=", "--device", "cpu");
        Assert.Equal(1, generate.ExitCode);
        Assert.Contains("the prompt \"3-1=\" has '-', which the model", generate.Err);
    }

    /// <summary>A tiny GPT-2 in dir/model, trained a few steps on one-digit sums (its tokenizer knows "+0123456789=").</summary>
    static void TrainTinyAdditionModel(TempDir dir)
    {
        var make = Archer.Run(["make-sft-data", "--task", "arithmetic", .. AdditionOptions, "--count", "64", "--out", dir.File("d.jsonl")]);
        Assert.True(make.ExitCode == 0, make.ToString());
        var sft = Archer.Run("train-sft", "--data", dir.File("d.jsonl"), "--out", dir.File("model"), "--steps", "4", "--batch-size", "4", "--device", "cpu");
        Assert.True(sft.ExitCode == 0, sft.ToString());
    }

    static void CopyFolder(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var file in Directory.GetFiles(from)) File.Copy(file, Path.Combine(to, Path.GetFileName(file)));
    }
}
