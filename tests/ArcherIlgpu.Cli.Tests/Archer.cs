using System.Globalization;
using System.Text.RegularExpressions;

namespace ArcherIlgpu.Cli.Tests;

/// <summary>What one in-process run of the <c>archer</c> command printed and returned.</summary>
public sealed record CliResult(int ExitCode, string Out, string Err)
{
    public override string ToString() => $"exit {ExitCode}\n--- stdout ---\n{Out}\n--- stderr ---\n{Err}";
}

/// <summary>Runs the real root command in-process (the same parsing, options and error handling a user gets).</summary>
public static class Archer
{
    public static CliResult Run(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int code = Program.Run(args, output, error);
        return new CliResult(code, output.ToString(), error.ToString());
    }

    /// <summary>Runs the command and asserts exit code 0, showing its output when not.</summary>
    public static CliResult Ok(params string[] args)
    {
        var r = Run(args);
        Assert.True(r.ExitCode == 0, r.ToString());
        return r;
    }

    public static string GoldenDir => Golden("gpt2");

    /// <summary>A golden tiny checkpoint of the Model tests' TestData (gpt2, qwen2, llama are linked into this project).</summary>
    public static string Golden(string type) => Path.Combine(AppContext.BaseDirectory, "TestData", "golden-tiny-" + type);
}

/// <summary>A fresh temporary folder, deleted on dispose.</summary>
public sealed class TempDir : IDisposable
{
    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "archer-cli-tests-" + Guid.NewGuid().ToString("N"));
    public TempDir() => Directory.CreateDirectory(Path);
    public string File(string name) => System.IO.Path.Combine(Path, name);
    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { }
    }
}

/// <summary>The new user's first run, shared by the end-to-end tests: 2-digit addition data, then train-sft of a preset.</summary>
public static class AdditionSft
{
    public sealed record Summary(CliResult Train, double LossBefore, double LossAfter, int Correct, int Total);

    /// <summary>Makes 4,000 training and 200 held-out problems in <paramref name="dir"/> and trains <paramref name="preset"/> into <paramref name="outDir"/>.</summary>
    public static Summary Run(TempDir dir, string outDir, string preset, int steps)
    {
        var make = Archer.Run("make-sft-data", "--task", "arithmetic", "--task-option", "operators=+", "--task-option", "min_digits=2", "--task-option", "max_digits=2",
            "--count", "4000", "--held-out", "200", "--out", dir.File("add.jsonl"));
        Assert.True(make.ExitCode == 0, make.ToString());
        var train = Archer.Run("train-sft", "--data", dir.File("add.jsonl"), "--held-out", dir.File("add.heldout.jsonl"), "--out", outDir,
            "--preset", preset, "--steps", steps.ToString(CultureInfo.InvariantCulture), "--batch-size", "32", "--lr", "0.005", "--seed", "1", "--device", "cpu");
        Assert.True(train.ExitCode == 0, train.ToString());
        var m = Regex.Match(train.Out, @"held-out loss ([\d.]+) \(from ([\d.]+)\), greedy exact match (\d+)/(\d+)");
        Assert.True(m.Success, train.Out);
        double Number(int g) => double.Parse(m.Groups[g].Value, CultureInfo.InvariantCulture);
        return new Summary(train, Number(2), Number(1), (int)Number(3), (int)Number(4));
    }
}
