using ArcherIlgpu.Kernels.Tests.Reference;

namespace ArcherIlgpu.Kernels.Tests;

public class ElementwiseTests
{
    /// <summary>Awkward sizes, one spanning several CPU tiles of 512, and on cpu one split over threads (> 64K).</summary>
    static IEnumerable<int> Sizes(string device)
        => device == "cpu" ? [.. Awkward.Sizes, 1300, 100003] : [.. Awkward.Sizes, 1300];

    // Inputs in [-6, 6]: both tails of GELU (tanh saturated) and the curved middle.
    const double InputScale = 6.0;

    // GELU error budget: tanh from TensorPrimitives (cpu, ~1 ulp) or as 1 - 2/(exp(2u)+1) (GPU; under
    // CUDA fast math exp is ex2.approx, ~1e-6 relative at |2u| ~ 20), times 0.5 |x| <= 3, plus a few
    // float roundings of O(1) values: under 2e-6 absolute; 5e-6 keeps a margin.
    const double GeluAtol = 5e-6;

    [SkippableTheory, MemberData(nameof(TestBackends.Names), MemberType = typeof(TestBackends))]
    public void GeluForwardMatchesReference(string device)
    {
        var backend = TestBackends.Get(device);
        foreach (int n in Sizes(device))
        {
            var x = TestData.Floats(n, n, InputScale);
            var y = backend.Allocate<float>(n).All;
            backend.GeluForward(backend.Upload<float>(x), n, y);
            Check.Close(ElementwiseReference.GeluForward(TestData.ToDouble(x)), backend.ToArray(y), GeluAtol, 1e-6, $"{device} gelu n={n}");
        }
    }

    [Fact]
    public void GeluReferenceMatchesKnownValuesAndFiniteDifferences()
    {
        // Hand values: gelu(0) = 0; gelu(1) = 0.5 (1 + tanh(sqrt(2/pi) 1.044715)) = 0.5 (1 + tanh(0.8335582)) = 0.8411920;
        // gelu(-1) = gelu(1) - 1 (tanh is odd) = -0.1588080.
        Assert.Equal(0.0, ElementwiseReference.Gelu(0.0));
        Assert.Equal(0.841192, ElementwiseReference.Gelu(1.0), 6);
        Assert.Equal(-0.158808, ElementwiseReference.Gelu(-1.0), 6);
        var x = TestData.ToDouble(TestData.Floats(3, 40, InputScale));
        var dy = TestData.ToDouble(TestData.Floats(4, 40));
        var fd = FiniteDifference.Gradient(xx => FiniteDifference.Dot(dy, ElementwiseReference.GeluForward(xx)), x);
        // Central differences, h = 1e-5, smooth function with O(1) third derivative: error ~1e-10.
        Check.Close(fd, ElementwiseReference.GeluBackward(dy, x), 1e-8, 1e-7, "gelu backward vs finite differences");
    }

    [SkippableTheory, MemberData(nameof(TestBackends.Names), MemberType = typeof(TestBackends))]
    public void GeluBackwardMatchesReferenceAndOverwrites(string device)
    {
        var backend = TestBackends.Get(device);
        foreach (int n in Sizes(device))
        {
            var x = TestData.Floats(n + 1, n, InputScale); var dy = TestData.Floats(n + 2, n);
            var xBuf = backend.Upload<float>(x); var dyBuf = backend.Upload<float>(dy);
            // Stale values in dInput must not leak through: it is OVERWRITTEN.
            var dx = backend.Upload<float>(Enumerable.Repeat(1000f, n).ToArray());
            var expected = ElementwiseReference.GeluBackward(TestData.ToDouble(dy), TestData.ToDouble(x));
            backend.GeluBackward(dyBuf, xBuf, n, dx);
            var once = backend.ToArray(dx);
            // Same budget as the forward: the derivative has the same tanh error times factors <= 1.2.
            Check.Close(expected, once, GeluAtol, 1e-6, $"{device} gelu backward n={n}");
            backend.GeluBackward(dyBuf, xBuf, n, dx);
            Assert.Equal(once, backend.ToArray(dx));
        }
    }

    [SkippableTheory, MemberData(nameof(TestBackends.Names), MemberType = typeof(TestBackends))]
    public void ResidualForwardAddsAndBackwardAccumulatesIntoBoth(string device)
    {
        var backend = TestBackends.Get(device);
        foreach (int n in Sizes(device))
        {
            var a = TestData.Floats(n, n); var b = TestData.Floats(n + 1, n); var dy = TestData.Floats(n + 2, n);
            var dA0 = TestData.Floats(n + 3, n); var dB0 = TestData.Floats(n + 4, n);
            var y = backend.Allocate<float>(n).All;
            backend.ResidualForward(backend.Upload<float>(a), backend.Upload<float>(b), n, y);
            // One rounded float addition of values |x| <= 1: within half an ulp of 2, 1.2e-7.
            Check.Close(ElementwiseReference.ResidualForward(TestData.ToDouble(a), TestData.ToDouble(b)), backend.ToArray(y),
                1.2e-7, 0, $"{device} residual n={n}");

            var dA = backend.Upload<float>(dA0); var dB = backend.Upload<float>(dB0); var dyBuf = backend.Upload<float>(dy);
            backend.ResidualBackward(dyBuf, n, dA, dB);
            Check.Close(ElementwiseReference.ResidualForward(TestData.ToDouble(dA0), TestData.ToDouble(dy)), backend.ToArray(dA), 1.2e-7, 0, $"{device} dA");
            Check.Close(ElementwiseReference.ResidualForward(TestData.ToDouble(dB0), TestData.ToDouble(dy)), backend.ToArray(dB), 1.2e-7, 0, $"{device} dB");
            // Both are the residual stream and ACCUMULATE: a second call adds dOutput again (two roundings).
            backend.ResidualBackward(dyBuf, n, dA, dB);
            var twice = Array.ConvertAll(dy, v => 2.0 * v);
            Check.Close(ElementwiseReference.ResidualForward(TestData.ToDouble(dA0), twice), backend.ToArray(dA), 4e-7, 0, $"{device} dA twice");
            Check.Close(ElementwiseReference.ResidualForward(TestData.ToDouble(dB0), twice), backend.ToArray(dB), 4e-7, 0, $"{device} dB twice");
        }
    }
}
