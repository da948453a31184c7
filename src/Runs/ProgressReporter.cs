using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace ArcherIlgpu.Runs;

/// <summary>
/// Progress of a long job. On a terminal: one line redrawn in place with '\r'
/// (<c>[#####.....] step 12/100  reward 0.41  entropy 0.83  3.2 it/s  ETA 0:27</c>), at most every
/// <see cref="RedrawInterval"/>. When output is redirected (CI logs): a plain line at the first report,
/// whenever <see cref="PlainInterval"/> has passed or another <see cref="PlainPercent"/>% is done, and at
/// the end, so a log gets a bounded number of lines. Speed is the average since the reporter started
/// (steps done after <c>startStep</c>, so a resumed run's ETA is right).
/// </summary>
public sealed class ProgressReporter
{
    readonly TextWriter output;
    readonly Func<TimeSpan> clock;
    readonly long startStep;
    readonly TimeSpan startTime;
    TimeSpan lastPrint = TimeSpan.MinValue;
    long lastPrintedPercentBucket = -1;
    int lastLineLength;
    bool completed;

    public long Total { get; }
    public string Label { get; }
    public bool Interactive { get; }
    public TimeSpan PlainInterval { get; init; } = TimeSpan.FromSeconds(10);
    /// <summary>Plain mode also prints each time another this-many percent is done (0: time only).</summary>
    public double PlainPercent { get; init; } = 10;
    public TimeSpan RedrawInterval { get; init; } = TimeSpan.FromMilliseconds(100);
    public int BarWidth { get; init; } = 20;

    /// <param name="total">Last step number (the job runs steps startStep+1 .. total).</param>
    /// <param name="output">Where to write; Console.Out by default.</param>
    /// <param name="interactive">Redraw in place; default: Console.Out is not redirected.</param>
    /// <param name="clock">Elapsed time source; a Stopwatch by default (tests inject one).</param>
    /// <param name="startStep">Steps already done (resume) when the reporter starts.</param>
    public ProgressReporter(long total, string label = "step", TextWriter? output = null, bool? interactive = null,
        Func<TimeSpan>? clock = null, long startStep = 0)
    {
        if (total < 0) throw new ArgumentOutOfRangeException(nameof(total), total, "total must be >= 0");
        Total = total;
        Label = label;
        this.output = output ?? Console.Out;
        Interactive = interactive ?? (output == null && !Console.IsOutputRedirected);
        if (clock == null)
        {
            var watch = Stopwatch.StartNew();
            clock = () => watch.Elapsed;
        }
        this.clock = clock;
        this.startStep = startStep;
        startTime = clock();
    }

    public TimeSpan Elapsed => clock() - startTime;

    /// <summary>Steps per second since the start, null before the first step completes.</summary>
    public double? Rate(long step)
    {
        double seconds = Elapsed.TotalSeconds;
        long done = step - startStep;
        return done > 0 && seconds > 0 ? done / seconds : null;
    }

    /// <summary>Remaining time at the average rate, null while unknown.</summary>
    public TimeSpan? Eta(long step) => Rate(step) is double r ? TimeSpan.FromSeconds(Math.Max(0, Total - step) / r) : null;

    /// <summary>Call after each step with the values to show (name → value, shown in the given order).</summary>
    public void Report(long step, IEnumerable<KeyValuePair<string, double>>? fields = null)
    {
        var now = clock();
        bool last = step >= Total;
        if (Interactive)
        {
            if (!last && lastPrint != TimeSpan.MinValue && now - lastPrint < RedrawInterval) return;
            string line = FormatLine(step, fields, bar: true);
            int pad = Math.Max(0, lastLineLength - line.Length);
            output.Write("\r" + line + new string(' ', pad));
            lastLineLength = line.Length;
            if (last) { output.WriteLine(); completed = true; }
            output.Flush();
            lastPrint = now;
            return;
        }
        long bucket = PlainPercent > 0 && Total > 0 ? (long)Math.Floor(100.0 * step / Total / PlainPercent) : 0;
        bool due = lastPrint == TimeSpan.MinValue || now - lastPrint >= PlainInterval || bucket > lastPrintedPercentBucket || (last && !completed);
        if (!due) return;
        output.WriteLine(FormatLine(step, fields, bar: false));
        output.Flush();
        lastPrint = now;
        lastPrintedPercentBucket = bucket;
        if (last) completed = true;
    }

    /// <summary>Ends the live line (on a terminal) with a final message, e.g. "done in 3:12".</summary>
    public void Complete(string? message = null)
    {
        if (Interactive && lastLineLength > 0 && !completed) output.WriteLine();
        completed = true;
        output.WriteLine(message ?? $"done in {FormatDuration(Elapsed)}");
        output.Flush();
    }

    public string FormatLine(long step, IEnumerable<KeyValuePair<string, double>>? fields, bool bar)
    {
        var sb = new StringBuilder();
        double fraction = Total > 0 ? Math.Clamp((double)step / Total, 0, 1) : 1;
        if (bar)
        {
            int filled = (int)Math.Round(fraction * BarWidth);
            sb.Append('[').Append('#', filled).Append('.', BarWidth - filled).Append("] ");
        }
        sb.Append(Label).Append(' ').Append(step).Append('/').Append(Total);
        if (!bar) sb.Append(" (").Append((fraction * 100).ToString("0", CultureInfo.InvariantCulture)).Append("%)");
        if (fields != null)
            foreach (var (key, value) in fields)
                sb.Append("  ").Append(key).Append(' ').Append(FormatValue(value));
        if (Rate(step) is double rate)
        {
            sb.Append("  ").Append(rate >= 1 || rate == 0
                ? rate.ToString("0.0", CultureInfo.InvariantCulture) + " it/s"
                : (1 / rate).ToString("0.0", CultureInfo.InvariantCulture) + " s/it");
            if (step < Total && Eta(step) is TimeSpan eta) sb.Append("  ETA ").Append(FormatDuration(eta));
        }
        if (!bar || step >= Total) sb.Append("  elapsed ").Append(FormatDuration(Elapsed));
        return sb.ToString();
    }

    /// <summary>Three significant digits, compact for very large or small values.</summary>
    public static string FormatValue(double v)
    {
        var inv = CultureInfo.InvariantCulture;
        if (double.IsNaN(v)) return "nan";
        if (double.IsInfinity(v)) return v > 0 ? "inf" : "-inf";
        double abs = Math.Abs(v);
        if (abs >= 1000) return v.ToString("0", inv);
        if (abs == 0 || abs >= 1e-3) return v.ToString("G3", inv);
        return v.ToString("0.0e+0", inv);
    }

    /// <summary>m:ss under an hour, h:mm:ss above, "d.hh:mm:ss" above a day.</summary>
    public static string FormatDuration(TimeSpan t)
    {
        if (t < TimeSpan.Zero) t = TimeSpan.Zero;
        long seconds = (long)Math.Round(t.TotalSeconds);
        long h = seconds / 3600, m = seconds / 60 % 60, s = seconds % 60;
        if (h >= 24) return $"{h / 24}d {h % 24:00}:{m:00}:{s:00}";
        return h > 0 ? $"{h}:{m:00}:{s:00}" : $"{m}:{s:00}";
    }
}
