using System.Buffers;
using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text.Json;
using Microsoft.Win32.SafeHandles;

namespace ArcherIlgpu.Model.IO;

/// <summary>Where one tensor lives in a safetensors file, as its header says (offsets relative to the data section).</summary>
public sealed record TensorInfo(string Name, string Dtype, long[] Shape, long Begin, long End);

/// <summary>
/// Reads and writes the safetensors format: an 8-byte little-endian header length N, N bytes of JSON
/// <c>{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {string: string}}</c>,
/// then the data section that the offsets index. Reading converts every numeric dtype to float32.
/// Every way a file can be wrong (truncated, bit-flipped, hand-edited) surfaces as a
/// <see cref="ModelFormatException"/> naming the file and the tensor; nothing is allocated before the sizes
/// it depends on have been checked against the file's length.
/// </summary>
public static class SafeTensors
{
    public const string MetadataKey = "__metadata__";

    // The reference implementation refuses headers above 100 MB; a real header is a few tens of kB.
    private const long MaxHeaderBytes = 100_000_000;
    private const int ChunkBytes = 1 << 20;

    public static IReadOnlyDictionary<string, NamedTensor> Read(string path) => Read(path, out _);

    /// <summary>Reads every tensor as float32. F32, F16, BF16 and F64 are converted exactly or by rounding to
    /// nearest; the integer and BOOL dtypes are converted to their float value (integers beyond 2^24 round),
    /// so that a file holding, say, a boolean attention mask next to the weights still loads.</summary>
    public static IReadOnlyDictionary<string, NamedTensor> Read(string path, out IReadOnlyDictionary<string, string> metadata)
    {
        using SafeFileHandle handle = OpenForReading(path);
        var (index, meta, dataStart) = ReadIndex(path, handle);
        var result = new Dictionary<string, NamedTensor>(index.Count, StringComparer.Ordinal);
        foreach (TensorInfo info in index)
            result.Add(info.Name, new NamedTensor(info.Name, info.Shape, ReadData(path, handle, dataStart, info), info.Dtype));
        metadata = meta;
        return result;
    }

    /// <summary>Reads and validates only the header: names, dtypes, shapes and offsets, in file order.</summary>
    public static IReadOnlyList<TensorInfo> ReadIndex(string path, out IReadOnlyDictionary<string, string> metadata)
    {
        using SafeFileHandle handle = OpenForReading(path);
        var (index, meta, _) = ReadIndex(path, handle);
        metadata = meta;
        return index;
    }

    /// <summary>Writes float32 tensors in the given order, data packed back to back, the header padded with
    /// spaces so the data starts on an 8-byte boundary. Goes through <see cref="AtomicFile"/>: a crash leaves the
    /// previous file intact.</summary>
    public static void Write(string path, IEnumerable<NamedTensor> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        List<NamedTensor> list = tensors.ToList();
        ValidateForWriting(list, metadata);
        byte[] header = BuildHeader(list, metadata);
        AtomicFile.Write(path, stream =>
        {
            Span<byte> lengthBytes = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(lengthBytes, (ulong)header.Length);
            stream.Write(lengthBytes);
            stream.Write(header);
            foreach (NamedTensor t in list) WriteFloats(stream, t.Data);
        });
    }

    // ---------------------------------------------------------------- reading

    private static SafeFileHandle OpenForReading(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        try
        {
            return File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.RandomAccess);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException)
        {
            throw new ModelFormatException($"Cannot open safetensors file '{path}': {e.Message}", e);
        }
    }

    private static (List<TensorInfo> Index, Dictionary<string, string> Metadata, long DataStart) ReadIndex(string path, SafeFileHandle handle)
    {
        long fileLength = RandomAccess.GetLength(handle);
        if (fileLength < 8)
            throw Bad(path, $"the file is {fileLength} bytes, shorter than the 8-byte header length that starts every safetensors file");
        Span<byte> lengthBytes = stackalloc byte[8];
        ReadExactly(path, handle, lengthBytes, 0);
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(lengthBytes);
        if (headerLength > (ulong)(fileLength - 8))
            throw Bad(path, $"the header length {headerLength} goes beyond the end of the file ({fileLength} bytes); the file is truncated or not safetensors");
        if (headerLength > MaxHeaderBytes)
            throw Bad(path, $"the header length {headerLength} is above the {MaxHeaderBytes}-byte limit of the format");

        byte[] headerBytes = new byte[headerLength];
        ReadExactly(path, handle, headerBytes, 8);
        long dataStart = 8 + (long)headerLength;
        long dataLength = fileLength - dataStart;

        using JsonDocument doc = ParseHeader(path, headerBytes);
        var index = new List<TensorInfo>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        Dictionary<string, string>? metadata = null;
        foreach (JsonProperty entry in doc.RootElement.EnumerateObject())
        {
            if (!names.Add(entry.Name))
                throw Bad(path, $"the header lists '{entry.Name}' twice");
            if (entry.Name == MetadataKey)
                metadata = ParseMetadata(path, entry.Value);
            else
                index.Add(ParseTensorInfo(path, entry.Name, entry.Value, dataLength));
        }
        CheckNoOverlap(path, index);
        return (index, metadata ?? new Dictionary<string, string>(), dataStart);
    }

    private static JsonDocument ParseHeader(string path, byte[] headerBytes)
    {
        // JsonDocument checks UTF-8 only when a string is read, which would surface as an
        // InvalidOperationException half way through the entries; check it once up front.
        if (!System.Text.Unicode.Utf8.IsValid(headerBytes))
            throw Bad(path, "the header is not valid JSON: it is not valid UTF-8 text");
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(headerBytes, new JsonDocumentOptions { MaxDepth = 16 });
        }
        catch (Exception e) when (e is JsonException or ArgumentException or InvalidOperationException)
        {
            throw Bad(path, $"the header is not valid JSON: {(e is JsonException json ? ConfigJson.Describe(json) : e.Message)}", e);
        }
        JsonValueKind kind = doc.RootElement.ValueKind;
        if (kind != JsonValueKind.Object)
        {
            doc.Dispose();
            throw Bad(path, $"the header must be a JSON object, found {kind}");
        }
        return doc;
    }

    private static Dictionary<string, string> ParseMetadata(string path, JsonElement value)
    {
        if (value.ValueKind != JsonValueKind.Object)
            throw Bad(path, $"\"{MetadataKey}\" must be an object of strings, found {value.ValueKind}");
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (JsonProperty p in value.EnumerateObject())
        {
            if (p.Value.ValueKind != JsonValueKind.String)
                throw Bad(path, $"metadata key '{p.Name}' must have a string value, found {p.Value.ValueKind}");
            if (!metadata.TryAdd(p.Name, p.Value.GetString()!))
                throw Bad(path, $"metadata key '{p.Name}' appears twice");
        }
        return metadata;
    }

    private static TensorInfo ParseTensorInfo(string path, string name, JsonElement value, long dataLength)
    {
        if (value.ValueKind != JsonValueKind.Object)
            throw BadTensor(path, name, $"expected an object with dtype, shape and data_offsets, found {value.ValueKind}");
        string dtype = value.TryGetProperty("dtype", out JsonElement d) && d.ValueKind == JsonValueKind.String
            ? d.GetString()!
            : throw BadTensor(path, name, "missing string field \"dtype\"");
        int elementBytes = DtypeBytes(dtype)
            ?? throw BadTensor(path, name, $"unsupported dtype '{dtype}' (supported: {string.Join(", ", SupportedDtypes)})");
        long[] shape = ReadNonNegativeIntegers(path, name, value, "shape", expectedCount: null);
        long[] offsets = ReadNonNegativeIntegers(path, name, value, "data_offsets", expectedCount: 2);
        long begin = offsets[0], end = offsets[1];
        if (begin > end)
            throw BadTensor(path, name, $"data_offsets [{begin}, {end}] end before they begin");
        if (end > dataLength)
            throw BadTensor(path, name, $"data_offsets [{begin}, {end}] go beyond the data section ({dataLength} bytes); the file is truncated or corrupt");

        long count;
        long expectedBytes;
        try
        {
            count = NamedTensor.ElementCount(shape);
            expectedBytes = checked(count * elementBytes);
        }
        catch (OverflowException)
        {
            throw BadTensor(path, name, $"shape [{string.Join(", ", shape)}] has more elements than fit in 64 bits");
        }
        if (end - begin != expectedBytes)
            throw BadTensor(path, name, $"shape [{string.Join(", ", shape)}] of {dtype} needs {expectedBytes} bytes but data_offsets [{begin}, {end}] hold {end - begin}");
        if (count > Array.MaxLength)
            throw BadTensor(path, name, $"{count} elements are more than one float32 array can hold ({Array.MaxLength})");
        return new TensorInfo(name, dtype, shape, begin, end);
    }

    private static long[] ReadNonNegativeIntegers(string path, string name, JsonElement tensor, string field, int? expectedCount)
    {
        if (!tensor.TryGetProperty(field, out JsonElement array) || array.ValueKind != JsonValueKind.Array)
            throw BadTensor(path, name, $"missing array field \"{field}\"");
        int length = array.GetArrayLength();
        if (expectedCount is int n && length != n)
            throw BadTensor(path, name, $"\"{field}\" must have {n} entries, found {length}");
        var values = new long[length];
        int i = 0;
        foreach (JsonElement item in array.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.Number || !item.TryGetInt64(out long v) || v < 0)
                throw BadTensor(path, name, $"\"{field}\" entry {i} must be a non-negative integer, found {item.GetRawText()}");
            values[i++] = v;
        }
        return values;
    }

    private static void CheckNoOverlap(string path, List<TensorInfo> index)
    {
        // Empty tensors occupy no bytes, so they cannot collide with anything.
        TensorInfo[] byBegin = index.Where(t => t.End > t.Begin).OrderBy(t => t.Begin).ThenBy(t => t.End).ToArray();
        for (int i = 1; i < byBegin.Length; i++)
        {
            TensorInfo prev = byBegin[i - 1], cur = byBegin[i];
            if (cur.Begin < prev.End)
                throw BadTensor(path, cur.Name,
                    $"data_offsets [{cur.Begin}, {cur.End}] overlap those of '{prev.Name}' [{prev.Begin}, {prev.End}]");
        }
    }

    private static float[] ReadData(string path, SafeFileHandle handle, long dataStart, TensorInfo info)
    {
        int count = checked((int)NamedTensor.ElementCount(info.Shape));
        var result = new float[count];
        long fileOffset = dataStart + info.Begin;
        if (info.Dtype == "F32" && BitConverter.IsLittleEndian)
        {
            // Same bytes in memory and on disk: read straight into the result.
            ReadExactly(path, handle, MemoryMarshal.AsBytes(result.AsSpan()), fileOffset);
            return result;
        }
        int elementBytes = DtypeBytes(info.Dtype)!.Value;
        int elementsPerChunk = ChunkBytes / elementBytes;
        byte[] chunk = ArrayPool<byte>.Shared.Rent(elementsPerChunk * elementBytes);
        try
        {
            for (int start = 0; start < count; start += elementsPerChunk)
            {
                int n = Math.Min(elementsPerChunk, count - start);
                Span<byte> bytes = chunk.AsSpan(0, n * elementBytes);
                ReadExactly(path, handle, bytes, fileOffset + (long)start * elementBytes);
                Convert(info.Dtype, bytes, result.AsSpan(start, n));
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(chunk);
        }
        return result;
    }

    private static void ReadExactly(string path, SafeFileHandle handle, Span<byte> buffer, long offset)
    {
        while (!buffer.IsEmpty)
        {
            int read;
            try
            {
                read = RandomAccess.Read(handle, buffer, offset);
            }
            catch (IOException e)
            {
                throw Bad(path, $"reading at byte {offset} failed: {e.Message}", e);
            }
            if (read == 0)
                throw Bad(path, $"the file ended at byte {offset} while {buffer.Length} more bytes were expected (was it truncated while being read?)");
            buffer = buffer[read..];
            offset += read;
        }
    }

    // ---------------------------------------------------------------- dtypes

    private static readonly string[] SupportedDtypes =
        ["F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U64", "U32", "U16", "U8", "BOOL"];

    private static int? DtypeBytes(string dtype) => dtype switch
    {
        "F64" or "I64" or "U64" => 8,
        "F32" or "I32" or "U32" => 4,
        "F16" or "BF16" or "I16" or "U16" => 2,
        "I8" or "U8" or "BOOL" => 1,
        _ => null,
    };

    private static void Convert(string dtype, ReadOnlySpan<byte> src, Span<float> dst)
    {
        switch (dtype)
        {
            case "F64": for (int i = 0; i < dst.Length; i++) dst[i] = (float)BinaryPrimitives.ReadDoubleLittleEndian(src[(8 * i)..]); break;
            case "F32": for (int i = 0; i < dst.Length; i++) dst[i] = BinaryPrimitives.ReadSingleLittleEndian(src[(4 * i)..]); break;
            case "F16": for (int i = 0; i < dst.Length; i++) dst[i] = HalfBitsToFloat(BinaryPrimitives.ReadUInt16LittleEndian(src[(2 * i)..])); break;
            case "BF16": for (int i = 0; i < dst.Length; i++) dst[i] = BFloat16BitsToFloat(BinaryPrimitives.ReadUInt16LittleEndian(src[(2 * i)..])); break;
            case "I64": for (int i = 0; i < dst.Length; i++) dst[i] = BinaryPrimitives.ReadInt64LittleEndian(src[(8 * i)..]); break;
            case "U64": for (int i = 0; i < dst.Length; i++) dst[i] = BinaryPrimitives.ReadUInt64LittleEndian(src[(8 * i)..]); break;
            case "I32": for (int i = 0; i < dst.Length; i++) dst[i] = BinaryPrimitives.ReadInt32LittleEndian(src[(4 * i)..]); break;
            case "U32": for (int i = 0; i < dst.Length; i++) dst[i] = BinaryPrimitives.ReadUInt32LittleEndian(src[(4 * i)..]); break;
            case "I16": for (int i = 0; i < dst.Length; i++) dst[i] = BinaryPrimitives.ReadInt16LittleEndian(src[(2 * i)..]); break;
            case "U16": for (int i = 0; i < dst.Length; i++) dst[i] = BinaryPrimitives.ReadUInt16LittleEndian(src[(2 * i)..]); break;
            case "I8": for (int i = 0; i < dst.Length; i++) dst[i] = (sbyte)src[i]; break;
            case "U8": for (int i = 0; i < dst.Length; i++) dst[i] = src[i]; break;
            case "BOOL": for (int i = 0; i < dst.Length; i++) dst[i] = src[i] != 0 ? 1f : 0f; break;
            default: throw new InvalidOperationException($"dtype {dtype} passed validation but has no converter");
        }
    }

    /// <summary>IEEE 754 binary16 to float32; exact for every value (subnormals, infinities and NaN included).</summary>
    public static float HalfBitsToFloat(ushort bits) => (float)BitConverter.UInt16BitsToHalf(bits);

    /// <summary>bfloat16 is the top half of a float32, so widening is a shift; exact for every value.</summary>
    public static float BFloat16BitsToFloat(ushort bits) => BitConverter.Int32BitsToSingle(bits << 16);

    // ---------------------------------------------------------------- writing

    /// <summary>Throws <see cref="ArgumentException"/> for a tensor list no safetensors file can hold (also used by
    /// <see cref="SafeTensorsFolder"/> on the whole list before it is split into shards).</summary>
    internal static void ValidateForWriting(List<NamedTensor> tensors, IReadOnlyDictionary<string, string>? metadata)
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (NamedTensor t in tensors)
        {
            if (t is null) throw new ArgumentException("a tensor in the list is null");
            if (string.IsNullOrEmpty(t.Name)) throw new ArgumentException("a tensor has an empty name");
            if (t.Name == MetadataKey) throw new ArgumentException($"'{MetadataKey}' is reserved for metadata and cannot name a tensor");
            if (!names.Add(t.Name)) throw new ArgumentException($"tensor name '{t.Name}' appears twice");
            if (t.Shape is null || t.Data is null) throw new ArgumentException($"tensor '{t.Name}' has a null shape or data");
            long count = NamedTensor.ElementCount(t.Shape);
            if (count != t.Data.Length)
                throw new ArgumentException($"tensor '{t.Name}': shape [{string.Join(", ", t.Shape)}] has {count} elements but the data has {t.Data.Length}");
        }
        if (metadata is not null)
            foreach (var (key, value) in metadata)
                if (key is null || value is null) throw new ArgumentException("metadata keys and values cannot be null");
    }

    private static byte[] BuildHeader(List<NamedTensor> tensors, IReadOnlyDictionary<string, string>? metadata)
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                json.WriteStartObject(MetadataKey);
                foreach (var (key, value) in metadata) json.WriteString(key, value);
                json.WriteEndObject();
            }
            long offset = 0;
            foreach (NamedTensor t in tensors)
            {
                long end = offset + 4L * t.Data.Length;
                json.WriteStartObject(t.Name);
                json.WriteString("dtype", "F32");
                json.WriteStartArray("shape");
                foreach (long dim in t.Shape) json.WriteNumberValue(dim);
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                json.WriteNumberValue(end);
                json.WriteEndArray();
                json.WriteEndObject();
                offset = end;
            }
            json.WriteEndObject();
        }
        // Trailing spaces are allowed JSON whitespace; padding keeps the data 8-byte aligned for memory mapping.
        int padded = (buffer.WrittenCount + 7) / 8 * 8;
        byte[] header = new byte[padded];
        buffer.WrittenSpan.CopyTo(header);
        header.AsSpan(buffer.WrittenCount).Fill((byte)' ');
        return header;
    }

    private static void WriteFloats(Stream stream, float[] data)
    {
        if (BitConverter.IsLittleEndian)
        {
            stream.Write(MemoryMarshal.AsBytes(data.AsSpan()));
            return;
        }
        byte[] chunk = new byte[4096];
        for (int start = 0; start < data.Length; start += chunk.Length / 4)
        {
            int n = Math.Min(chunk.Length / 4, data.Length - start);
            for (int i = 0; i < n; i++) BinaryPrimitives.WriteSingleLittleEndian(chunk.AsSpan(4 * i), data[start + i]);
            stream.Write(chunk, 0, 4 * n);
        }
    }

    private static ModelFormatException Bad(string path, string what, Exception? inner = null) =>
        new($"Safetensors file '{path}': {what}.", inner);

    private static ModelFormatException BadTensor(string path, string tensor, string what) =>
        new($"Safetensors file '{path}', tensor '{tensor}': {what}.");
}
