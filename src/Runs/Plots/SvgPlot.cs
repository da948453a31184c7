using System.Globalization;
using System.Security;
using System.Text;

namespace ArcherIlgpu.Runs;

/// <summary>One line of a chart. Non-finite y values (NaN, ±∞) break the line; an isolated point is drawn as a dot.</summary>
public sealed record PlotSeries(string Name, IReadOnlyList<double> X, IReadOnlyList<double> Y, string? Color = null);

/// <summary>
/// A dependency-free SVG line chart: several series, nice-number ticks with grid lines, axis labels,
/// a legend, a title. Linear axes only. Noisy series can be drawn with an exponential moving average
/// over a faint copy of the raw values (<see cref="Smoothing"/>).
/// </summary>
public sealed class SvgPlot
{
    /// <summary>Colour-blind-friendly, distinct on white (Okabe–Ito order, then extras).</summary>
    public static readonly IReadOnlyList<string> Palette =
        ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#8C6D31", "#000000", "#999933", "#882255"];

    const string FontFamily = "system-ui, -apple-system, 'Segoe UI', 'DejaVu Sans', Helvetica, Arial, sans-serif";

    public string? Title { get; set; }
    public string? XLabel { get; set; }
    public string? YLabel { get; set; }
    public int Width { get; set; } = 760;
    public int Height { get; set; } = 420;
    /// <summary>EMA weight of the previous smoothed value, 0 (off) to &lt;1; the raw line is drawn faintly behind.</summary>
    public double Smoothing { get; set; }
    /// <summary>Stretch the y axis to include 0.</summary>
    public bool IncludeZero { get; set; }
    /// <summary>Show the legend even for a single series (it is always shown for two or more).</summary>
    public bool AlwaysShowLegend { get; set; }

    readonly List<PlotSeries> series = [];
    public IReadOnlyList<PlotSeries> Series => series;

    public SvgPlot AddSeries(string name, IReadOnlyList<double> x, IReadOnlyList<double> y, string? color = null)
    {
        if (x.Count != y.Count) throw new ArgumentException($"series '{name}': {x.Count} x values but {y.Count} y values");
        series.Add(new PlotSeries(name, x, y, color));
        return this;
    }

    public void Save(string path) => AtomicFile.WriteAllText(path, ToSvg());

    // ------------------------------------------------------------------ layout

    const double TickFont = 12, LabelFont = 13, TitleFont = 16, LegendFont = 12.5;

    /// <summary>Approximate text width: the fonts above average about 0.58 em per character.</summary>
    static double TextWidth(string s, double fontSize) => s.Length * fontSize * 0.58;

    public string ToSvg()
    {
        var points = series.SelectMany(s => s.X.Zip(s.Y)).Where(p => double.IsFinite(p.First) && double.IsFinite(p.Second)).ToList();
        var (xMin, xMax, xStep) = XRange(points.Select(p => p.First));
        var (yMin, yMax, yStep) = YRange(points.Select(p => p.Second));
        var yTicks = NiceScale.Ticks(yMin, yMax, yStep);
        var xTicks = NiceScale.Ticks(xMin, xMax, xStep);
        var yLabels = yTicks.Select(t => NiceScale.Format(t, yStep)).ToList();

        bool legend = series.Count > 1 || (AlwaysShowLegend && series.Count == 1);
        var legendNames = series.Select(s => Shorten(s.Name, 40)).ToList();
        var entryWidths = legendNames.Select(n => 34 + TextWidth(n, LegendFont)).ToList();
        // A narrow legend sits right of the plot; long names (run folders) go below it instead of squeezing it.
        bool legendRight = legend && entryWidths.Max() <= Width * 0.24;
        var legendRows = legend && !legendRight ? FlowRows(entryWidths, Width - 40) : [];

        double top = Title != null ? 48 : 20;
        double left = 16 + (YLabel != null ? 22 : 0) + (yLabels.Count == 0 ? 20 : yLabels.Max(l => TextWidth(l, TickFont))) + 10;
        double bottom = 30 + (XLabel != null ? 22 : 0) + (legendRows.Count > 0 ? 12 + legendRows.Count * 22 : 0);
        double right = legendRight ? entryWidths.Max() + 28 : 24;
        double plotW = Math.Max(40, Width - left - right), plotH = Math.Max(40, Height - top - bottom);

        double Px(double x) => left + (x - xMin) / (xMax - xMin) * plotW;
        double Py(double y) => top + plotH - (y - yMin) / (yMax - yMin) * plotH;

        var svg = new StringBuilder();
        svg.Append($"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{Width}\" height=\"{Height}\" viewBox=\"0 0 {Width} {Height}\" font-family=\"{FontFamily}\">\n");
        if (Title != null) svg.Append($"  <title>{Esc(Title)}</title>\n");
        svg.Append($"  <rect x=\"0\" y=\"0\" width=\"{Width}\" height=\"{Height}\" fill=\"#ffffff\"/>\n");
        if (Title != null)
            svg.Append($"  <text x=\"{F(left)}\" y=\"{F(top - 20)}\" font-size=\"{F(TitleFont)}\" font-weight=\"600\" fill=\"#222\">{Esc(Title)}</text>\n");

        // grid and ticks
        svg.Append("  <g class=\"grid\" stroke=\"#e6e6e6\" stroke-width=\"1\">\n");
        foreach (var t in yTicks) svg.Append($"    <line x1=\"{F(left)}\" x2=\"{F(left + plotW)}\" y1=\"{F(Py(t))}\" y2=\"{F(Py(t))}\"/>\n");
        foreach (var t in xTicks) svg.Append($"    <line x1=\"{F(Px(t))}\" x2=\"{F(Px(t))}\" y1=\"{F(top)}\" y2=\"{F(top + plotH)}\"/>\n");
        svg.Append("  </g>\n");
        if (yMin < 0 && yMax > 0)
            svg.Append($"  <line x1=\"{F(left)}\" x2=\"{F(left + plotW)}\" y1=\"{F(Py(0))}\" y2=\"{F(Py(0))}\" stroke=\"#b0b0b0\" stroke-width=\"1\"/>\n");
        svg.Append($"  <rect x=\"{F(left)}\" y=\"{F(top)}\" width=\"{F(plotW)}\" height=\"{F(plotH)}\" fill=\"none\" stroke=\"#9a9a9a\" stroke-width=\"1\"/>\n");

        svg.Append($"  <g class=\"y-ticks\" font-size=\"{F(TickFont)}\" fill=\"#555\" text-anchor=\"end\">\n");
        for (int i = 0; i < yTicks.Count; i++)
            svg.Append($"    <text x=\"{F(left - 7)}\" y=\"{F(Py(yTicks[i]) + TickFont * 0.35)}\">{Esc(yLabels[i])}</text>\n");
        svg.Append("  </g>\n");
        svg.Append($"  <g class=\"x-ticks\" font-size=\"{F(TickFont)}\" fill=\"#555\" text-anchor=\"middle\">\n");
        foreach (var t in xTicks)
            svg.Append($"    <text x=\"{F(Px(t))}\" y=\"{F(top + plotH + 18)}\">{Esc(NiceScale.Format(t, xStep))}</text>\n");
        svg.Append("  </g>\n");

        if (XLabel != null)
            svg.Append($"  <text x=\"{F(left + plotW / 2)}\" y=\"{F(top + plotH + 44)}\" font-size=\"{F(LabelFont)}\" fill=\"#333\" text-anchor=\"middle\">{Esc(XLabel)}</text>\n");
        if (YLabel != null)
        {
            double cx = 20, cy = top + plotH / 2;
            svg.Append($"  <text x=\"{F(cx)}\" y=\"{F(cy)}\" font-size=\"{F(LabelFont)}\" fill=\"#333\" text-anchor=\"middle\" transform=\"rotate(-90 {F(cx)} {F(cy)})\">{Esc(YLabel)}</text>\n");
        }

        if (points.Count == 0)
            svg.Append($"  <text x=\"{F(left + plotW / 2)}\" y=\"{F(top + plotH / 2)}\" font-size=\"{F(LabelFont)}\" fill=\"#888\" text-anchor=\"middle\">no data</text>\n");

        // series, clipped to the plot area so an outlier cannot draw over the labels
        // (a few pixels of slack so markers on the frame are not cut in half)
        svg.Append($"  <clipPath id=\"plot-area\"><rect x=\"{F(left - 5)}\" y=\"{F(top - 5)}\" width=\"{F(plotW + 10)}\" height=\"{F(plotH + 10)}\"/></clipPath>\n");
        svg.Append("  <g clip-path=\"url(#plot-area)\" fill=\"none\" stroke-linejoin=\"round\" stroke-linecap=\"round\">\n");
        for (int i = 0; i < series.Count; i++)
        {
            var s = series[i];
            string color = s.Color ?? Palette[i % Palette.Count];
            svg.Append($"    <g class=\"series\" data-name=\"{Esc(s.Name)}\">\n");
            bool smooth = Smoothing > 0 && Smoothing < 1 && s.Y.Count > 2;
            if (smooth)
            {
                AppendLines(svg, s.X, s.Y, color, 1.2, 0.25, Px, Py);
                AppendLines(svg, s.X, Ema(s.Y, Smoothing), color, 2.2, 1, Px, Py);
            }
            else
            {
                AppendLines(svg, s.X, s.Y, color, 2, 1, Px, Py);
                if (s.Y.Count(double.IsFinite) <= 30) AppendMarkers(svg, s.X, s.Y, color, Px, Py);
            }
            svg.Append("    </g>\n");
        }
        svg.Append("  </g>\n");

        if (legend)
        {
            svg.Append($"  <g class=\"legend\" font-size=\"{F(LegendFont)}\" fill=\"#333\">\n");
            for (int i = 0; i < series.Count; i++)
            {
                double x, y;
                if (legendRight) { x = left + plotW + 16; y = top + 6 + i * 22; }
                else
                {
                    int row = legendRows.FindIndex(r => r.Contains(i));
                    x = left + legendRows[row].TakeWhile(j => j != i).Sum(j => entryWidths[j] + 18);
                    y = top + plotH + bottom - 12 - (legendRows.Count - row) * 22;
                }
                string color = series[i].Color ?? Palette[i % Palette.Count];
                svg.Append($"    <line x1=\"{F(x)}\" x2=\"{F(x + 22)}\" y1=\"{F(y + 8)}\" y2=\"{F(y + 8)}\" stroke=\"{color}\" stroke-width=\"3\" stroke-linecap=\"round\"/>\n");
                svg.Append($"    <text x=\"{F(x + 30)}\" y=\"{F(y + 12)}\"><title>{Esc(series[i].Name)}</title>{Esc(legendNames[i])}</text>\n");
            }
            svg.Append("  </g>\n");
        }
        if (Smoothing > 0 && Smoothing < 1 && series.Any(s => s.Y.Count > 2))
            svg.Append($"  <text x=\"{F(left + plotW)}\" y=\"{F(top - 8)}\" font-size=\"11\" fill=\"#888\" text-anchor=\"end\">bold: moving average (EMA {F(Smoothing)}), faint: raw</text>\n");
        svg.Append("</svg>\n");
        return svg.ToString();
    }

    static void AppendLines(StringBuilder svg, IReadOnlyList<double> xs, IReadOnlyList<double> ys, string color, double width, double opacity,
        Func<double, double> px, Func<double, double> py)
    {
        string style = $"stroke=\"{color}\" stroke-width=\"{F(width)}\"" + (opacity < 1 ? $" stroke-opacity=\"{F(opacity)}\"" : "");
        foreach (var run in FiniteRuns(xs, ys))
        {
            if (run.Count == 1)
            {
                var (x, y) = run[0];
                svg.Append($"      <circle cx=\"{F(px(x))}\" cy=\"{F(py(y))}\" r=\"{F(width + 1.5)}\" fill=\"{color}\" stroke=\"none\"" + (opacity < 1 ? $" fill-opacity=\"{F(opacity)}\"" : "") + "/>\n");
                continue;
            }
            svg.Append($"      <polyline {style} points=\"");
            for (int k = 0; k < run.Count; k++)
            {
                if (k > 0) svg.Append(' ');
                svg.Append(F(px(run[k].X))).Append(',').Append(F(py(run[k].Y)));
            }
            svg.Append("\"/>\n");
        }
    }

    static void AppendMarkers(StringBuilder svg, IReadOnlyList<double> xs, IReadOnlyList<double> ys, string color, Func<double, double> px, Func<double, double> py)
    {
        for (int k = 0; k < xs.Count; k++)
            if (double.IsFinite(xs[k]) && double.IsFinite(ys[k]))
                svg.Append($"      <circle cx=\"{F(px(xs[k]))}\" cy=\"{F(py(ys[k]))}\" r=\"2.6\" fill=\"#fff\" stroke=\"{color}\" stroke-width=\"1.5\"/>\n");
    }

    /// <summary>Maximal runs of consecutive finite points: each becomes one polyline.</summary>
    internal static List<List<(double X, double Y)>> FiniteRuns(IReadOnlyList<double> xs, IReadOnlyList<double> ys)
    {
        var runs = new List<List<(double, double)>>();
        List<(double, double)>? current = null;
        for (int k = 0; k < xs.Count; k++)
        {
            if (double.IsFinite(xs[k]) && double.IsFinite(ys[k]))
            {
                current ??= [];
                current.Add((xs[k], ys[k]));
            }
            else if (current != null)
            {
                runs.Add(current);
                current = null;
            }
        }
        if (current != null) runs.Add(current);
        return runs;
    }

    /// <summary>Exponential moving average that skips (and keeps) non-finite values, bias-corrected at the start.</summary>
    internal static double[] Ema(IReadOnlyList<double> ys, double weight)
    {
        var result = new double[ys.Count];
        double acc = 0, norm = 0;
        for (int k = 0; k < ys.Count; k++)
        {
            if (!double.IsFinite(ys[k])) { result[k] = ys[k]; continue; }
            acc = weight * acc + (1 - weight) * ys[k];
            norm = weight * norm + (1 - weight);
            result[k] = acc / norm;
        }
        return result;
    }

    static (double Min, double Max, double Step) XRange(IEnumerable<double> values)
    {
        var list = values.ToList();
        if (list.Count == 0) return (0, 1, 0.2);
        double min = list.Min(), max = list.Max();
        if (max == min) { min -= 1; max += 1; }
        // x stays tight to the data (steps start and end where the run did); ticks fall inside, and
        // whole-number x (steps) never gets fractional ticks.
        double step = NiceScale.Step(min, max, 8);
        if (step < 1 && list.All(x => x == Math.Floor(x))) step = 1;
        return (min, max, step);
    }

    (double Min, double Max, double Step) YRange(IEnumerable<double> values)
    {
        var list = values.ToList();
        if (list.Count == 0) return (0, 1, 0.2);
        double min = list.Min(), max = list.Max();
        if (IncludeZero) { min = Math.Min(min, 0); max = Math.Max(max, 0); }
        if (max == min)
        {
            double pad = min == 0 ? 1 : Math.Abs(min) * 0.1;
            return (min - pad, max + pad, NiceScale.Step(min - pad, max + pad, 5));
        }
        // Ticks at nice numbers inside a 5% margin, so lines at the extremes stay off the frame.
        double step = NiceScale.Step(min, max, 6);
        double margin = (max - min) * 0.05;
        return (min - margin, max + margin, step);
    }

    /// <summary>Greedy left-to-right wrapping of legend entries into rows no wider than <paramref name="width"/>.</summary>
    static List<List<int>> FlowRows(IReadOnlyList<double> widths, double width)
    {
        var rows = new List<List<int>> { new() };
        double used = 0;
        for (int i = 0; i < widths.Count; i++)
        {
            if (rows[^1].Count > 0 && used + widths[i] > width) { rows.Add([]); used = 0; }
            rows[^1].Add(i);
            used += widths[i] + 18;
        }
        return rows;
    }

    static string Shorten(string s, int max) => s.Length <= max ? s : s[..(max / 2 - 1)] + "…" + s[^(max - max / 2)..];

    static string Esc(string s) => SecurityElement.Escape(s) ?? "";

    static string F(double v) => Math.Round(v, 2).ToString("0.##", CultureInfo.InvariantCulture);
}
