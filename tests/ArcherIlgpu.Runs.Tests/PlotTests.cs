using System.Globalization;
using System.Xml.Linq;

namespace ArcherIlgpu.Runs.Tests;

public class NiceScaleTests
{
    [Theory]
    [InlineData(0, 1, 6, 0.2)]
    [InlineData(0, 100, 6, 20)]
    [InlineData(0, 97, 8, 20)]      // raw 13.9 → 20
    [InlineData(0.31, 0.47, 6, 0.05)] // raw 0.032 → 0.05
    [InlineData(-3, 7, 6, 2)]       // raw 2 is already nice
    [InlineData(0, 11, 6, 2.5)]     // raw 2.2 → 2.5
    public void StepIsANiceNumber(double min, double max, int ticks, double expected)
    {
        double step = NiceScale.Step(min, max, ticks);
        Assert.Equal(expected, step, 12);
    }

    [Fact]
    public void TicksAreInsideAndFormattedWithTheNeededDecimals()
    {
        Assert.Equal([0.0, 0.2, 0.4, 0.6, 0.8, 1.0], NiceScale.Ticks(-0.04, 1.04, 0.2).Select(t => Math.Round(t, 10)));
        Assert.Equal("0.25", NiceScale.Format(0.25, 0.25));
        Assert.Equal("0.40", NiceScale.Format(0.4, 0.05));
        Assert.Equal("120", NiceScale.Format(120, 20));
        Assert.Equal("7.5", NiceScale.Format(7.5, 2.5));
        Assert.Equal("15k", NiceScale.Format(15000, 5000));
        Assert.Equal("0", NiceScale.Format(-0.0, 0.1));
    }
}

public class SvgPlotTests
{
    static XDocument Parse(string svg) => XDocument.Parse(svg); // throws if not well-formed
    static readonly XNamespace Svg = "http://www.w3.org/2000/svg";

    [Fact]
    public void IsWellFormedWithOnePolylinePerSeriesAndLegend()
    {
        var plot = new SvgPlot { Title = "Reward <mean> & co", XLabel = "step", YLabel = "reward" };
        plot.AddSeries("archer", [1, 2, 3, 4], [0.1, 0.3, 0.2, 0.5]);
        plot.AddSeries("grpo & \"friends\"", [1, 2, 3, 4], [0.1, 0.15, 0.2, 0.25]);
        var doc = Parse(plot.ToSvg());
        Assert.Equal(Svg + "svg", doc.Root!.Name);
        var groups = doc.Descendants(Svg + "g").Where(g => (string?)g.Attribute("class") == "series").ToList();
        Assert.Equal(["archer", "grpo & \"friends\""], groups.Select(g => (string)g.Attribute("data-name")!));
        Assert.All(groups, g => Assert.Single(g.Elements(Svg + "polyline")));
        Assert.Equal(4, groups[0].Element(Svg + "polyline")!.Attribute("points")!.Value.Split(' ').Length);
        var texts = doc.Descendants(Svg + "text").Select(t => t.Value).ToList();
        Assert.Contains("Reward <mean> & co", texts);
        Assert.Contains(texts, t => t.Contains("grpo & \"friends\""));
        Assert.Contains("step", texts);
        // the two series have different colours
        var colors = groups.Select(g => (string)g.Element(Svg + "polyline")!.Attribute("stroke")!).ToList();
        Assert.NotEqual(colors[0], colors[1]);
    }

    [Fact]
    public void NaNBreaksTheLineAndIsolatedPointsBecomeDots()
    {
        var plot = new SvgPlot();
        plot.AddSeries("x", [1, 2, 3, 4, 5, 6, 7], [1, 2, double.NaN, 3, double.PositiveInfinity, 4, 5]);
        var doc = Parse(plot.ToSvg());
        var series = doc.Descendants(Svg + "g").Single(g => (string?)g.Attribute("class") == "series");
        var lines = series.Elements(Svg + "polyline").ToList();
        Assert.Equal(2, lines.Count);                                        // [1,2] and [6,7]
        Assert.Equal(2, lines[0].Attribute("points")!.Value.Split(' ').Length);
        Assert.DoesNotContain("NaN", doc.ToString());
        Assert.DoesNotContain("Infinity", doc.ToString());
        // step 4 sits alone between two gaps: a filled dot with the line's colour
        var dots = series.Elements(Svg + "circle").Where(c => (string?)c.Attribute("fill") != "#fff").ToList();
        Assert.Single(dots);
    }

    [Fact]
    public void SinglePointAndEmptyAndConstantSeriesStillDraw()
    {
        var one = new SvgPlot { Title = "one" };
        one.AddSeries("only", [5], [0.7]);
        var doc = Parse(one.ToSvg());
        Assert.Contains(doc.Descendants(Svg + "circle"), c => double.IsFinite(double.Parse((string)c.Attribute("cy")!, CultureInfo.InvariantCulture)));
        Assert.DoesNotContain("NaN", doc.ToString());

        var empty = new SvgPlot { Title = "nothing" };
        empty.AddSeries("none", [1, 2], [double.NaN, double.NaN]);
        Assert.Contains("no data", Parse(empty.ToSvg()).Descendants(Svg + "text").Select(t => t.Value));

        var flat = new SvgPlot();
        flat.AddSeries("flat", [1, 2, 3], [2, 2, 2]);
        Assert.DoesNotContain("NaN", flat.ToSvg());
    }

    [Fact]
    public void SmoothingDrawsRawFaintlyAndTheAverageOnTop()
    {
        var plot = new SvgPlot { Smoothing = 0.8 };
        var xs = Enumerable.Range(0, 100).Select(i => (double)i).ToArray();
        plot.AddSeries("noisy", xs, xs.Select(x => Math.Sin(x) + x / 50).ToArray());
        var lines = Parse(plot.ToSvg()).Descendants(Svg + "polyline").ToList();
        Assert.Equal(2, lines.Count);
        Assert.NotNull(lines[0].Attribute("stroke-opacity"));
        Assert.Null(lines[1].Attribute("stroke-opacity"));
    }

    [Fact]
    public void EmaIsBiasCorrectedAndKeepsGaps()
    {
        var ema = SvgPlot.Ema([2, double.NaN, 4], 0.5);
        Assert.Equal(2, ema[0]);                      // first value: (0.5·2)/(0.5) = 2
        Assert.True(double.IsNaN(ema[1]));
        Assert.Equal((0.25 * 2 + 0.5 * 4) / 0.75, ema[2], 12); // acc = .5(.5·2)+.5·4, norm = .75
    }
}

public class SmoothingChoiceTests
{
    [Fact]
    public void OnlyLongNoisySeriesAreSmoothed()
    {
        var xs = Enumerable.Range(0, 100).Select(i => (double)i).ToArray();
        var trend = new PlotSeries("kl", xs, xs.Select(x => 0.001 * x).ToArray());           // mean |Δ|/range = 1/99
        var noisy = new PlotSeries("reward", xs, xs.Select(x => x % 2 == 0 ? 0.2 : 0.6).ToArray()); // = 1
        var shortNoisy = new PlotSeries("r", xs[..20], noisy.Y.Take(20).ToArray());
        Assert.False(RunPlots.NeedsSmoothing([trend]));
        Assert.True(RunPlots.NeedsSmoothing([trend, noisy]));
        Assert.False(RunPlots.NeedsSmoothing([shortNoisy]));
    }

    [Fact]
    public void LongLegendNamesMoveBelowThePlot()
    {
        static double LegendX(SvgPlot p) => XDocument.Parse(p.ToSvg()).Descendants()
            .Where(e => (string?)e.Attribute("class") == "legend").Elements().First().Attribute("x1")!.Value is var v ? double.Parse(v, CultureInfo.InvariantCulture) : 0;
        var shortNames = new SvgPlot();
        shortNames.AddSeries("a", [1, 2], [1, 2]).AddSeries("b", [1, 2], [2, 1]);
        var longNames = new SvgPlot();
        longNames.AddSeries("2026-11-22_2315_archer-qwen-countdown", [1, 2], [1, 2]).AddSeries("2026-11-22_2330_grpo-qwen-countdown", [1, 2], [2, 1]);
        Assert.True(LegendX(shortNames) > shortNames.Width * 0.7);  // right of the plot
        Assert.True(LegendX(longNames) < longNames.Width * 0.3);    // below it, from the left
    }
}

public class RunPlotsTests : IDisposable
{
    readonly string root = Directory.CreateTempSubdirectory("runs-plots-").FullName;
    public void Dispose() => Directory.Delete(root, recursive: true);

    [Fact]
    public void WritesOneChartPerPresentGroup()
    {
        var run = RunFolder.Create(root, "plots", new DateTime(2026, 1, 1));
        using (var m = run.OpenMetrics())
            for (int s = 1; s <= 5; s++)
                m.Write(s, new Dictionary<string, double>
                {
                    ["loss"] = 1.0 / s, ["reward/mean"] = s / 10.0,
                    ["entropy/all"] = 1, ["entropy/high"] = 2, ["entropy/low"] = 0.5,
                    ["clip/high/upper"] = 0.01 * s, ["clip/low/lower"] = 0.02,
                    ["actor/kl_loss"] = 0.001 * s,
                });
        var files = RunPlots.Write(run.Path).Select(Path.GetFileName).ToList();
        Assert.Equal(["loss.svg", "reward.svg", "entropy.svg", "clip.svg", "kl.svg"], files); // no response length logged
        var entropy = XDocument.Load(Path.Combine(run.PlotsDir, "entropy.svg"));
        var names = entropy.Descendants().Where(e => (string?)e.Attribute("class") == "series").Select(e => (string)e.Attribute("data-name")!);
        Assert.Equal(["all", "high", "low"], names); // the common "entropy/" prefix is dropped from labels
    }
}
