using System.Buffers.Binary;
using System.Text;
using ArcherIlgpu.Model.IO;
using Xunit;

namespace ArcherIlgpu.Model.Tests.IO;

public class SafeTensorsTests
{
    [Fact]
    public void RoundTrip_KeepsNamesShapesBitsAndMetadata()
    {
        using var dir = new TempDir();
        string path = dir.File("model.safetensors");
        var tensors = new[]
        {
            new NamedTensor("wte.weight", [3, 2], [1f, -2f, 0.5f, float.Epsilon, -0f, 1e30f]),
            new NamedTensor("h.0.ln_1.bias", [5], [float.NaN, float.PositiveInfinity, float.NegativeInfinity, 3.25f, -7f]),
            new NamedTensor("scalar", [], [42f]),
            new NamedTensor("empty", [0, 4], []),
            new NamedTensor("odd", [1, 1, 3], [0.1f, 0.2f, 0.3f]),
        };
        var metadata = new Dictionary<string, string> { ["format"] = "pt", ["step"] = "17", ["note"] = "ünïcode \"quoted\"" };

        SafeTensors.Write(path, tensors, metadata);
        var read = SafeTensors.Read(path, out var readMetadata);

        Assert.Equal(tensors.Length, read.Count);
        foreach (NamedTensor t in tensors)
        {
            NamedTensor r = read[t.Name];
            Assert.Equal(t.Shape, r.Shape);
            // Bitwise: the writer must not touch NaN payloads, signed zeros or subnormals.
            Assert.Equal(t.Data.Select(BitConverter.SingleToInt32Bits), r.Data.Select(BitConverter.SingleToInt32Bits));
        }
        Assert.Equal(metadata, readMetadata);
    }

    [Fact]
    public void Write_AlignsHeaderTo8Bytes_AndPacksOffsetsInOrder()
    {
        using var dir = new TempDir();
        string path = dir.File("a.safetensors");
        // Names of different lengths so the unpadded header length is not a multiple of 8 by luck.
        SafeTensors.Write(path, [new("a", [3], [1, 2, 3]), new("bb", [2, 2], [1, 2, 3, 4]), new("ccc", [1], [5])]);

        byte[] file = File.ReadAllBytes(path);
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(file);
        Assert.Equal(0UL, (8 + headerLength) % 8);
        Assert.Equal(8 + (long)headerLength + 4 * (3 + 4 + 1), file.Length);

        var index = SafeTensors.ReadIndex(path, out _);
        Assert.Equal(["a", "bb", "ccc"], index.Select(t => t.Name));
        Assert.Equal([(0L, 12L), (12L, 28L), (28L, 32L)], index.Select(t => (t.Begin, t.End)));
        Assert.All(index, t => Assert.Equal("F32", t.Dtype));
    }

    [Fact]
    public void Read_HandBuiltF32File_GivesTheBytesWritten()
    {
        using var dir = new TempDir();
        string path = dir.File("hand.safetensors");
        // Unordered entries, metadata last, trailing header spaces: all allowed by the format.
        string header = "{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}," +
                        "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"__metadata__\":{\"k\":\"v\"}}   ";
        File.WriteAllBytes(path, RawSafeTensors.Build(header, RawSafeTensors.Floats(1.5f, -2f, 8f)));

        var read = SafeTensors.Read(path, out var metadata);

        Assert.Equal([1.5f, -2f], read["a"].Data);
        Assert.Equal([8f], read["b"].Data);
        Assert.Equal("v", metadata["k"]);
    }

    // Expected values are computed from the IEEE 754 binary16 definition, not with System.Half:
    // normal = (-1)^s * 2^(e-15) * (1 + m/1024), subnormal = (-1)^s * 2^-14 * (m/1024).
    public static TheoryData<ushort, double> HalfCases => new()
    {
        { 0x3C00, 1.0 },
        { 0xC000, -2.0 },
        { 0x3555, Math.Pow(2, -2) * (1 + 341.0 / 1024) },   // 0.333251953125, nearest half to 1/3
        { 0x7BFF, Math.Pow(2, 15) * (1 + 1023.0 / 1024) },  // 65504, largest finite
        { 0x0400, Math.Pow(2, -14) },                        // smallest normal
        { 0x0001, Math.Pow(2, -14) / 1024 },                 // smallest subnormal, 2^-24
        { 0x03FF, Math.Pow(2, -14) * 1023 / 1024 },          // largest subnormal
        { 0x8001, -Math.Pow(2, -24) },
        { 0x7C00, double.PositiveInfinity },
        { 0xFC00, double.NegativeInfinity },
    };

    [Theory, MemberData(nameof(HalfCases))]
    public void F16_DecodesToTheIeeeValue(ushort bits, double expected) =>
        Assert.Equal((float)expected, ReadSingleValue("F16", bits));

    // bfloat16 = sign, 8 exponent bits (bias 127), 7 mantissa bits: normal = 2^(e-127) * (1 + m/128),
    // subnormal = 2^-126 * (m/128).
    public static TheoryData<ushort, double> BFloat16Cases => new()
    {
        { 0x3F80, 1.0 },
        { 0xC000, -2.0 },
        { 0x4049, 2 * (1 + 73.0 / 128) },                       // 3.140625
        { 0x7F7F, Math.Pow(2, 127) * (1 + 127.0 / 128) },       // largest finite
        { 0x0080, Math.Pow(2, -126) },                          // smallest normal
        { 0x0001, Math.Pow(2, -126) / 128 },                    // smallest subnormal, 2^-133
        { 0x807F, -Math.Pow(2, -126) * 127 / 128 },             // largest negative subnormal
        { 0x7F80, double.PositiveInfinity },
        { 0xFF80, double.NegativeInfinity },
    };

    [Theory, MemberData(nameof(BFloat16Cases))]
    public void BF16_DecodesToTheValue(ushort bits, double expected) =>
        Assert.Equal((float)expected, ReadSingleValue("BF16", bits));

    [Theory]
    [InlineData("F16", 0x7E00)]
    [InlineData("F16", 0xFE01)]
    [InlineData("BF16", 0x7FC0)]
    [InlineData("BF16", 0xFF81)]
    public void NaNs_StayNaN(string dtype, ushort bits) => Assert.True(float.IsNaN(ReadSingleValue(dtype, bits)));

    [Fact]
    public void NegativeZero_KeepsItsSign()
    {
        Assert.True(float.IsNegative(ReadSingleValue("F16", 0x8000)));
        Assert.True(float.IsNegative(ReadSingleValue("BF16", 0x8000)));
    }

    [Fact]
    public void OtherDtypes_ConvertToTheirValues()
    {
        using var dir = new TempDir();
        string path = dir.File("mixed.safetensors");
        var data = new List<byte>();
        foreach (double d in new[] { 0.1, -3.5 }) { var b = new byte[8]; BinaryPrimitives.WriteDoubleLittleEndian(b, d); data.AddRange(b); }
        foreach (long v in new[] { -5L, 1L << 40 }) { var b = new byte[8]; BinaryPrimitives.WriteInt64LittleEndian(b, v); data.AddRange(b); }
        foreach (int v in new[] { -7, 123456 }) { var b = new byte[4]; BinaryPrimitives.WriteInt32LittleEndian(b, v); data.AddRange(b); }
        data.AddRange(new byte[] { 0, 1, 2 });           // BOOL (any non-zero is true)
        data.AddRange(new byte[] { 0xFF, 0x80 });        // I8: -1, -128
        data.AddRange(new byte[] { 0xFF, 0x80 });        // U8: 255, 128
        string header = "{\"f64\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,16]}," +
                        "\"i64\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[16,32]}," +
                        "\"i32\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[32,40]}," +
                        "\"mask\":{\"dtype\":\"BOOL\",\"shape\":[3],\"data_offsets\":[40,43]}," +
                        "\"i8\":{\"dtype\":\"I8\",\"shape\":[2],\"data_offsets\":[43,45]}," +
                        "\"u8\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[45,47]}}";
        File.WriteAllBytes(path, RawSafeTensors.Build(header, data.ToArray()));

        var read = SafeTensors.Read(path);

        Assert.Equal([(float)0.1, -3.5f], read["f64"].Data);
        Assert.Equal([-5f, 1099511627776f], read["i64"].Data);
        Assert.Equal([-7f, 123456f], read["i32"].Data);
        Assert.Equal([0f, 1f, 1f], read["mask"].Data);
        Assert.Equal([-1f, -128f], read["i8"].Data);
        Assert.Equal([255f, 128f], read["u8"].Data);
    }

    [Fact]
    public void LargeF16Tensor_SpanningSeveralReadChunks_DecodesEveryElement()
    {
        using var dir = new TempDir();
        string path = dir.File("big.safetensors");
        // 600k halves = 1.2 MB, more than the reader's 1 MiB chunk, so the chunk seam is crossed.
        const int n = 600_000;
        var bits = new ushort[n];
        for (int i = 0; i < n; i++) bits[i] = (ushort)(i % 0x7C00); // every finite positive half, in a cycle
        string header = $"{{\"t\":{{\"dtype\":\"F16\",\"shape\":[{n}],\"data_offsets\":[0,{2 * n}]}}}}";
        File.WriteAllBytes(path, RawSafeTensors.Build(header, RawSafeTensors.UInt16s(bits)));

        float[] data = SafeTensors.Read(path)["t"].Data;

        for (int i = 0; i < n; i++)
        {
            if (data[i] != HalfFromDefinition(bits[i]))
                Assert.Fail($"element {i} (bits 0x{bits[i]:X4}): {data[i]} != {HalfFromDefinition(bits[i])}");
        }
    }

    [Fact]
    public void Write_RejectsShapeThatDoesNotMatchData()
    {
        using var dir = new TempDir();
        var e = Assert.Throws<ArgumentException>(() => SafeTensors.Write(dir.File("x.safetensors"), [new("w", [2, 3], new float[5])]));
        Assert.Contains("'w'", e.Message);
        Assert.False(File.Exists(dir.File("x.safetensors")));
    }

    [Fact]
    public void Write_RejectsDuplicateAndReservedNames()
    {
        using var dir = new TempDir();
        Assert.Throws<ArgumentException>(() => SafeTensors.Write(dir.File("x"), [new("w", [1], [1f]), new("w", [1], [2f])]));
        Assert.Throws<ArgumentException>(() => SafeTensors.Write(dir.File("x"), [new("__metadata__", [1], [1f])]));
    }

    [Fact]
    public void Write_LeavesNoTmpFile_AndReplacesAnExistingFile()
    {
        using var dir = new TempDir();
        string path = dir.File("ckpt.safetensors");
        SafeTensors.Write(path, [new("w", [2], [1f, 2f])]);
        SafeTensors.Write(path, [new("w", [3], [3f, 4f, 5f])]);

        Assert.Equal([3f, 4f, 5f], SafeTensors.Read(path)["w"].Data);
        Assert.Equal(["ckpt.safetensors"], Directory.GetFiles(dir.Path).Select(Path.GetFileName));
    }

    [Fact]
    public void Read_MissingFile_IsModelFormatExceptionNamingIt()
    {
        using var dir = new TempDir();
        string path = dir.File("nope.safetensors");
        var e = Assert.Throws<ModelFormatException>(() => SafeTensors.Read(path));
        Assert.Contains(path, e.Message);
    }

    private static float ReadSingleValue(string dtype, ushort bits)
    {
        using var dir = new TempDir();
        string path = dir.File("one.safetensors");
        string header = $"{{\"x\":{{\"dtype\":\"{dtype}\",\"shape\":[1],\"data_offsets\":[0,2]}}}}";
        File.WriteAllBytes(path, RawSafeTensors.Build(header, RawSafeTensors.UInt16s(bits)));
        return Assert.Single(SafeTensors.Read(path)["x"].Data);
    }

    private static float HalfFromDefinition(ushort bits)
    {
        int sign = bits >> 15, exponent = (bits >> 10) & 0x1F, mantissa = bits & 0x3FF;
        double magnitude = exponent == 0
            ? Math.Pow(2, -14) * mantissa / 1024
            : Math.Pow(2, exponent - 15) * (1 + mantissa / 1024.0);
        return (float)(sign == 1 ? -magnitude : magnitude);
    }
}
