using System.Text;
using System.Text.Json.Nodes;
using ArcherIlgpu.Model.IO;
using Xunit;

namespace ArcherIlgpu.Model.Tests.IO;

public class SafeTensorsFolderTests
{
    /// <summary>Tensors of 4·n bytes with distinct values, so a mixed-up tensor cannot compare equal.</summary>
    static NamedTensor T(string name, params long[] shape)
    {
        long n = NamedTensor.ElementCount(shape);
        var data = new float[n];
        int seed = name.Aggregate(17, (h, ch) => h * 31 + ch);
        for (int i = 0; i < n; i++) data[i] = seed % 1000 + i * 0.25f;
        return new NamedTensor(name, shape, data);
    }

    // a: 64 B, b: 48 B, c: 200 B, d: 8 B, e: 40 B
    static List<NamedTensor> Model() => [T("a", 4, 4), T("b", 12), T("c", 5, 10), T("d", 2), T("e", 10)];

    static void AssertSame(IReadOnlyList<NamedTensor> expected, IReadOnlyDictionary<string, NamedTensor> actual)
    {
        Assert.Equal(expected.Select(t => t.Name).Order(), actual.Keys.Order());
        foreach (var t in expected)
        {
            Assert.Equal(t.Shape, actual[t.Name].Shape);
            Assert.Equal(t.Data, actual[t.Name].Data);
        }
    }

    static string[] Files(TempDir dir) => Directory.GetFiles(dir.Path).Select(p => Path.GetFileName(p)!).Order().ToArray();

    static JsonObject Index(TempDir dir) => JsonNode.Parse(File.ReadAllText(dir.File(SafeTensorsFolder.IndexFile)))!.AsObject();

    // ------------------------------------------------------------ writing and reading back

    [Fact]
    public void AModelThatFitsIsOneFile()
    {
        using var dir = new TempDir();
        var tensors = Model();
        var written = SafeTensorsFolder.Write(dir.Path, tensors, new Dictionary<string, string> { ["format"] = "pt" }, maxShardBytes: 360);
        Assert.Equal(["model.safetensors"], written);
        Assert.Equal(["model.safetensors"], Files(dir));
        AssertSame(tensors, SafeTensorsFolder.Read(dir.Path, out var meta));
        Assert.Equal("pt", meta["format"]);
        // The single file is a plain safetensors file.
        AssertSame(tensors, SafeTensors.Read(dir.File("model.safetensors")));
    }

    [Fact]
    public void ALargerModelIsShardedWithHuggingFaceNamesAndReadsBack()
    {
        using var dir = new TempDir();
        var tensors = Model();
        var written = SafeTensorsFolder.Write(dir.Path, tensors, new Dictionary<string, string> { ["format"] = "pt", ["step"] = "7" }, maxShardBytes: 120);
        // Greedy in order with 120 bytes: [a 64, b 48] = 112, [c 200] alone (over the limit on its own), [d 8, e 40].
        string[] shards = ["model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors"];
        Assert.Equal([.. shards, "model.safetensors.index.json"], written);
        Assert.Equal([.. shards, "model.safetensors.index.json"], Files(dir));

        var index = Index(dir);
        var map = index["weight_map"]!.AsObject();
        Assert.Equal(["a", "b", "c", "d", "e"], map.Select(e => e.Key));   // sorted, as transformers writes it
        Assert.Equal([shards[0], shards[0], shards[1], shards[2], shards[2]], map.Select(e => (string)e.Value!));
        Assert.Equal(360, (long)index["metadata"]!["total_size"]!);   // 64 + 48 + 200 + 8 + 40 data bytes
        Assert.Equal(["a", "b"], SafeTensors.Read(dir.File(shards[0])).Keys.Order());

        AssertSame(tensors, SafeTensorsFolder.Read(dir.Path, out var meta));
        Assert.Equal(new Dictionary<string, string> { ["format"] = "pt", ["step"] = "7" }, meta);
    }

    [Fact]
    public void SwitchingFormsAndShardCountsLeavesNoStaleFiles()
    {
        using var dir = new TempDir();
        var tensors = Model();
        SafeTensorsFolder.Write(dir.Path, tensors, maxShardBytes: 120);
        Assert.Equal(4, Files(dir).Length);

        // 300 bytes: [a b] = 112 + c would be 312, so [a b], [c d e] = 248: two shards replace three.
        var two = SafeTensorsFolder.Write(dir.Path, tensors, maxShardBytes: 300);
        Assert.Equal(["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors.index.json"], Files(dir));
        Assert.Equal(Files(dir), two.Order());
        AssertSame(tensors, SafeTensorsFolder.Read(dir.Path));

        File.WriteAllText(dir.File("model-00001-of-00002.safetensors.partial.tmp"), "left by a crash");
        File.WriteAllText(dir.File("notes.txt"), "not ours");
        SafeTensorsFolder.Write(dir.Path, tensors);
        Assert.Equal(["model.safetensors", "notes.txt"], Files(dir));

        SafeTensorsFolder.Write(dir.Path, tensors, maxShardBytes: 300);
        Assert.Equal(["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors.index.json", "notes.txt"], Files(dir));

        // Same shard names again: overwritten in place, still consistent.
        var changed = tensors.Select(t => t with { Data = t.Data.Select(v => v + 1).ToArray() }).ToList();
        SafeTensorsFolder.Write(dir.Path, changed, maxShardBytes: 300);
        AssertSame(changed, SafeTensorsFolder.Read(dir.Path));
    }

    [Fact]
    public void ABadTensorListFailsBeforeAnyFileIsTouched()
    {
        using var dir = new TempDir();
        var tensors = Model();
        SafeTensorsFolder.Write(dir.Path, tensors, maxShardBytes: 120);
        var before = Files(dir).Select(f => File.ReadAllBytes(dir.File(f))).ToList();

        var bad = Model();
        bad.Add(new NamedTensor("f", [3], [1f, 2f]));   // shape says 3 elements, data has 2
        Assert.Throws<ArgumentException>(() => SafeTensorsFolder.Write(dir.Path, bad, maxShardBytes: 120));
        var dup = Model();
        dup.Add(T("a", 2));   // the same name would land in another shard
        var e = Assert.Throws<ArgumentException>(() => SafeTensorsFolder.Write(dir.Path, dup, maxShardBytes: 120));
        Assert.Contains("'a'", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => SafeTensorsFolder.Write(dir.Path, tensors, maxShardBytes: 0));

        Assert.Equal(before, Files(dir).Select(f => File.ReadAllBytes(dir.File(f))).ToList());
        AssertSame(tensors, SafeTensorsFolder.Read(dir.Path));
    }

    [Fact]
    public void TheSingleFileWinsWhenBothFormsArePresent()
    {
        using var dir = new TempDir();
        SafeTensorsFolder.Write(dir.Path, Model(), maxShardBytes: 120);
        var single = new List<NamedTensor> { T("only", 3) };
        SafeTensors.Write(dir.File("model.safetensors"), single);
        Assert.True(SafeTensorsFolder.Exists(dir.Path));
        AssertSame(single, SafeTensorsFolder.Read(dir.Path));
    }

    // ------------------------------------------------------------ folders written by others (built by hand)

    static void WriteRaw(TempDir dir, string file, string header, byte[] data) => File.WriteAllBytes(dir.File(file), RawSafeTensors.Build(header, data));

    static void WriteIndex(TempDir dir, string weightMapJson) =>
        File.WriteAllText(dir.File("model.safetensors.index.json"), """{"metadata": {"total_size": 0}, "weight_map": {""" + weightMapJson + "}}");

    [Fact]
    public void Bf16AndF16ShardsReadAsExactFloat32()
    {
        using var dir = new TempDir();
        // bfloat16 is the top 16 bits of a float32: 0x3F80 = 1.0, 0xC040 = -3.0, 0x3E20 = 0.15625, 0x7F80 = +inf,
        // 0x0001 = the smallest bf16 subnormal 2^-133.
        WriteRaw(dir, "model-00001-of-00002.safetensors",
            """{"__metadata__": {"format": "pt"}, "w": {"dtype": "BF16", "shape": [5], "data_offsets": [0, 10]}}""",
            RawSafeTensors.UInt16s(0x3F80, 0xC040, 0x3E20, 0x7F80, 0x0001));
        // IEEE half: 0x3C00 = 1.0, 0xC500 = -5.0, 0x3555 = 0.333251953125, 0x0001 = 2^-24 (subnormal).
        WriteRaw(dir, "model-00002-of-00002.safetensors",
            """{"__metadata__": {"format": "pt"}, "h": {"dtype": "F16", "shape": [2, 2], "data_offsets": [0, 8]}}""",
            RawSafeTensors.UInt16s(0x3C00, 0xC500, 0x3555, 0x0001));
        WriteIndex(dir, """ "w": "model-00001-of-00002.safetensors", "h": "model-00002-of-00002.safetensors" """);

        var t = SafeTensorsFolder.Read(dir.Path, out var meta);
        Assert.Equal([1f, -3f, 0.15625f, float.PositiveInfinity, MathF.Pow(2, -133)], t["w"].Data);
        Assert.Equal([1f, -5f, 0.333251953125f, MathF.Pow(2, -24)], t["h"].Data);
        Assert.Equal([2L, 2L], t["h"].Shape);
        Assert.Equal("pt", meta["format"]);
    }

    static ModelFormatException ReadFails(TempDir dir, params string[] parts)
    {
        var e = Assert.Throws<ModelFormatException>(() => SafeTensorsFolder.Read(dir.Path));
        foreach (var part in parts) Assert.Contains(part, e.Message);
        return e;
    }

    const string A = """{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}""";
    const string AB = """{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}""";
    const string B = """{"b": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}""";

    [Fact]
    public void AFolderWithoutWeightsNamesBothFileNames()
    {
        using var dir = new TempDir();
        Assert.False(SafeTensorsFolder.Exists(dir.Path));
        ReadFails(dir, dir.Path, "model.safetensors", "model.safetensors.index.json");
    }

    [Fact]
    public void AMissingShardIsNamedWithATensorItHolds()
    {
        using var dir = new TempDir();
        WriteRaw(dir, "s1.safetensors", A, RawSafeTensors.Floats(1f));
        WriteIndex(dir, """ "a": "s1.safetensors", "b": "s2.safetensors" """);
        ReadFails(dir, "model.safetensors.index.json", "shard 's2.safetensors' is missing", "'b'");
    }

    [Fact]
    public void ATensorListedButAbsentFromItsShardIsNamed()
    {
        using var dir = new TempDir();
        WriteRaw(dir, "s1.safetensors", A, RawSafeTensors.Floats(1f));
        WriteIndex(dir, """ "a": "s1.safetensors", "b": "s1.safetensors" """);
        ReadFails(dir, "tensor 'b'", "'s1.safetensors'", "does not hold it");
    }

    [Fact]
    public void ATensorInTheWrongShardIsNamedWithBoth()
    {
        using var dir = new TempDir();
        WriteRaw(dir, "s1.safetensors", A, RawSafeTensors.Floats(1f));
        WriteRaw(dir, "s2.safetensors", B, RawSafeTensors.Floats(2f));
        WriteIndex(dir, """ "a": "s1.safetensors", "b": "s1.safetensors", "c": "s2.safetensors" """);
        ReadFails(dir, "tensor 'b'", "listed in shard 's1.safetensors'", "it is in 's2.safetensors'");
    }

    [Fact]
    public void ATensorInTwoShardsIsADuplicate()
    {
        using var dir = new TempDir();
        WriteRaw(dir, "s1.safetensors", A, RawSafeTensors.Floats(1f));
        WriteRaw(dir, "s2.safetensors", AB, RawSafeTensors.Floats(1f, 2f));
        WriteIndex(dir, """ "a": "s1.safetensors", "b": "s2.safetensors" """);
        ReadFails(dir, "tensor 'a'", "two shards", "'s1.safetensors'", "'s2.safetensors'");
    }

    [Fact]
    public void AShardTensorTheIndexDoesNotListIsRejected()
    {
        using var dir = new TempDir();
        WriteRaw(dir, "s1.safetensors", AB, RawSafeTensors.Floats(1f, 2f));
        WriteIndex(dir, """ "a": "s1.safetensors" """);
        ReadFails(dir, "'s1.safetensors'", "tensor 'b'", "does not list");
    }

    [Fact]
    public void MalformedIndexesAreRejected()
    {
        using var dir = new TempDir();
        var path = dir.File("model.safetensors.index.json");
        File.WriteAllText(path, "{\"weight_map\": ");
        ReadFails(dir, path, "not valid JSON");
        File.WriteAllText(path, """{"metadata": {}}""");
        ReadFails(dir, "weight_map");
        File.WriteAllText(path, """{"weight_map": {"a": 3}}""");
        ReadFails(dir, "weight_map entry 'a'", "shard file name");
        File.WriteAllText(path, """{"weight_map": {"a": "../outside.safetensors"}}""");
        ReadFails(dir, "'../outside.safetensors'", "not a file name in the model folder");
        File.WriteAllText(path, """{"weight_map": {"a": "s1.safetensors", "a": "s2.safetensors"}}""");
        ReadFails(dir, "tensor 'a' twice");
    }

    [Fact]
    public void ACorruptShardIsNamed()
    {
        using var dir = new TempDir();
        File.WriteAllBytes(dir.File("s1.safetensors"), Encoding.ASCII.GetBytes("xyz"));
        WriteIndex(dir, """ "a": "s1.safetensors" """);
        ReadFails(dir, "s1.safetensors");
    }

    [Fact]
    public void ShardsFromTwoDifferentSavesAreAnInterruptedSave()
    {
        using var dir = new TempDir();
        var first = Model();
        SafeTensorsFolder.Write(dir.Path, first, maxShardBytes: 300);
        var shard2 = File.ReadAllBytes(dir.File("model-00002-of-00002.safetensors"));
        SafeTensorsFolder.Write(dir.Path, first.Select(t => t with { Data = t.Data.Select(v => -v).ToArray() }), maxShardBytes: 300);
        // A crash between the renames of a same-named rewrite leaves one shard of the previous save behind.
        File.WriteAllBytes(dir.File("model-00002-of-00002.safetensors"), shard2);
        ReadFails(dir, "shard 'model-00002-of-00002.safetensors'", "interrupted save");
    }
}
