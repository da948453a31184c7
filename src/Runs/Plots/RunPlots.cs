using System.Text.RegularExpressions;

namespace ArcherIlgpu.Runs;

/// <summary>Which way a metric improves; <see cref="None"/> for diagnostics such as entropy.</summary>
public enum Goal { None, Higher, Lower }

/// <summary>
/// A chart of related metrics: every key that <see cref="Matches"/> becomes one series. A key can
/// appear in several groups.
/// </summary>
/// <param name="Name">File stem of the chart (plots/NAME.svg).</param>
/// <param name="Matches">Which metric keys belong here.</param>
/// <param name="Goal">Which way the metrics improve, for the report's "best" column.</param>
/// <param name="Smooth">Draw an EMA over the raw line when there are many points (noisy per-step metrics).</param>
/// <param name="IncludeZero">Start the y axis at 0 (fractions, lengths).</param>
public sealed record MetricGroup(string Name, string Title, string YLabel, Func<string, bool> Matches, Goal Goal = Goal.None,
    bool Smooth = false, bool IncludeZero = false);

/// <summary>Draws a run's standard charts from its metrics.jsonl into plots/.</summary>
public static partial class RunPlots
{
    /// <summary>
    /// The standard charts, in order. Keys follow our trainer (<c>loss</c>, <c>reward/mean</c>,
    /// <c>entropy/all|high|low</c>, <c>clip/...</c>, <c>response_length/mean</c>) and ArcherCodeR's
    /// names (<c>actor/pg_clipfrac</c>, <c>actor/kl_loss</c>, ...), whichever are present.
    /// </summary>
    public static readonly IReadOnlyList<MetricGroup> Groups =
    [
        new("loss", "Loss", "loss", k => k is "loss" or "sft/loss" or "actor/loss" or "actor/pg_loss" || k.EndsWith("/loss") && !k.Contains("kl"),
            Goal.Lower, Smooth: true),
        new("reward", "Reward (mean)", "reward", k => k is "reward" or "reward/mean" or "critic/score/mean", Goal.Higher, Smooth: true),
        new("accuracy", "Accuracy", "accuracy", k => k is "accuracy" or "reward/accuracy" || k.StartsWith("eval/") && k.Contains("pass@"),
            Goal.Higher, IncludeZero: true),
        // Per-step entropies of a small batch are noisy: smoothed. Shares (entropy/high_share) are fractions, not entropies.
        new("entropy", "Token entropy by class", "entropy (nats)", k => k.StartsWith("entropy/") && !k.EndsWith("_share") || k == "actor/entropy",
            Smooth: true),
        new("clip", "Clip fraction by token class", "fraction clipped", k => k.StartsWith("clip/") || k.Contains("clipfrac"),
            Smooth: true, IncludeZero: true),
        new("kl", "KL to reference", "KL", k => k.Contains("kl", StringComparison.OrdinalIgnoreCase), Smooth: true),
        new("response_length", "Response length", "tokens", k => k is "response_length/mean" or "response_length",
            Smooth: true, IncludeZero: true),
    ];

    /// <summary>A group marked Smooth gets an EMA line when a series has more points than this and is noisy.</summary>
    public const int SmoothAbove = 40;
    public const double SmoothWeight = 0.8;
    /// <summary>
    /// Mean |Δy| over the y range: about 1/n for a smooth trend, 0.1 and up for per-step noise. An EMA
    /// only makes a smooth curve lag, so it is drawn only above this.
    /// </summary>
    public const double NoiseThreshold = 0.05;

    internal static bool NeedsSmoothing(IReadOnlyList<PlotSeries> series) => series.Any(s =>
    {
        var ys = s.Y.Where(double.IsFinite).ToArray();
        if (ys.Length <= SmoothAbove) return false;
        double range = ys.Max() - ys.Min();
        if (!(range > 0)) return false;
        double meanStep = 0;
        for (int i = 1; i < ys.Length; i++) meanStep += Math.Abs(ys[i] - ys[i - 1]);
        return meanStep / (ys.Length - 1) / range > NoiseThreshold;
    });

    /// <summary>Redraws every chart that has data; returns the files written.</summary>
    public static IReadOnlyList<string> Write(string runDir) => Write(MetricsLog.Read(Path.Combine(runDir, "metrics.jsonl")), Path.Combine(runDir, "plots"));

    public static IReadOnlyList<string> Write(MetricsLog log, string plotsDir)
    {
        var written = new List<string>();
        foreach (var group in Groups)
        {
            var keys = log.Keys.Where(group.Matches).ToList();
            if (keys.Count == 0) continue;
            var plot = NewPlot(group, group.Title);
            string prefix = CommonPrefix(keys);
            foreach (var key in keys)
            {
                var (steps, values) = log.Series(key);
                plot.AddSeries(keys.Count == 1 ? key : SeriesLabel(key, prefix), steps, values);
            }
            if (keys.Count == 1) plot.YLabel = keys[0]; // one line: the axis says exactly which metric
            if (group.Smooth && NeedsSmoothing(plot.Series)) plot.Smoothing = SmoothWeight;
            string file = Path.Combine(plotsDir, group.Name + ".svg");
            Directory.CreateDirectory(plotsDir);
            plot.Save(file);
            written.Add(file);
        }
        return written;
    }

    /// <summary>One chart per metric key of the standard groups, one series per run, in <paramref name="outDir"/>.</summary>
    public static IReadOnlyList<string> WriteComparison(IReadOnlyList<(string Label, MetricsLog Log)> runs, string outDir)
    {
        var written = new List<string>();
        foreach (var key in ComparedKeys(runs.Select(r => r.Log)))
        {
            var group = Groups.First(g => g.Matches(key));
            var plot = NewPlot(group, $"{key} ({runs.Count} runs)");
            plot.YLabel = key;
            plot.AlwaysShowLegend = true;
            plot.Width = 860; // run names are long: the legend goes below
            plot.Height = 460;
            foreach (var (label, log) in runs)
            {
                var (steps, values) = log.Series(key);
                plot.AddSeries(label, steps, values);
            }
            if (group.Smooth && NeedsSmoothing(plot.Series)) plot.Smoothing = SmoothWeight;
            Directory.CreateDirectory(outDir);
            string file = Path.Combine(outDir, "compare_" + FileStem(key) + ".svg");
            plot.Save(file);
            written.Add(file);
        }
        return written;
    }

    /// <summary>Keys of the standard groups present in any of the logs, group order then first appearance.</summary>
    public static IReadOnlyList<string> ComparedKeys(IEnumerable<MetricsLog> logs)
    {
        var all = logs.SelectMany(l => l.Keys).Distinct().ToList();
        var keys = new List<string>();
        foreach (var group in Groups)
            foreach (var key in all)
                if (group.Matches(key) && !keys.Contains(key)) keys.Add(key);
        return keys;
    }

    /// <summary>The first group a key belongs to, or null.</summary>
    public static MetricGroup? GroupOf(string key) => Groups.FirstOrDefault(g => g.Matches(key));

    static SvgPlot NewPlot(MetricGroup group, string title) => new()
    {
        Title = title,
        XLabel = "step",
        YLabel = group.YLabel,
        IncludeZero = group.IncludeZero,
    };

    /// <summary>"entropy/high" under the common prefix "entropy/" is labelled "high".</summary>
    static string SeriesLabel(string key, string prefix) => key.Length > prefix.Length ? key[prefix.Length..] : key;

    static string CommonPrefix(IReadOnlyList<string> keys)
    {
        if (keys.Count < 2) return "";
        string prefix = keys[0];
        foreach (var k in keys.Skip(1))
        {
            int n = 0;
            while (n < prefix.Length && n < k.Length && prefix[n] == k[n]) n++;
            prefix = prefix[..n];
        }
        int slash = prefix.LastIndexOf('/');
        return slash < 0 ? "" : prefix[..(slash + 1)];
    }

    public static string FileStem(string key) => FileStemRegex().Replace(key, "_").Trim('_');

    [GeneratedRegex("[^A-Za-z0-9@.-]+")]
    private static partial Regex FileStemRegex();
}
