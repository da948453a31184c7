using System.Buffers.Binary;
using ArcherIlgpu.Model.IO;
using Xunit;

namespace ArcherIlgpu.Model.Tests.IO;

/// <summary>Files written by Hugging Face's Python <c>safetensors</c> library. The golden tiny GPT-2 is checked
/// into main (TestData/golden-tiny-gpt2, made by benchmarks/golden/make_tiny_gpt2.py); the test skips on a branch
/// that does not have it yet.</summary>
public class SafeTensorsInteropTests
{
    private static string GoldenModel => Path.Combine(TestFiles.DataDir, "golden-tiny-gpt2", "model.safetensors");

    [SkippableFact]
    public void ReadsAFileWrittenByThePythonLibrary()
    {
        Skip.IfNot(File.Exists(GoldenModel), $"{GoldenModel} is not in this checkout");

        var tensors = SafeTensors.Read(GoldenModel, out var metadata);

        Assert.Equal("pt", metadata["format"]);
        Assert.Equal(4 + 2 * 12, tensors.Count); // wte, wpe, ln_f.{weight,bias} + 12 per layer, 2 layers
        Assert.Equal([16L, 48L], tensors["h.0.attn.c_attn.weight"].Shape); // Conv1D stores [in, out]
        Assert.Equal([16L], tensors["ln_f.bias"].Shape);
        Assert.All(tensors.Values, t => Assert.All(t.Data, x => Assert.True(float.IsFinite(x))));
    }

    [SkippableFact]
    public void RewritingThePythonFile_GivesTheSameDataBytes()
    {
        Skip.IfNot(File.Exists(GoldenModel), $"{GoldenModel} is not in this checkout");
        using var dir = new TempDir();
        string copy = dir.File("copy.safetensors");

        var index = SafeTensors.ReadIndex(GoldenModel, out var metadata);
        var tensors = SafeTensors.Read(GoldenModel);
        SafeTensors.Write(copy, index.Select(i => tensors[i.Name]), metadata);

        // Same tensor order and F32 both ways, so the data sections must match byte for byte.
        Assert.Equal(DataSection(GoldenModel), DataSection(copy));
    }

    private static byte[] DataSection(string path)
    {
        byte[] file = File.ReadAllBytes(path);
        int start = 8 + checked((int)BinaryPrimitives.ReadUInt64LittleEndian(file));
        return file[start..];
    }
}
