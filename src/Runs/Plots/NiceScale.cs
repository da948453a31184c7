using System.Globalization;

namespace ArcherIlgpu.Runs;

/// <summary>Axis ticks at "nice" numbers: 1, 2, 2.5 or 5 times a power of ten.</summary>
public static class NiceScale
{
    /// <summary>A nice tick spacing giving about <paramref name="targetTicks"/> ticks over [min, max].</summary>
    public static double Step(double min, double max, int targetTicks = 6)
    {
        double range = max - min;
        if (!(range > 0) || !double.IsFinite(range)) return 1;
        double raw = range / Math.Max(1, targetTicks - 1);
        double magnitude = Math.Pow(10, Math.Floor(Math.Log10(raw)));
        double fraction = raw / magnitude;
        double nice = fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 2.5 ? 2.5 : fraction <= 5 ? 5 : 10;
        return nice * magnitude;
    }

    /// <summary>Tick values: multiples of <paramref name="step"/> inside [min, max] (with a tolerance for rounding).</summary>
    public static IReadOnlyList<double> Ticks(double min, double max, double step)
    {
        var ticks = new List<double>();
        if (!(step > 0) || !double.IsFinite(min) || !double.IsFinite(max)) return ticks;
        double eps = step * 1e-9;
        double first = Math.Ceiling((min - eps) / step) * step;
        for (int i = 0; i < 1000; i++)
        {
            double t = first + i * step;
            if (t > max + eps) break;
            ticks.Add(Math.Abs(t) < eps ? 0 : t); // no "-0"
        }
        return ticks;
    }

    /// <summary>[min, max] widened outward to multiples of the nice step.</summary>
    public static (double Min, double Max, double Step) Expand(double min, double max, int targetTicks = 6)
    {
        double step = Step(min, max, targetTicks);
        return (Math.Floor(min / step + 1e-9) * step, Math.Ceiling(max / step - 1e-9) * step, step);
    }

    /// <summary>A tick label with just the decimals the step needs; large and tiny values compactly.</summary>
    public static string Format(double value, double step)
    {
        var inv = CultureInfo.InvariantCulture;
        if (value == 0) return "0";
        double abs = Math.Abs(value);
        if (abs >= 1e6 || step >= 1e6) return (value / 1e6).ToString("0.##", inv) + "M";
        if (abs >= 1e4 && step >= 1000) return (value / 1e3).ToString("0.##", inv) + "k";
        if (step < 1e-3) return value.ToString("0.##e+0", inv);
        int decimals = Math.Max(0, (int)Math.Ceiling(-Math.Log10(step) - 1e-9));
        if (step * Math.Pow(10, decimals) % 1 > 1e-6) decimals++; // 2.5, 0.25 need one more digit
        return value.ToString("F" + Math.Min(decimals, 6), inv);
    }
}
