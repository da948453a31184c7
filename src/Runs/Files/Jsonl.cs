using System.Globalization;
using System.Text;
using System.Text.Json;

namespace ArcherIlgpu.Runs;

/// <summary>
/// An append-only JSON-lines file: one object per line, each line flushed as soon as it is written so
/// a killed process loses nothing it already logged. Opening for a resume first drops every line whose
/// "step" is greater than the resumed step (and a truncated last line left by a crash), so the file
/// continues exactly where the checkpoint does.
/// </summary>
public class JsonlWriter : IDisposable
{
    readonly StreamWriter writer;
    readonly object gate = new();

    public string Path { get; }

    /// <param name="resumeStep">null for a fresh file (appends if it exists); else keep only lines with step ≤ resumeStep.</param>
    public JsonlWriter(string path, long? resumeStep = null)
    {
        Path = path;
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!);
        if (resumeStep is long step && File.Exists(path)) Jsonl.TruncateAfterStep(path, step);
        else if (File.Exists(path)) Jsonl.DropTruncatedTail(path);
        var stream = new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.Read);
        writer = new StreamWriter(stream, new UTF8Encoding(false)) { AutoFlush = true, NewLine = "\n" };
    }

    /// <summary>Appends one already-serialised JSON object (must not contain a newline).</summary>
    public void AppendLine(string json)
    {
        if (json.Contains('\n')) throw new ArgumentException("a JSONL line must not contain a newline", nameof(json));
        lock (gate) writer.WriteLine(json);
    }

    /// <summary>Appends <paramref name="value"/> serialised with snake_case names.</summary>
    public void Append<T>(T value) => AppendLine(JsonSerializer.Serialize(value, Json.Compact));

    public void Dispose()
    {
        lock (gate) writer.Dispose();
        GC.SuppressFinalize(this);
    }
}

/// <summary>The metrics log: <c>{"step": 12, "loss": 0.5, "reward/mean": 0.41, ...}</c> per line.</summary>
public sealed class MetricsWriter : JsonlWriter
{
    public MetricsWriter(string path, long? resumeStep = null) : base(path, resumeStep) { }

    /// <summary>
    /// Writes one step. NaN is written as null and ±∞ as "Infinity"/"-Infinity" (JSON has no literal
    /// for them); <see cref="MetricsLog"/> reads both back.
    /// </summary>
    public void Write(long step, IEnumerable<KeyValuePair<string, double>> values)
    {
        var sb = new StringBuilder(256);
        sb.Append("{\"step\":").Append(step.ToString(CultureInfo.InvariantCulture));
        foreach (var (key, value) in values)
        {
            if (key == "step") continue;
            sb.Append(',').Append(JsonSerializer.Serialize(key, Json.Compact)).Append(':').Append(Format(value));
        }
        sb.Append('}');
        AppendLine(sb.ToString());
    }

    internal static string Format(double value) =>
        double.IsNaN(value) ? "null"
        : double.IsPositiveInfinity(value) ? "\"Infinity\""
        : double.IsNegativeInfinity(value) ? "\"-Infinity\""
        : value.ToString("R", CultureInfo.InvariantCulture);
}

/// <summary>One completion as logged to samples.jsonl.</summary>
public sealed record Sample(long Step, string Prompt, string Completion, double Reward, bool? Correct = null, string? Expected = null);

/// <summary>Line-level helpers shared by the metrics and samples files.</summary>
public static class Jsonl
{
    /// <summary>Each line that parses as a JSON object, with its 1-based line number; other lines are reported in <paramref name="malformed"/>.</summary>
    public static IEnumerable<(int Line, JsonElement Value)> ReadObjects(string path, List<int>? malformed = null)
    {
        int number = 0;
        foreach (var line in File.ReadLines(path))
        {
            number++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            JsonElement element;
            try
            {
                using var doc = JsonDocument.Parse(line);
                element = doc.RootElement.Clone();
            }
            catch (JsonException)
            {
                malformed?.Add(number);
                continue;
            }
            if (element.ValueKind != JsonValueKind.Object) { malformed?.Add(number); continue; }
            yield return (number, element);
        }
    }

    /// <summary>Keeps the lines with step ≤ <paramref name="step"/> (and lines without a step); drops broken lines. Atomic.</summary>
    public static void TruncateAfterStep(string path, long step)
    {
        var kept = new StringBuilder();
        foreach (var line in File.ReadLines(path))
        {
            if (string.IsNullOrWhiteSpace(line)) continue;
            long? lineStep;
            try
            {
                using var doc = JsonDocument.Parse(line);
                if (doc.RootElement.ValueKind != JsonValueKind.Object) continue;
                lineStep = doc.RootElement.TryGetProperty("step", out var s) && s.TryGetInt64(out long v) ? v : null;
            }
            catch (JsonException) { continue; }
            if (lineStep is long ls && ls > step) continue;
            kept.Append(line).Append('\n');
        }
        AtomicFile.WriteAllText(path, kept.ToString());
    }

    /// <summary>
    /// A crash mid-write leaves a last line without its newline; appending after it would glue two
    /// records together, so cut the file back to its last complete line.
    /// </summary>
    public static void DropTruncatedTail(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.Read);
        if (stream.Length == 0) return;
        stream.Seek(-1, SeekOrigin.End);
        if (stream.ReadByte() == '\n') return;
        long end = stream.Length - 1;
        var one = new byte[1];
        while (end > 0)
        {
            stream.Seek(end - 1, SeekOrigin.Begin);
            stream.ReadExactly(one);
            if (one[0] == '\n') break;
            end--;
        }
        var tail = new byte[stream.Length - end];
        stream.Seek(end, SeekOrigin.Begin);
        stream.ReadExactly(tail);
        if (IsJsonObject(tail))
        {
            // complete record, only its newline missing (written by another tool): keep it
            stream.Seek(0, SeekOrigin.End);
            stream.WriteByte((byte)'\n');
            return;
        }
        stream.SetLength(end);
    }

    static bool IsJsonObject(byte[] bytes)
    {
        try
        {
            using var doc = JsonDocument.Parse(bytes);
            return doc.RootElement.ValueKind == JsonValueKind.Object;
        }
        catch (JsonException) { return false; }
    }
}
