using ArcherIlgpu.Kernels;

namespace ArcherIlgpu.Rl.Tests.Device;

/// <summary>
/// Tests that drive backends share one collection: ILGPU accelerators are driven from one thread at a
/// time, and each backend is created once per test process (context creation and kernel compiles are
/// the expensive part). A minimal copy of the kernel tests' TestBackends.
/// </summary>
[CollectionDefinition(Name)]
public sealed class DeviceCollection
{
    public const string Name = "device backends";
}

public static class TestBackends
{
    /// <summary>Every backend a device test runs on; cuda is skipped where there is no NVIDIA GPU.</summary>
    public static IEnumerable<object[]> Names => ArcherIlgpu.Tests.Shared.SharedBackends.Names;

    public static Backend Get(string name) => ArcherIlgpu.Tests.Shared.SharedBackends.Get(name);
}

public static class Close
{
    /// <summary>|actual − expected| ≤ atol + rtol·|expected| elementwise, NaN only where NaN is expected.</summary>
    public static void All(ReadOnlySpan<double> expected, ReadOnlySpan<float> actual, double atol, double rtol, string what)
    {
        Assert.True(expected.Length == actual.Length, $"{what}: length {actual.Length}, expected {expected.Length}");
        for (int i = 0; i < expected.Length; i++)
        {
            if (double.IsNaN(expected[i]) && float.IsNaN(actual[i])) continue;
            double err = Math.Abs(actual[i] - expected[i]);
            Assert.True(err <= atol + rtol * Math.Abs(expected[i]),
                $"{what}[{i}]: got {actual[i]:R}, expected {expected[i]:R} (atol {atol}, rtol {rtol})");
        }
    }

    /// <summary>One value; NaN matches only NaN.</summary>
    public static void One(double expected, double actual, double atol, double rtol, string what)
    {
        if (double.IsNaN(expected) || double.IsNaN(actual))
        {
            Assert.True(double.IsNaN(expected) && double.IsNaN(actual), $"{what}: got {actual:R}, expected {expected:R}");
            return;
        }
        double err = Math.Abs(actual - expected);
        Assert.True(err <= atol + rtol * Math.Abs(expected), $"{what}: got {actual:R}, expected {expected:R} (atol {atol}, rtol {rtol})");
    }
}
