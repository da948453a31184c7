using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using ArcherIlgpu.Model.Tests.Llama;

namespace ArcherIlgpu.Model.Tests.IO;

/// <summary>
/// Copies of the checked-in golden model folders, and byte-level edits of their files that do not go through
/// the code under test (the safetensors header is parsed here with System.Text.Json).
/// </summary>
public static class ModelFolderFiles
{
    /// <summary>Copies golden-tiny-<paramref name="type"/> ("gpt2": one F32 file; "llama": two BF16 shards) into <paramref name="dir"/>.</summary>
    public static string CopyGolden(string type, TempDir dir)
    {
        foreach (var file in Directory.GetFiles(LlamaGoldenTests.GoldenDir(type)))
            File.Copy(file, dir.File(Path.GetFileName(file)));
        return dir.Path;
    }

    /// <summary>The weights file of a golden copy that holds <paramref name="tensor"/>.</summary>
    public static string FileHolding(string dir, string tensor)
    {
        var single = Path.Combine(dir, "model.safetensors");
        if (File.Exists(single)) return single;
        var index = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "model.safetensors.index.json")))!;
        return Path.Combine(dir, index["weight_map"]![tensor]!.GetValue<string>());
    }

    public static void EditConfig(string dir, Action<JsonObject> edit)
    {
        var path = Path.Combine(dir, "config.json");
        var json = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        edit(json);
        File.WriteAllText(path, json.ToJsonString());
    }

    /// <summary>Replaces text in a safetensors header by text of the same length, so every offset stays valid.</summary>
    public static void EditHeader(string path, string from, string to)
    {
        if (from.Length != to.Length) throw new ArgumentException("the header must keep its length");
        var bytes = File.ReadAllBytes(path);
        int n = (int)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        var header = Encoding.UTF8.GetString(bytes, 8, n);
        if (!header.Contains(from, StringComparison.Ordinal)) throw new ArgumentException($"'{from}' is not in the header of {path}");
        Encoding.UTF8.GetBytes(header.Replace(from, to, StringComparison.Ordinal)).CopyTo(bytes, 8);
        File.WriteAllBytes(path, bytes);
    }

    /// <summary>Overwrites the bytes of element <paramref name="element"/> of <paramref name="tensor"/> (its dtype's width).</summary>
    public static void PokeElement(string path, string tensor, int element, byte[] value)
    {
        var bytes = File.ReadAllBytes(path);
        int n = (int)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        using var doc = JsonDocument.Parse(bytes.AsMemory(8, n));
        var info = doc.RootElement.GetProperty(tensor);
        long begin = info.GetProperty("data_offsets")[0].GetInt64();
        value.CopyTo(bytes, 8 + n + begin + (long)element * value.Length);
        File.WriteAllBytes(path, bytes);
    }

    /// <summary>The data section's start (8 + header length) of a safetensors file.</summary>
    public static int DataStart(byte[] file) => 8 + (int)BinaryPrimitives.ReadUInt64LittleEndian(file);
}
