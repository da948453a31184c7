using System.Globalization;
using System.Text;
using System.Text.Json;

namespace ArcherIlgpu.Runs;

/// <summary>A run as the report sees it: a label, its folder, its metrics and its eval.json (flattened), if any.</summary>
public sealed record ReportRun(string Label, RunFolder Folder, MetricsLog Metrics, IReadOnlyDictionary<string, double> Eval)
{
    public static ReportRun Load(RunFolder folder, string? label = null) =>
        new(label ?? folder.Name, folder, folder.ReadMetrics(), ReadEval(folder.EvalPath));

    /// <summary>eval.json flattened to "key" / "parent.child" → number; a missing file is empty.</summary>
    public static IReadOnlyDictionary<string, double> ReadEval(string path)
    {
        var values = new Dictionary<string, double>();
        if (!File.Exists(path)) return values;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            Flatten(doc.RootElement, "", values);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"'{path}' is not valid JSON (line {e.LineNumber + 1}): {e.Message}", e);
        }
        return values;
    }

    static void Flatten(JsonElement e, string key, Dictionary<string, double> into)
    {
        switch (e.ValueKind)
        {
            case JsonValueKind.Object:
                foreach (var p in e.EnumerateObject()) Flatten(p.Value, key.Length == 0 ? p.Name : $"{key}.{p.Name}", into);
                break;
            case JsonValueKind.Number:
                into[key] = e.GetDouble();
                break;
        }
    }
}

/// <summary>What <see cref="RunReport.Generate"/> produced.</summary>
public sealed record ReportResult(string Markdown, string ReportPath, IReadOnlyList<string> Plots);

/// <summary>
/// <c>archer report</c>: redraws each run's charts; for several runs also draws comparison charts (one
/// series per run) and writes a markdown table of the final and best values of the key metrics and of
/// each run's eval.json.
/// </summary>
public static class RunReport
{
    /// <summary>Final values are the last finite value; best is the max or min over the run by the metric's <see cref="Goal"/>.</summary>
    public static ReportResult Generate(IReadOnlyList<string> runPaths, string? outDir = null, DateTime? now = null)
    {
        if (runPaths.Count == 0) throw new ArgumentException("give at least one run folder");
        var folders = runPaths.Select(RunFolder.Open).ToList();
        var runs = folders.Select((f, i) => ReportRun.Load(f, UniqueLabel(folders, i))).ToList();
        string dir = outDir ?? (runs.Count == 1
            ? runs[0].Folder.Path
            : Path.Combine(Path.GetDirectoryName(runs[0].Folder.Path)!, "compare_" + (now ?? DateTime.Now).ToString("yyyy-MM-dd_HHmm", CultureInfo.InvariantCulture)));
        Directory.CreateDirectory(dir);

        var plots = new List<string>();
        foreach (var run in runs) plots.AddRange(RunPlots.Write(run.Metrics, run.Folder.PlotsDir));
        var comparison = runs.Count > 1 ? RunPlots.WriteComparison(runs.Select(r => (r.Label, r.Metrics)).ToList(), dir) : [];
        plots.AddRange(comparison);

        var md = new StringBuilder();
        md.Append(runs.Count == 1 ? $"# Run {runs[0].Label}\n\n" : $"# Comparison of {runs.Count} runs\n\n");
        foreach (var run in runs)
        {
            md.Append($"- **{run.Label}**: `{run.Folder.Path}`, {run.Metrics.Rows.Count} logged lines, {StepsDone(run.Metrics)?.ToString(CultureInfo.InvariantCulture) ?? "no"} steps");
            if (run.Metrics.MalformedLines.Count > 0)
                md.Append($" (skipped malformed metrics line(s) {string.Join(", ", run.Metrics.MalformedLines)})");
            md.Append('\n');
        }
        md.Append('\n').Append(Table(runs)).Append('\n');
        var charts = runs.Count > 1 ? comparison : plots;
        if (charts.Count > 0)
        {
            md.Append("## Charts\n\n");
            foreach (var file in charts)
                md.Append($"![{Path.GetFileNameWithoutExtension(file)}]({Path.GetRelativePath(dir, file).Replace('\\', '/')})\n");
        }
        string reportPath = Path.Combine(dir, "report.md");
        AtomicFile.WriteAllText(reportPath, md.ToString());
        return new ReportResult(md.ToString(), reportPath, plots);
    }

    /// <summary>
    /// Steps the run has done: its last step number, plus one for a log that numbers steps from 0
    /// (train-rl's) rather than from 1 (the demo's); null for an empty log.
    /// </summary>
    public static long? StepsDone(MetricsLog metrics)
    {
        if (metrics.Rows.Count == 0) return null;
        bool fromZero = metrics.Rows.Any(r => r.Step == 0);
        return metrics.LastStep + (fromZero ? 1 : 0);
    }

    /// <summary>
    /// The markdown table: one row per key metric present in any run (plus "steps" and each eval.json
    /// value), one column per run; a cell is "final" or, for metrics with a goal, "final (best B)".
    /// </summary>
    public static string Table(IReadOnlyList<ReportRun> runs)
    {
        var sb = new StringBuilder();
        sb.Append("| metric | ").Append(string.Join(" | ", runs.Select(r => EscapeCell(r.Label)))).Append(" |\n");
        sb.Append("|---|").Append(string.Concat(runs.Select(_ => "---:|"))).Append('\n');
        sb.Append("| steps | ").Append(string.Join(" | ", runs.Select(r => StepsDone(r.Metrics) is long n ? n.ToString(CultureInfo.InvariantCulture) : "—"))).Append(" |\n");
        foreach (var key in RunPlots.ComparedKeys(runs.Select(r => r.Metrics)))
        {
            var goal = RunPlots.GroupOf(key)?.Goal ?? Goal.None;
            string name = goal switch { Goal.Higher => $"{key} ↑", Goal.Lower => $"{key} ↓", _ => key };
            sb.Append($"| {EscapeCell(name)} | ").Append(string.Join(" | ", runs.Select(r => Cell(r.Metrics, key, goal)))).Append(" |\n");
        }
        var evalKeys = runs.SelectMany(r => r.Eval.Keys).Distinct().ToList();
        foreach (var key in evalKeys)
            sb.Append($"| eval: {EscapeCell(key)} | ").Append(string.Join(" | ", runs.Select(r => r.Eval.TryGetValue(key, out var v) ? FormatValue(v) : "—"))).Append(" |\n");
        return sb.ToString();
    }

    static string Cell(MetricsLog log, string key, Goal goal)
    {
        if (!log.Has(key)) return "—";
        double final = log.Final(key);
        if (goal == Goal.None) return FormatValue(final);
        return $"{FormatValue(final)} (best {FormatValue(log.Best(key, goal == Goal.Higher))})";
    }

    /// <summary>Four significant digits; the same format the tests compute by hand.</summary>
    public static string FormatValue(double v)
    {
        if (double.IsNaN(v)) return "—";
        if (double.IsInfinity(v)) return v > 0 ? "∞" : "-∞";
        double abs = Math.Abs(v);
        if (abs != 0 && (abs < 1e-3 || abs >= 1e6)) return v.ToString("0.###e+0", CultureInfo.InvariantCulture);
        if (abs >= 1000) return v.ToString("F0", CultureInfo.InvariantCulture);
        return v.ToString("G4", CultureInfo.InvariantCulture);
    }

    static string EscapeCell(string s) => s.Replace("|", "\\|");

    /// <summary>Folder names, made unique with the parent folder when two runs share a name.</summary>
    static string UniqueLabel(IReadOnlyList<RunFolder> folders, int i)
    {
        string name = folders[i].Name;
        if (folders.Count(f => f.Name == name) == 1) return name;
        string parent = Path.GetFileName(Path.GetDirectoryName(folders[i].Path)) ?? "";
        string label = $"{parent}/{name}";
        return folders.Take(i).Any(f => $"{Path.GetFileName(Path.GetDirectoryName(f.Path))}/{f.Name}" == label) ? $"{label} #{i + 1}" : label;
    }
}
