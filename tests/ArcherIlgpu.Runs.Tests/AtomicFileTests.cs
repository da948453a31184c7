namespace ArcherIlgpu.Runs.Tests;

/// <summary>The project's one atomic writer (moved here with it from Model).</summary>

public class AtomicFileTests : IDisposable
{
    readonly string root = Directory.CreateTempSubdirectory("atomic-file-").FullName;
    public void Dispose() => Directory.Delete(root, recursive: true);
    string File(string name) => Path.Combine(root, name);

    [Fact]
    public void WriteAllText_ReplacesContent_AndLeavesNoTmp()
    {
        string path = File("config.json");
        AtomicFile.WriteAllText(path, "first");
        AtomicFile.WriteAllText(path, "second, longer ✓");

        Assert.Equal("second, longer ✓", System.IO.File.ReadAllText(path));
        Assert.Equal(["config.json"], Directory.GetFiles(root).Select(Path.GetFileName));
    }

    [Fact]
    public void WriteAllText_HasNoByteOrderMark()
    {
        string path = File("a.txt");
        AtomicFile.WriteAllText(path, "x");
        Assert.Equal([(byte)'x'], System.IO.File.ReadAllBytes(path));
    }

    [Fact]
    public void WriteAllBytes_CreatesMissingFolders()
    {
        string path = Path.Combine(root, "run", "step-10", "w.bin");
        AtomicFile.WriteAllBytes(path, [1, 2, 3]);
        Assert.Equal([1, 2, 3], System.IO.File.ReadAllBytes(path));
    }

    [Fact]
    public void AFailedWrite_KeepsTheOldFile_AndRemovesTheTmp()
    {
        string path = File("ckpt.bin");
        AtomicFile.WriteAllBytes(path, [9, 9]);

        Assert.Throws<InvalidOperationException>(() => AtomicFile.Write(path, s =>
        {
            s.Write([1, 2, 3]);
            throw new InvalidOperationException("simulated crash half way");
        }));

        Assert.Equal([9, 9], System.IO.File.ReadAllBytes(path));
        Assert.Equal(["ckpt.bin"], Directory.GetFiles(root).Select(Path.GetFileName));
    }
}
