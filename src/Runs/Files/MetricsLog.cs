using System.Text.Json;

namespace ArcherIlgpu.Runs;

/// <summary>One line of metrics.jsonl: the step and every numeric field (null read as NaN).</summary>
public sealed record MetricRow(long Step, IReadOnlyDictionary<string, double> Values)
{
    public double this[string key] => Values.TryGetValue(key, out var v) ? v : double.NaN;
}

/// <summary>
/// metrics.jsonl read back. A line that is not a JSON object (the truncated last line of a crashed run)
/// is skipped and its number kept in <see cref="MalformedLines"/>; lines without a numeric "step" are
/// skipped too. Non-numeric fields are ignored.
/// </summary>
public sealed class MetricsLog
{
    public IReadOnlyList<MetricRow> Rows { get; }
    /// <summary>Metric names in the order they first appear.</summary>
    public IReadOnlyList<string> Keys { get; }
    public IReadOnlyList<int> MalformedLines { get; }
    public string? Path { get; }

    public MetricsLog(IReadOnlyList<MetricRow> rows, IReadOnlyList<int>? malformedLines = null, string? path = null)
    {
        Rows = rows;
        MalformedLines = malformedLines ?? [];
        Path = path;
        var keys = new List<string>();
        var seen = new HashSet<string>();
        foreach (var row in rows)
            foreach (var key in row.Values.Keys)
                if (seen.Add(key)) keys.Add(key);
        Keys = keys;
    }

    /// <summary>Reads <paramref name="path"/>; a missing file is an empty log.</summary>
    public static MetricsLog Read(string path)
    {
        if (!File.Exists(path)) return new MetricsLog([], [], path);
        var malformed = new List<int>();
        var rows = new List<MetricRow>();
        foreach (var (_, obj) in Jsonl.ReadObjects(path, malformed))
        {
            if (!obj.TryGetProperty("step", out var stepElement) || !stepElement.TryGetInt64(out long step)) continue;
            var values = new Dictionary<string, double>();
            foreach (var field in obj.EnumerateObject())
            {
                if (field.Name == "step") continue;
                if (ToDouble(field.Value) is double v) values[field.Name] = v;
            }
            rows.Add(new MetricRow(step, values));
        }
        return new MetricsLog(rows, malformed, path);
    }

    static double? ToDouble(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.Number => e.GetDouble(),
        JsonValueKind.Null => double.NaN,
        JsonValueKind.True => 1,
        JsonValueKind.False => 0,
        JsonValueKind.String => e.GetString() switch
        {
            "Infinity" => double.PositiveInfinity,
            "-Infinity" => double.NegativeInfinity,
            "NaN" => double.NaN,
            _ => null,
        },
        _ => null,
    };

    public bool Has(string key) => Keys.Contains(key);

    /// <summary>(step, value) of every row that has <paramref name="key"/>, NaN included (a gap in a plot).</summary>
    public (double[] Steps, double[] Values) Series(string key)
    {
        var steps = new List<double>();
        var values = new List<double>();
        foreach (var row in Rows)
            if (row.Values.TryGetValue(key, out var v)) { steps.Add(row.Step); values.Add(v); }
        return (steps.ToArray(), values.ToArray());
    }

    /// <summary>The last finite value of <paramref name="key"/>, NaN if none.</summary>
    public double Final(string key)
    {
        for (int i = Rows.Count - 1; i >= 0; i--)
            if (Rows[i].Values.TryGetValue(key, out var v) && double.IsFinite(v)) return v;
        return double.NaN;
    }

    /// <summary>The largest (or smallest) finite value of <paramref name="key"/>, NaN if none.</summary>
    public double Best(string key, bool higherIsBetter)
    {
        double best = double.NaN;
        foreach (var row in Rows)
        {
            if (!row.Values.TryGetValue(key, out var v) || !double.IsFinite(v)) continue;
            if (double.IsNaN(best) || (higherIsBetter ? v > best : v < best)) best = v;
        }
        return best;
    }

    /// <summary>The mean of the last <paramref name="count"/> finite values (smooths a noisy final value), NaN if none.</summary>
    public double MeanOfLast(string key, int count)
    {
        double sum = 0; int n = 0;
        for (int i = Rows.Count - 1; i >= 0 && n < count; i--)
            if (Rows[i].Values.TryGetValue(key, out var v) && double.IsFinite(v)) { sum += v; n++; }
        return n == 0 ? double.NaN : sum / n;
    }

    public long LastStep => Rows.Count == 0 ? -1 : Rows[^1].Step;
}
