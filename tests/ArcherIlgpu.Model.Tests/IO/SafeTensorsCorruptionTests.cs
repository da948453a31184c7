using System.Diagnostics;
using System.Text;
using ArcherIlgpu.Model.IO;
using Xunit;

namespace ArcherIlgpu.Model.Tests.IO;

/// <summary>Every broken file must be a <see cref="ModelFormatException"/> whose message names the file and,
/// where there is one, the tensor at fault.</summary>
public class SafeTensorsCorruptionTests
{
    private const string GoodEntry = "\"good\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}";

    [Fact]
    public void FileShorterThanTheLengthField() =>
        AssertRejected(new byte[5], null, "shorter than the 8-byte header length");

    [Fact]
    public void HeaderLengthBeyondFile() =>
        AssertRejected(RawSafeTensors.Build("{}", new byte[8], headerLengthOverride: 1000), null, "beyond the end of the file");

    [Fact]
    public void HeaderLengthAbsurd_DoesNotAllocate() =>
        AssertRejected(RawSafeTensors.Build("{}", [], headerLengthOverride: ulong.MaxValue), null, "beyond the end of the file");

    [Fact]
    public void InvalidJson() =>
        AssertRejected(RawSafeTensors.Build("{\"a\": {\"dtype\": ", []), null, "not valid JSON");

    [Fact]
    public void InvalidUtf8InHeader()
    {
        byte[] file = RawSafeTensors.Build("{\"a\xe9\":1}", []);
        int at = Array.IndexOf(file, (byte)0xC3); // the é's UTF-8 lead byte
        file[at] = 0xFF;
        AssertRejected(file, null, "not valid JSON");
    }

    [Fact]
    public void HeaderNotAnObject() =>
        AssertRejected(RawSafeTensors.Build("[1, 2]", []), null, "must be a JSON object");

    [Fact]
    public void UnknownDtype() =>
        AssertRejected(Build("\"w\":{\"dtype\":\"Q7\",\"shape\":[2],\"data_offsets\":[8,16]}", 16), "w", "unsupported dtype 'Q7'");

    [Fact]
    public void OffsetsBeyondData() =>
        AssertRejected(Build("\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}", 12), "w", "go beyond the data section");

    [Fact]
    public void OffsetsEndBeforeBegin() =>
        AssertRejected(Build("\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[12,8]}", 16), "w", "end before they begin");

    [Fact]
    public void NegativeOffset() =>
        AssertRejected(Build("\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}", 16), "w", "non-negative integer");

    [Fact]
    public void OverlappingTensors() =>
        AssertRejected(Build("\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}", 16), "w", "overlap those of 'good'");

    [Fact]
    public void ShapeDoesNotMatchByteCount() =>
        AssertRejected(Build("\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[8,16]}", 16), "w", "needs 12 bytes");

    [Fact]
    public void ShapeOverflowing64Bits() =>
        AssertRejected(Build("\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[8,16]}", 16), "w", "64 bits");

    [Fact]
    public void NegativeShapeDimension() =>
        AssertRejected(Build("\"w\":{\"dtype\":\"F32\",\"shape\":[-2,-1],\"data_offsets\":[8,16]}", 16), "w", "\"shape\" entry 0 must be a non-negative integer");

    [Fact]
    public void FractionalShape() =>
        AssertRejected(Build("\"w\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[8,16]}", 16), "w", "\"shape\" entry 0");

    [Fact]
    public void MissingOffsets() =>
        AssertRejected(Build("\"w\":{\"dtype\":\"F32\",\"shape\":[2]}", 16), "w", "data_offsets");

    [Fact]
    public void ThreeOffsets() =>
        AssertRejected(Build("\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16,24]}", 24), "w", "must have 2 entries");

    [Fact]
    public void DuplicateTensorName() =>
        AssertRejected(Build("\"good\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}", 16), null, "'good' twice");

    [Fact]
    public void NonStringMetadata() =>
        AssertRejected(Build("\"__metadata__\":{\"step\":3}", 8), null, "metadata key 'step'");

    [Fact]
    public void Fuzz_TruncationsAndBitFlips_OnlyEverThrowModelFormatException()
    {
        using var dir = new TempDir();
        string good = dir.File("good.safetensors");
        WriteMixedDtypeFile(good);
        byte[] original = File.ReadAllBytes(good);
        Assert.Equal(4, SafeTensors.Read(good).Count);
        int headerEnd = 8 + (int)BitConverter.ToUInt64(original, 0);

        var random = new Random(20240611);
        string path = dir.File("fuzzed.safetensors");
        int loaded = 0, rejected = 0;
        var clock = Stopwatch.StartNew();
        for (int trial = 0; trial < 600; trial++)
        {
            byte[] bytes = trial < 200 ? Truncate(original, random) : FlipBits(original, headerEnd, random);
            File.WriteAllBytes(path, bytes);
            try
            {
                SafeTensors.Read(path, out _);
                loaded++;
            }
            catch (ModelFormatException e)
            {
                Assert.Contains(path, e.Message);
                rejected++;
            }
            catch (Exception e)
            {
                Assert.Fail($"trial {trial}: {e.GetType().Name} escaped instead of ModelFormatException: {e}");
            }
        }
        // Both outcomes must occur, or the fuzzer is not exercising anything (flips in the data section load).
        Assert.True(loaded > 0 && rejected > 0, $"loaded {loaded}, rejected {rejected}");
        // About a second on an idle machine; the bound catches a hang, with room for a shared CI machine.
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(60), $"fuzzing took {clock.Elapsed}");
    }

    private static byte[] Truncate(byte[] original, Random random) => original[..random.Next(original.Length)];

    // Most flips land in the header, where the parsing is; a few in the length field and the data.
    private static byte[] FlipBits(byte[] original, int headerEnd, Random random)
    {
        byte[] bytes = (byte[])original.Clone();
        int flips = 1 + random.Next(3);
        for (int f = 0; f < flips; f++)
        {
            int at = random.Next(10) switch
            {
                0 => random.Next(8),
                1 => random.Next(headerEnd, bytes.Length),
                _ => random.Next(8, headerEnd),
            };
            bytes[at] ^= (byte)(1 << random.Next(8));
        }
        return bytes;
    }

    private static void WriteMixedDtypeFile(string path)
    {
        string header = "{\"__metadata__\":{\"format\":\"pt\"}," +
                        "\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}," +
                        "\"b\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[16,22]}," +
                        "\"c\":{\"dtype\":\"BF16\",\"shape\":[1,3],\"data_offsets\":[22,28]}," +
                        "\"d\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[28,36]}}";
        var data = new byte[36];
        new Random(1).NextBytes(data);
        File.WriteAllBytes(path, RawSafeTensors.Build(header, data));
    }

    /// <summary>A file with the tensor "good" at [0, 8) plus <paramref name="extraEntry"/>, and a data section of
    /// <paramref name="dataBytes"/> bytes.</summary>
    private static byte[] Build(string extraEntry, int dataBytes) =>
        RawSafeTensors.Build("{" + GoodEntry + "," + extraEntry + "}", new byte[dataBytes]);

    private static void AssertRejected(byte[] file, string? tensor, string expectedFragment)
    {
        using var dir = new TempDir();
        string path = dir.File("bad.safetensors");
        File.WriteAllBytes(path, file);
        var e = Assert.Throws<ModelFormatException>(() => SafeTensors.Read(path));
        Assert.Contains(path, e.Message);
        if (tensor is not null) Assert.Contains($"tensor '{tensor}'", e.Message);
        Assert.Contains(expectedFragment, e.Message);
    }
}
