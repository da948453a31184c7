namespace ArcherIlgpu.Model.Tests.IO;

/// <summary>A fresh folder under the system temp folder, deleted on dispose.</summary>
public sealed class TempDir : IDisposable
{
    public TempDir() => Directory.CreateDirectory(Path);

    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "archer-tests-" + Guid.NewGuid().ToString("N"));

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); }
        catch (IOException) { }
    }
}

public static class TestFiles
{
    /// <summary>Folder with the checked-in test data, copied next to the test assembly.</summary>
    public static string DataDir => Path.Combine(AppContext.BaseDirectory, "TestData");

    public static string Gpt2Dir => Path.Combine(DataDir, "gpt2");
}
