using MathNet.Numerics.Distributions;

namespace ArcherStudy;

/// <summary>A two-sided test: the estimate (difference), its statistic, degrees of freedom where they apply, and the p-value.</summary>
public sealed record TestResult(string Test, double Difference, double Statistic, double DegreesOfFreedom, double PValue,
    double CiLow = double.NaN, double CiHigh = double.NaN);

/// <summary>
/// The tests behind the significance statements. All are two-sided and answer "could a difference this
/// large arise if the two methods were equally good?" under different models of the noise:
/// <list type="bullet">
/// <item>paired t over seeds: run i of both methods shares seed i (same training stream, same first rollout),
/// so the per-seed differences are the unit; df = seeds − 1 (2 with 3 seeds: little power, wide intervals);</item>
/// <item>Welch t over seeds: the same numbers treated as unpaired, unequal variances;</item>
/// <item>paired bootstrap over held-out problems: each problem's pass rate (averaged over seeds and samples)
/// for both methods, problems resampled with replacement. It measures how sure we are about the difference on
/// the problem distribution for these particular trained runs; seed-to-seed variation of training enters only
/// through the average over the few seeds, so it understates the uncertainty about "the method".</item>
/// </list>
/// </summary>
public static class Statistics
{
    public static double Mean(IReadOnlyList<double> x) => x.Count == 0 ? double.NaN : x.Average();

    /// <summary>Sample standard deviation (n − 1); NaN for fewer than two values.</summary>
    public static double StdDev(IReadOnlyList<double> x)
    {
        if (x.Count < 2) return double.NaN;
        double m = x.Average();
        return Math.Sqrt(x.Sum(v => (v - m) * (v - m)) / (x.Count - 1));
    }

    static double TwoSidedT(double t, double df) =>
        double.IsNaN(t) || !(df > 0) ? double.NaN
        : double.IsInfinity(t) ? 0.0
        : 2 * (1 - StudentT.CDF(0, 1, df, Math.Abs(t)));

    /// <summary>Paired t-test of a − b; NaN p when there are fewer than two pairs, 0 or 1 when every difference is identical.</summary>
    public static TestResult PairedT(IReadOnlyList<double> a, IReadOnlyList<double> b)
    {
        if (a.Count != b.Count) throw new ArgumentException($"paired test needs equal counts, got {a.Count} and {b.Count}");
        var d = a.Zip(b, (x, y) => x - y).ToArray();
        double mean = Mean(d), sd = StdDev(d);
        int n = d.Length;
        double t = sd > 0 ? mean / (sd / Math.Sqrt(n)) : mean == 0 ? 0 : Math.Sign(mean) * double.PositiveInfinity;
        double df = n - 1;
        double p = n < 2 ? double.NaN : sd > 0 ? TwoSidedT(t, df) : mean == 0 ? 1.0 : 0.0;
        double half = n >= 2 && sd > 0 ? StudentT.InvCDF(0, 1, df, 0.975) * sd / Math.Sqrt(n) : double.NaN;
        return new TestResult("paired t (seeds)", mean, t, df, p, mean - half, mean + half);
    }

    /// <summary>Welch's unequal-variance t-test of mean(a) − mean(b) with the Welch–Satterthwaite df.</summary>
    public static TestResult WelchT(IReadOnlyList<double> a, IReadOnlyList<double> b)
    {
        double ma = Mean(a), mb = Mean(b), va = Square(StdDev(a)) / a.Count, vb = Square(StdDev(b)) / b.Count;
        double se = Math.Sqrt(va + vb);
        double diff = ma - mb;
        if (!(se > 0)) return new TestResult("Welch t (seeds)", diff, double.NaN, double.NaN, double.NaN);
        double df = (va + vb) * (va + vb) / (va * va / (a.Count - 1) + vb * vb / (b.Count - 1));
        double t = diff / se;
        double half = StudentT.InvCDF(0, 1, df, 0.975) * se;
        return new TestResult("Welch t (seeds)", diff, t, df, TwoSidedT(t, df), diff - half, diff + half);
    }

    static double Square(double x) => x * x;

    /// <summary>
    /// Paired bootstrap over problems of mean(a) − mean(b), where a[j] and b[j] are the two methods' pass rates on
    /// problem j. p = twice the smaller tail share of resampled differences at or beyond 0 (at least 1/resamples);
    /// the interval is the 2.5–97.5 percentile one. Deterministic given <paramref name="seed"/>.
    /// </summary>
    public static TestResult PairedBootstrap(IReadOnlyList<double> a, IReadOnlyList<double> b, int resamples, int seed = 12345)
    {
        if (a.Count != b.Count || a.Count == 0) throw new ArgumentException("bootstrap needs two equal, non-empty lists");
        int n = a.Count;
        var d = a.Zip(b, (x, y) => x - y).ToArray();
        double observed = d.Average();
        var rng = new Random(seed);
        var means = new double[resamples];
        for (int r = 0; r < resamples; r++)
        {
            double s = 0;
            for (int i = 0; i < n; i++) s += d[rng.Next(n)];
            means[r] = s / n;
        }
        Array.Sort(means);
        double below = means.Count(m => m <= 0) / (double)resamples, above = means.Count(m => m >= 0) / (double)resamples;
        double p = Math.Clamp(2 * Math.Min(below, above), 1.0 / resamples, 1.0);
        double sd = StdDev(means);
        return new TestResult("paired bootstrap (problems)", observed, sd > 0 ? observed / sd : double.NaN, double.NaN, p,
            Percentile(means, 0.025), Percentile(means, 0.975));
    }

    /// <summary>Linear-interpolation percentile of sorted values.</summary>
    public static double Percentile(double[] sorted, double q)
    {
        double pos = q * (sorted.Length - 1);
        int lo = (int)Math.Floor(pos), hi = (int)Math.Ceiling(pos);
        return sorted[lo] + (pos - lo) * (sorted[hi] - sorted[lo]);
    }
}
