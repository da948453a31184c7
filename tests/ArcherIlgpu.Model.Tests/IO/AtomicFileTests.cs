using ArcherIlgpu.Model.IO;
using Xunit;

namespace ArcherIlgpu.Model.Tests.IO;

public class AtomicFileTests
{
    [Fact]
    public void WriteAllText_ReplacesContent_AndLeavesNoTmp()
    {
        using var dir = new TempDir();
        string path = dir.File("config.json");
        AtomicFile.WriteAllText(path, "first");
        AtomicFile.WriteAllText(path, "second, longer ✓");

        Assert.Equal("second, longer ✓", File.ReadAllText(path));
        Assert.Equal(["config.json"], Directory.GetFiles(dir.Path).Select(Path.GetFileName));
    }

    [Fact]
    public void WriteAllText_HasNoByteOrderMark()
    {
        using var dir = new TempDir();
        string path = dir.File("a.txt");
        AtomicFile.WriteAllText(path, "x");
        Assert.Equal([(byte)'x'], File.ReadAllBytes(path));
    }

    [Fact]
    public void WriteAllBytes_CreatesMissingFolders()
    {
        using var dir = new TempDir();
        string path = Path.Combine(dir.Path, "run", "step-10", "w.bin");
        AtomicFile.WriteAllBytes(path, [1, 2, 3]);
        Assert.Equal([1, 2, 3], File.ReadAllBytes(path));
    }

    [Fact]
    public void AFailedWrite_KeepsTheOldFile_AndRemovesTheTmp()
    {
        using var dir = new TempDir();
        string path = dir.File("ckpt.bin");
        AtomicFile.WriteAllBytes(path, [9, 9]);

        Assert.Throws<InvalidOperationException>(() => AtomicFile.Write(path, s =>
        {
            s.Write([1, 2, 3]);
            throw new InvalidOperationException("simulated crash half way");
        }));

        Assert.Equal([9, 9], File.ReadAllBytes(path));
        Assert.False(File.Exists(path + ".tmp"));
    }
}
