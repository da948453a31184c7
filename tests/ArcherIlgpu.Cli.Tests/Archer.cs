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
