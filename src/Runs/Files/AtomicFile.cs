using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace ArcherIlgpu.Runs;

/// <summary>
/// Writes whole files so that a reader (or a crash) only ever sees the old or the new content: the bytes
/// go to a temporary sibling with a unique name (two writers never share one), are flushed to disk, and
/// the temporary file is renamed over the target (an atomic replace on the same file system).
/// The project's only atomic writer: the model's files (weights, config, tokenizer) go through it too.
/// </summary>
public static class AtomicFile
{
    // No byte-order mark: JSON and config files are read by other tools (Hugging Face, jq).
    public static void WriteAllText(string path, string text) => WriteAllBytes(path, Encoding.UTF8.GetBytes(text));

    public static void WriteAllBytes(string path, byte[] bytes) => Write(path, stream => stream.Write(bytes));

    /// <summary>Writes through a stream callback (large or binary files), with the same guarantee.</summary>
    public static void Write(string path, Action<Stream> write)
    {
        string full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        string temp = TempName(full);
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
            {
                write(stream);
                // Without the flush to disk, a power cut after the rename can leave an empty file under the
                // final name on some file systems.
                stream.Flush(flushToDisk: true);
            }
            SaveCrashPoint.Reached();
            File.Move(temp, full, overwrite: true);
        }
        catch
        {
            TryDelete(temp);
            throw;
        }
    }

    /// <summary>Temporary names end in ".tmp" so a folder listing can tell (and clean) leftovers of a crash.</summary>
    static string TempName(string full) => $"{full}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp";

    static void TryDelete(string path)
    {
        try { File.Delete(path); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}

/// <summary>
/// Small JSON state files (step, RNG state, data cursor): snake_case, indented, written atomically,
/// read back with a message naming the file when it is missing or corrupt.
/// </summary>
public static class Json
{
    public static readonly JsonSerializerOptions Options = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = true,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower) },
        IncludeFields = true,
        // Files for people and tools, never embedded in HTML: keep '+', '<', quotes in prompts readable.
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    /// <summary>One-line variant for JSONL files.</summary>
    public static readonly JsonSerializerOptions Compact = new(Options) { WriteIndented = false };

    public static string Serialize<T>(T value) => JsonSerializer.Serialize(value, Options);

    public static void WriteAtomic<T>(string path, T value) => AtomicFile.WriteAllText(path, Serialize(value) + "\n");

    public static T Read<T>(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"state file '{path}' does not exist", path);
        try
        {
            return JsonSerializer.Deserialize<T>(File.ReadAllText(path), Options)
                ?? throw new InvalidDataException($"state file '{path}' holds null, expected a {typeof(T).Name}");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"state file '{path}' is corrupt or not a {typeof(T).Name} (line {e.LineNumber + 1}): {e.Message}", e);
        }
    }
}
