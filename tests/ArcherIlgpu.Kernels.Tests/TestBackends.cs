using ArcherIlgpu.Kernels;

// ILGPU accelerators are driven from one thread at a time, and the machine has 2 cores anyway.
[assembly: Xunit.CollectionBehavior(DisableTestParallelization = true)]

namespace ArcherIlgpu.Kernels.Tests;

/// <summary>
/// One instance of each backend per test process (creating an ILGPU context and compiling kernels is
/// the expensive part). Tests take a backend name from <see cref="Names"/>; <c>cuda</c> is skipped
/// where there is no NVIDIA GPU.
/// </summary>
public static class TestBackends
{
    /// <summary>Every backend an op test runs on: [SkippableTheory, MemberData(nameof(TestBackends.Names), MemberType = typeof(TestBackends))].</summary>
    public static IEnumerable<object[]> Names => ArcherIlgpu.Tests.Shared.SharedBackends.Names;

    /// <summary>The backend of that name, or a skip if this machine does not have it.</summary>
    public static Backend Get(string name) => ArcherIlgpu.Tests.Shared.SharedBackends.Get(name);
}

/// <summary>Sizes that are not multiples of any tile or warp: 1, 7, 33, 127.</summary>
public static class Awkward
{
    public static readonly int[] Sizes = [1, 7, 33, 127];
}

/// <summary>Deterministic test data.</summary>
public static class TestData
{
    public static float[] Floats(int seed, long n, double scale = 1.0)
    {
        var rng = new Random(seed);
        var x = new float[n];
        for (long i = 0; i < n; i++) x[i] = (float)((rng.NextDouble() * 2 - 1) * scale);
        return x;
    }

    public static int[] Ints(int seed, long n, int maxExclusive)
    {
        var rng = new Random(seed);
        var x = new int[n];
        for (long i = 0; i < n; i++) x[i] = rng.Next(maxExclusive);
        return x;
    }

    public static double[] ToDouble(float[] x) => Array.ConvertAll(x, v => (double)v);
}

/// <summary>Comparisons with tolerances and messages that say where the first mismatch is.</summary>
public static class Check
{
    /// <summary>|actual - expected| &lt;= atol + rtol * |expected| elementwise.</summary>
    public static void Close(ReadOnlySpan<double> expected, ReadOnlySpan<float> actual, double atol, double rtol, string what)
    {
        Assert.True(expected.Length == actual.Length, $"{what}: length {actual.Length}, expected {expected.Length}");
        int bad = 0; int first = -1; double worst = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            double err = Math.Abs(actual[i] - expected[i]);
            double allowed = atol + rtol * Math.Abs(expected[i]);
            if (!(err <= allowed))
            {
                bad++;
                if (first < 0) first = i;
                worst = Math.Max(worst, double.IsNaN(err) ? double.PositiveInfinity : err);
            }
        }
        Assert.True(bad == 0, $"{what}: {bad} of {expected.Length} elements out of tolerance (atol {atol}, rtol {rtol}); " +
            $"first at {first}: got {(first >= 0 ? actual[first] : 0)}, expected {(first >= 0 ? expected[first] : 0)}; worst error {worst}");
    }

    public static void Close(ReadOnlySpan<double> expected, ReadOnlySpan<double> actual, double atol, double rtol, string what)
    {
        var f = new float[actual.Length];
        for (int i = 0; i < f.Length; i++) f[i] = (float)actual[i];
        Assert.True(expected.Length == actual.Length, $"{what}: length mismatch");
        int bad = 0; int first = -1;
        for (int i = 0; i < expected.Length; i++)
            if (!(Math.Abs(actual[i] - expected[i]) <= atol + rtol * Math.Abs(expected[i]))) { bad++; if (first < 0) first = i; }
        Assert.True(bad == 0, $"{what}: {bad} of {expected.Length} out of tolerance (atol {atol}, rtol {rtol}); first at {first}: got {(first >= 0 ? actual[first] : 0)}, expected {(first >= 0 ? expected[first] : 0)}");
    }
}

/// <summary>Central finite differences of a float64 function, the independent check of every backward.</summary>
public static class FiniteDifference
{
    /// <summary>d f / d x_i for every i, by (f(x + h e_i) - f(x - h e_i)) / 2h.</summary>
    public static double[] Gradient(Func<double[], double> f, double[] x, double h = 1e-5)
    {
        var g = new double[x.Length];
        var xp = (double[])x.Clone();
        for (int i = 0; i < x.Length; i++)
        {
            double orig = xp[i];
            xp[i] = orig + h; double fp = f(xp);
            xp[i] = orig - h; double fm = f(xp);
            xp[i] = orig;
            g[i] = (fp - fm) / (2 * h);
        }
        return g;
    }

    /// <summary>A fixed random projection w·y turns a vector output into the scalar loss finite differences need.</summary>
    public static double Dot(double[] a, double[] b)
    {
        double s = 0;
        for (int i = 0; i < a.Length; i++) s += a[i] * b[i];
        return s;
    }
}
