using ArcherIlgpu.Kernels;
using ArcherIlgpu.Kernels.Tests.Reference;

namespace ArcherIlgpu.Kernels.Tests;

public class RopeTests
{
    // Each output is a·c − b·s (or b·c + a·s) in float32 with |a|, |b| ≤ 2 and |c|, |s| ≤ 1: two
    // products and a sum round three times (or twice with FMA), at most ~3 ulp of 4 ≈ 1.5e-6.
    const double Atol = 2e-6, Rtol = 1e-6;
    const int MaxT = 300;
    const double Theta = 10000;

    /// <summary>(N, H, Hkv, D): awkward row counts, head sizes 2 (one pair), 8, 12, 34 (odd half: vector tails), 64, 128.</summary>
    static readonly (int N, int H, int Hkv, int D)[] Shapes =
    [
        (1, 1, 1, 2),
        (7, 3, 1, 12),
        (33, 4, 2, 8),
        (127, 2, 2, 34),
        (7, 14, 2, 64),
        (33, 4, 2, 128),
    ];

    public static IEnumerable<object[]> Cases =>
        from device in TestBackends.Names.Select(n => (string)n[0])
        from s in Shapes
        select new object[] { device, s.N, s.H, s.Hkv, s.D };

    static int Width(int H, int Hkv, int D) => (H + 2 * Hkv) * D;

    // ------------------------------------------------------------------ the tables

    /// <summary>
    /// Values worked by hand in float32 (each step rounded to float32 as Hugging Face's torch code does:
    /// exponent 2i/D, theta^exponent, 1/that, pos·inv_freq; then cos/sin of the float32 angle). The
    /// (4095, 1, 128, 1e6) row is where float32 matters: the same angle in double gives cos 0.31392453,
    /// 6.6e-5 away, because 4095·inv_freq rounds to 3299.9238 in float32.
    /// </summary>
    [Theory]
    [InlineData(1, 0, 4, 1e4, 0.5403022766113281, 0.8414709568023682)]
    [InlineData(1, 1, 4, 1e4, 0.9999499917030334, 0.009999833069741726)]
    [InlineData(2, 1, 4, 1e4, 0.9998000264167786, 0.019998665899038315)]
    [InlineData(0, 1, 4, 1e4, 1.0, 0.0)]
    [InlineData(4095, 1, 128, 1e6, 0.3138587772846222, 0.9494696855545044)]
    [InlineData(4095, 17, 128, 1e6, -0.7774500250816345, -0.6289447546005249)]
    [InlineData(4095, 63, 128, 1e6, 0.9999870657920837, 0.005081618204712868)]
    [InlineData(3000, 5, 64, 1e4, 0.15796226263046265, 0.9874451756477356)]
    [InlineData(3000, 31, 64, 1e4, 0.9210389852523804, 0.38947033882141113)]
    public void TableMatchesHandWorkedFloat32Values(int pos, int i, int D, double theta, double expCos, double expSin)
    {
        var (cos, sin) = RopeTable.Create(pos + 1, D, theta);
        // Both sides round the same float32 angle's cos/sin once: equal to within one float32 ulp (6e-8 relative).
        Check.Close([expCos], [cos[pos * (D / 2) + i]], 1e-9, 1.2e-7, $"cos[{pos}, {i}]");
        Check.Close([expSin], [sin[pos * (D / 2) + i]], 1e-9, 1.2e-7, $"sin[{pos}, {i}]");
    }

    [Fact]
    public void TableRejectsOddHeadSizeAndBadTheta()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => RopeTable.Create(8, 7, 1e4));
        Assert.Throws<ArgumentOutOfRangeException>(() => RopeTable.Create(8, 8, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => RopeTable.Create(0, 8, 1e4));
    }

    // Llama 3.2's scaling (factor 32, low 1, high 4, original context 8192) on its table (D 64, theta 5e5).
    static readonly RopeScaling Llama32 = new("llama3", 32, 1, 4, 8192);

    /// <summary>
    /// inv_freq of the llama3 scaling worked by hand with every step rounded to float32 as torch does it on the
    /// CPU (Python: f(x) = struct.unpack('f', struct.pack('f', x)); wavelength f(f(1/inv)·f(2π)); for the blended
    /// band s = f(f(f(f(1/wl)·8192) − 1) / 3), f(f(f(f(1 − s)·inv) / 32) + f(s·inv))). With D 64 and theta 5e5,
    /// pairs 0–14 have wavelengths under 8192/4 (kept), 15–17 between (blended), 18–31 over 8192 (divided by 32).
    /// The blended values are 1 to 3 float32 ulp away from the same formula in double (e.g. pair 16:
    /// 4.2955679655936815e-4 in double), so comparing bit for bit tells the float32 steps apart.
    /// </summary>
    [Theory]
    [InlineData(0, 1.0)]
    [InlineData(14, 0.0032114461064338684)]
    [InlineData(15, 0.0012905480107292533)]
    [InlineData(16, 0.000429556705057621)]
    [InlineData(17, 9.708286233944818e-05)]
    [InlineData(18, 1.9461638657958247e-05)]
    [InlineData(31, 9.418306490260875e-08)]
    public void Llama3InverseFrequenciesMatchHandWorkedFloat32Values(int i, double expected)
    {
        var inv = RopeTable.InverseFrequencies(64, 5e5, Llama32);
        // The same float32 operations in the same order (and the same libm pow on both sides): bitwise equal.
        Assert.Equal((float)expected, inv[i]);
    }

    [Fact]
    public void Llama3ScalingKeepsHighFrequenciesAndDividesLowOnesByTheFactor()
    {
        var plain = RopeTable.InverseFrequencies(64, 5e5);
        var scaled = RopeTable.InverseFrequencies(64, 5e5, Llama32);
        for (int i = 0; i <= 14; i++) Assert.Equal(plain[i], scaled[i]);
        // Division by 32 is exact in float32.
        for (int i = 18; i < 32; i++) Assert.Equal(plain[i] / 32, scaled[i]);
        // The blend is strictly between the two and falls with the wavelength.
        for (int i = 15; i <= 17; i++) Assert.InRange(scaled[i], plain[i] / 32 * 1.0001f, plain[i] * 0.9999f);
        Assert.True(scaled[15] / plain[15] > scaled[16] / plain[16] && scaled[16] / plain[16] > scaled[17] / plain[17]);
    }

    /// <summary>cos/sin of (float)pos · scaled inv_freq at long positions, worked by hand in float32 as above.</summary>
    [Theory]
    [InlineData(100000, 15, -0.9690371155738831, -0.24691513180732727)]
    [InlineData(100000, 16, 0.5177069306373596, -0.8555580377578735)]
    [InlineData(100000, 17, -0.9600799679756165, -0.2797256410121918)]
    [InlineData(5000, 14, -0.9396238923072815, -0.3422088921070099)]
    [InlineData(5000, 20, 0.9990820288658142, 0.042838167399168015)]
    [InlineData(131071, 31, 0.999923825263977, 0.012344354763627052)]
    public void Llama3TableMatchesHandWorkedFloat32Values(int pos, int i, double expCos, double expSin)
    {
        var (cos, sin) = RopeTable.Create(pos + 1, 64, 5e5, Llama32);
        // One float32 rounding of the same angle's cos/sin on both sides, as in the plain table test.
        Check.Close([expCos], [cos[pos * 32 + i]], 1e-9, 1.2e-7, $"cos[{pos}, {i}]");
        Check.Close([expSin], [sin[pos * 32 + i]], 1e-9, 1.2e-7, $"sin[{pos}, {i}]");
    }

    [Fact]
    public void TableRejectsAnInvalidScaling()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => RopeTable.Create(8, 8, 1e4, Llama32 with { Type = "yarn" }));
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => RopeTable.Create(8, 8, 1e4, Llama32 with { HighFreqFactor = 1 }));
        Assert.Contains("high_freq_factor", e.Message);
    }

    // ---------------------------------------------------------------- forward

    [SkippableTheory, MemberData(nameof(Cases))]
    public void ForwardMatchesReferenceAndLeavesValuesUntouched(string device, int N, int H, int Hkv, int D)
    {
        var backend = TestBackends.Get(device);
        var (cos, sin) = RopeTable.Create(MaxT, D, Theta);
        var x = TestData.Floats(1 + N, N * Width(H, Hkv, D), 2);
        var positions = Positions(2 + N, N);
        var expected = RopeReference.Forward(TestData.ToDouble(x), positions, cos, sin, N, H, Hkv, D);

        var buf = backend.Upload<float>(x);
        backend.RopeForward(buf, backend.Upload<int>(positions), backend.Upload<float>(cos), backend.Upload<float>(sin), N, H, Hkv, D);
        var got = backend.ToArray(buf);

        Check.Close(expected, got, Atol, Rtol, "rotated qkv");
        // Value heads are not touched at all: bit-identical.
        int W = Width(H, Hkv, D), v0 = (H + Hkv) * D;
        for (int n = 0; n < N; n++)
            Assert.Equal(x.AsSpan(n * W + v0, Hkv * D).ToArray(), got.AsSpan(n * W + v0, Hkv * D).ToArray());
    }

    /// <summary>The op rotates exactly the N rows of the slice it is given, in place, and nothing around them.</summary>
    [SkippableTheory, MemberData(nameof(TestBackends.Names), MemberType = typeof(TestBackends))]
    public void ForwardWorksInPlaceOnASliceOnly(string device)
    {
        var backend = TestBackends.Get(device);
        const int N = 5, H = 4, Hkv = 2, D = 8, pad = 13;
        int W = Width(H, Hkv, D);
        var (cos, sin) = RopeTable.Create(MaxT, D, Theta);
        var all = TestData.Floats(3, pad + N * W + pad, 2);
        var positions = Positions(4, N);
        var expected = RopeReference.Forward(TestData.ToDouble(all[pad..(pad + N * W)]), positions, cos, sin, N, H, Hkv, D);

        var buf = backend.Upload<float>(all);
        backend.RopeForward(buf.Slice(pad, N * W), backend.Upload<int>(positions), backend.Upload<float>(cos), backend.Upload<float>(sin), N, H, Hkv, D);
        var got = backend.ToArray(buf);

        Check.Close(expected, got[pad..(pad + N * W)], Atol, Rtol, "rotated slice");
        Assert.Equal(all[..pad], got[..pad]);
        Assert.Equal(all[(pad + N * W)..], got[(pad + N * W)..]);
    }

    /// <summary>Position 0 is the identity rotation (cos 1, sin 0): the op returns its input exactly.</summary>
    [SkippableTheory, MemberData(nameof(TestBackends.Names), MemberType = typeof(TestBackends))]
    public void PositionZeroIsTheIdentity(string device)
    {
        var backend = TestBackends.Get(device);
        const int N = 3, H = 3, Hkv = 1, D = 12;
        var (cos, sin) = RopeTable.Create(4, D, Theta);
        var x = TestData.Floats(5, N * Width(H, Hkv, D));
        var buf = backend.Upload<float>(x);
        backend.RopeForward(buf, backend.Upload<int>(new int[N]), backend.Upload<float>(cos), backend.Upload<float>(sin), N, H, Hkv, D);
        Assert.Equal(x, backend.ToArray(buf));
    }

    // ---------------------------------------------------------------- backward

    [Theory]
    [InlineData(3, 2, 1, 4)]
    [InlineData(2, 1, 1, 6)]
    public void ReferenceBackwardMatchesFiniteDifferences(int N, int H, int Hkv, int D)
    {
        var (cos, sin) = RopeTable.Create(MaxT, D, Theta);
        var positions = Positions(6, N);
        var x = TestData.ToDouble(TestData.Floats(7, N * Width(H, Hkv, D)));
        var weights = TestData.ToDouble(TestData.Floats(8, N * Width(H, Hkv, D)));
        double Loss(double[] v) => FiniteDifference.Dot(weights, RopeReference.Forward(v, positions, cos, sin, N, H, Hkv, D));
        var numeric = FiniteDifference.Gradient(Loss, x);
        var analytic = RopeReference.Backward(weights, positions, cos, sin, N, H, Hkv, D);
        // The loss is linear in x: central differences err only by rounding, ~1e-16/h = 1e-11.
        Check.Close(numeric, analytic, 1e-8, 1e-7, "reference dQkv vs finite differences");
    }

    [SkippableTheory, MemberData(nameof(Cases))]
    public void BackwardMatchesReference(string device, int N, int H, int Hkv, int D)
    {
        var backend = TestBackends.Get(device);
        var (cos, sin) = RopeTable.Create(MaxT, D, Theta);
        var dOut = TestData.Floats(9 + N, N * Width(H, Hkv, D), 2);
        var positions = Positions(10 + N, N);
        var expected = RopeReference.Backward(TestData.ToDouble(dOut), positions, cos, sin, N, H, Hkv, D);

        var buf = backend.Upload<float>(dOut);
        backend.RopeBackward(buf, backend.Upload<int>(positions), backend.Upload<float>(cos), backend.Upload<float>(sin), N, H, Hkv, D);
        Check.Close(expected, backend.ToArray(buf), Atol, Rtol, "dQkv");
    }

    /// <summary>The backward is the inverse rotation: backward after forward gives the input back.</summary>
    [SkippableTheory, MemberData(nameof(TestBackends.Names), MemberType = typeof(TestBackends))]
    public void BackwardUndoesForward(string device)
    {
        var backend = TestBackends.Get(device);
        const int N = 9, H = 4, Hkv = 2, D = 24;
        var (cos, sin) = RopeTable.Create(MaxT, D, Theta);
        var x = TestData.Floats(11, N * Width(H, Hkv, D), 2);
        var p = backend.Upload<int>(Positions(12, N));
        var c = backend.Upload<float>(cos); var s = backend.Upload<float>(sin);
        var buf = backend.Upload<float>(x);
        backend.RopeForward(buf, p, c, s, N, H, Hkv, D);
        backend.RopeBackward(buf, p, c, s, N, H, Hkv, D);
        // Rotating by θ then −θ in float32 with a float32 cos² + sin² ≠ 1 by up to ~1e-7: error ~ a few ulp of 2.
        Check.Close(TestData.ToDouble(x), backend.ToArray(buf), 2 * Atol, Rtol, "backward(forward(x))");
    }

    // ---------------------------------------------------------------- errors

    [SkippableTheory, MemberData(nameof(TestBackends.Names), MemberType = typeof(TestBackends))]
    public void OddHeadSizeAndShortTablesThrow(string device)
    {
        var backend = TestBackends.Get(device);
        var x = backend.Allocate<float>(4 * 3 * 3).All;
        var p = backend.Upload<int>([0]);
        var (cos, sin) = RopeTable.Create(4, 4, Theta);
        var c = backend.Upload<float>(cos); var s = backend.Upload<float>(sin);
        Assert.Throws<ArgumentException>(() => backend.RopeForward(x, p, c, s, 1, 1, 1, 3));
        Assert.Throws<ArgumentException>(() => backend.RopeForward(x, backend.Upload<int>(new int[4]), c, s, 4, 1, 1, 4));   // qkv holds 3 rows, not 4
        Assert.Throws<ArgumentException>(() => backend.RopeBackward(x, p, c.Slice(0, 7), s, 1, 1, 1, 4));
    }

    [Fact]
    public void PositionOutsideTheTablesThrowsOnCpu()
    {
        var backend = TestBackends.Get("cpu");
        var (cos, sin) = RopeTable.Create(4, 4, Theta);
        var x = backend.Allocate<float>(2 * 3 * 4).All;
        var e = Assert.Throws<ArgumentOutOfRangeException>(() =>
            backend.RopeForward(x, backend.Upload<int>([1, 4]), backend.Upload<float>(cos), backend.Upload<float>(sin), 2, 1, 1, 4));
        Assert.Contains("positions[1] = 4", e.Message);
    }

    /// <summary>Arbitrary positions per row, as in packed or right-padded batches: not 0..N-1.</summary>
    static int[] Positions(int seed, int N) => TestData.Ints(seed, N, MaxT);
}
