using ArcherIlgpu.Kernels.Tests.Reference;

namespace ArcherIlgpu.Kernels.Tests;

public class EmbeddingTests
{
    /// <summary>(N, C) cases: every awkward pair on cpu; a spread of them on the (slow, simulated) ilgpu-cpu.</summary>
    static IEnumerable<(int N, int C)> Shapes(string device)
    {
        foreach (int n in Awkward.Sizes)
            foreach (int c in Awkward.Sizes)
                if (device == "cpu" || n * c <= 33 * 33 || n == 1 || c == 1) yield return (n, c);
    }

    // A vocabulary smaller than N and positions that wrap make tokens and positions repeat, which is
    // the case a racy or order-dependent scatter gets wrong.
    const int V = 5;
    const int MaxT = 4;

    static (int[] tokens, int[] positions) Ids(int seed, int N)
        => (TestData.Ints(seed, N, V), Enumerable.Range(0, N).Select(n => (n * 3 + seed) % MaxT).ToArray());

    [SkippableTheory, MemberData(nameof(TestBackends.Names), MemberType = typeof(TestBackends))]
    public void ForwardMatchesReference(string device)
    {
        var backend = TestBackends.Get(device);
        foreach (var (N, C) in Shapes(device))
        {
            var (tokens, positions) = Ids(N + C, N);
            var wte = TestData.Floats(1, V * C); var wpe = TestData.Floats(2, MaxT * C);
            var output = backend.Allocate<float>(N * C).All;
            backend.EmbeddingForward(backend.Upload<int>(tokens), backend.Upload<int>(positions),
                backend.Upload<float>(wte), backend.Upload<float>(wpe), N, C, output);
            var expected = EmbeddingReference.Forward(tokens, positions, TestData.ToDouble(wte), TestData.ToDouble(wpe), N, C);
            // One float addition of two floats: exact up to half an ulp of the result (|out| < 2 -> 1.2e-7).
            Check.Close(expected, backend.ToArray(output), 2.5e-7, 1e-7, $"{device} embedding N={N} C={C}");
        }
    }

    [Fact]
    public void ReferenceBackwardMatchesFiniteDifferences()
    {
        int N = 7, C = 3;
        var (tokens, positions) = Ids(3, N);
        var wte = TestData.ToDouble(TestData.Floats(4, V * C));
        var wpe = TestData.ToDouble(TestData.Floats(5, MaxT * C));
        var dy = TestData.ToDouble(TestData.Floats(6, N * C));
        var (dWte, dWpe) = EmbeddingReference.Backward(dy, tokens, positions, N, C, V, MaxT);
        var fdWte = FiniteDifference.Gradient(w => FiniteDifference.Dot(dy, EmbeddingReference.Forward(tokens, positions, w, wpe, N, C)), wte);
        var fdWpe = FiniteDifference.Gradient(w => FiniteDifference.Dot(dy, EmbeddingReference.Forward(tokens, positions, wte, w, N, C)), wpe);
        // The loss is linear in the tables, so central differences are exact up to rounding: ~1e-16 / 1e-5.
        Check.Close(fdWte, dWte, 1e-9, 1e-9, "dWte vs finite differences");
        Check.Close(fdWpe, dWpe, 1e-9, 1e-9, "dWpe vs finite differences");
        Assert.Contains(dWte, x => x != 0);
    }

    [SkippableTheory, MemberData(nameof(TestBackends.Names), MemberType = typeof(TestBackends))]
    public void BackwardMatchesReferenceWithRepeatedIdsAndAccumulates(string device)
    {
        var backend = TestBackends.Get(device);
        foreach (var (N, C) in Shapes(device))
        {
            var (tokens, positions) = Ids(N * 7 + C, N);
            var dy = TestData.Floats(N + 2 * C, N * C);
            var initialWte = TestData.Floats(8, V * C); var initialWpe = TestData.Floats(9, MaxT * C);
            var dWte = backend.Upload<float>(initialWte); var dWpe = backend.Upload<float>(initialWpe);
            var dyBuf = backend.Upload<float>(dy); var tokBuf = backend.Upload<int>(tokens); var posBuf = backend.Upload<int>(positions);
            var (refWte, refWpe) = EmbeddingReference.Backward(TestData.ToDouble(dy), tokens, positions, N, C, V, MaxT);

            backend.EmbeddingBackward(dyBuf, tokBuf, posBuf, N, C, dWte, dWpe);
            // A table row sums up to N float terms |x| <= 1 onto a start value |x| <= 1: about N ulps of N.
            double atol = 2e-7 * (N + 1);
            Check.Close(Plus(initialWte, refWte, 1), backend.ToArray(dWte), atol, 1e-6, $"{device} dWte N={N} C={C}");
            Check.Close(Plus(initialWpe, refWpe, 1), backend.ToArray(dWpe), atol, 1e-6, $"{device} dWpe N={N} C={C}");

            // Parameter gradients accumulate: a second call adds the same gradient again.
            backend.EmbeddingBackward(dyBuf, tokBuf, posBuf, N, C, dWte, dWpe);
            Check.Close(Plus(initialWte, refWte, 2), backend.ToArray(dWte), 2 * atol, 1e-6, $"{device} dWte twice N={N} C={C}");
            Check.Close(Plus(initialWpe, refWpe, 2), backend.ToArray(dWpe), 2 * atol, 1e-6, $"{device} dWpe twice N={N} C={C}");
        }
    }

    [SkippableTheory, MemberData(nameof(TestBackends.Names), MemberType = typeof(TestBackends))]
    public void BackwardIsBitwiseRepeatable(string device)
    {
        // Racing writers or an order that depends on scheduling would show up as differing last bits.
        var backend = TestBackends.Get(device);
        int N = device == "cpu" ? 1000 : 40, C = device == "cpu" ? 300 : 20;
        var tokens = TestData.Ints(11, N, 3); var positions = TestData.Ints(12, N, 2);
        var dy = backend.Upload<float>(TestData.Floats(13, N * C));
        float[] Run()
        {
            var dWte = backend.Allocate<float>(3 * C).All; var dWpe = backend.Allocate<float>(2 * C).All;
            backend.EmbeddingBackward(dy, backend.Upload<int>(tokens), backend.Upload<int>(positions), N, C, dWte, dWpe);
            return [.. backend.ToArray(dWte), .. backend.ToArray(dWpe)];
        }
        var first = Run();
        for (int i = 0; i < 2; i++) Assert.Equal(first, Run());
    }

    [Fact]
    public void CpuRejectsTokenOutsideTheVocabulary()
    {
        var backend = TestBackends.Get("cpu");
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => backend.EmbeddingForward(backend.Upload<int>([0, 5]),
            backend.Upload<int>([0, 1]), backend.Allocate<float>(5 * 2).All, backend.Allocate<float>(2 * 2).All, 2, 2,
            backend.Allocate<float>(4).All));
        Assert.Contains("token 5", e.Message);
    }

    // ------------------------------------------------------------------ token embedding alone (Llama family)

    [SkippableTheory, MemberData(nameof(TestBackends.Names), MemberType = typeof(TestBackends))]
    public void TokenForwardMatchesReference(string device)
    {
        var backend = TestBackends.Get(device);
        foreach (var (N, C) in Shapes(device))
        {
            var tokens = TestData.Ints(N + C, N, V);
            var wte = TestData.Floats(1, V * C);
            var output = backend.Upload<float>(Enumerable.Repeat(1000f, N * C).ToArray());
            backend.TokenEmbeddingForward(backend.Upload<int>(tokens), backend.Upload<float>(wte), N, C, output);
            // A copy: exactly the table's float.
            Check.Close(EmbeddingReference.TokenForward(tokens, TestData.ToDouble(wte), N, C), backend.ToArray(output), 0, 0,
                $"{device} token embedding N={N} C={C}");
        }
    }

    [Fact]
    public void TokenReferenceBackwardMatchesFiniteDifferences()
    {
        int N = 7, C = 3;
        var tokens = TestData.Ints(3, N, V);
        var wte = TestData.ToDouble(TestData.Floats(4, V * C));
        var dy = TestData.ToDouble(TestData.Floats(6, N * C));
        var fd = FiniteDifference.Gradient(w => FiniteDifference.Dot(dy, EmbeddingReference.TokenForward(tokens, w, N, C)), wte);
        // The loss is linear in the table, so central differences are exact up to rounding: ~1e-16 / 1e-5.
        var dWte = EmbeddingReference.TokenBackward(dy, tokens, N, C, V);
        Check.Close(fd, dWte, 1e-9, 1e-9, "token dWte vs finite differences");
        Assert.True(tokens.Distinct().Count() < N, "the case needs repeated tokens");
    }

    [SkippableTheory, MemberData(nameof(TestBackends.Names), MemberType = typeof(TestBackends))]
    public void TokenBackwardMatchesReferenceWithRepeatedIdsAndAccumulates(string device)
    {
        var backend = TestBackends.Get(device);
        foreach (var (N, C) in Shapes(device))
        {
            var tokens = TestData.Ints(N * 5 + C, N, V);
            var dy = TestData.Floats(N + 3 * C, N * C);
            var initial = TestData.Floats(18, V * C);
            var dWte = backend.Upload<float>(initial);
            var dyBuf = backend.Upload<float>(dy); var tokBuf = backend.Upload<int>(tokens);
            var expected = EmbeddingReference.TokenBackward(TestData.ToDouble(dy), tokens, N, C, V);

            backend.TokenEmbeddingBackward(dyBuf, tokBuf, N, C, dWte);
            // As for the GPT-2 embedding: a table row sums up to N float terms |x| <= 1 onto |x| <= 1.
            double atol = 2e-7 * (N + 1);
            Check.Close(Plus(initial, expected, 1), backend.ToArray(dWte), atol, 1e-6, $"{device} token dWte N={N} C={C}");
            // ACCUMULATES: a second call adds the same gradient again.
            backend.TokenEmbeddingBackward(dyBuf, tokBuf, N, C, dWte);
            Check.Close(Plus(initial, expected, 2), backend.ToArray(dWte), 2 * atol, 1e-6, $"{device} token dWte twice N={N} C={C}");
        }
    }

    [SkippableTheory, MemberData(nameof(TestBackends.Names), MemberType = typeof(TestBackends))]
    public void TokenBackwardIsBitwiseRepeatable(string device)
    {
        var backend = TestBackends.Get(device);
        int N = device == "cpu" ? 1000 : 40, C = device == "cpu" ? 300 : 20;
        var tokens = backend.Upload<int>(TestData.Ints(21, N, 3));
        var dy = backend.Upload<float>(TestData.Floats(22, N * C));
        float[] Run()
        {
            var dWte = backend.Allocate<float>(3 * C).All;
            backend.TokenEmbeddingBackward(dy, tokens, N, C, dWte);
            return backend.ToArray(dWte);
        }
        var first = Run();
        for (int i = 0; i < 2; i++) Assert.Equal(first, Run());
    }

    [Fact]
    public void CpuRejectsTokenOutsideTheVocabularyWithoutWriting()
    {
        var backend = TestBackends.Get("cpu");
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => backend.TokenEmbeddingForward(backend.Upload<int>([0, 5]),
            backend.Allocate<float>(5 * 2).All, 2, 2, backend.Allocate<float>(4).All));
        Assert.Contains("token 5", e.Message);
        var dWte = backend.Allocate<float>(5 * 2).All;
        e = Assert.Throws<ArgumentOutOfRangeException>(() => backend.TokenEmbeddingBackward(backend.Upload<float>([1f, 1f, 1f, 1f]),
            backend.Upload<int>([1, -1]), 2, 2, dWte));
        Assert.Contains("token -1", e.Message);
        Assert.All(backend.ToArray(dWte), v => Assert.Equal(0f, v));
    }

    static double[] Plus(float[] start, double[] delta, int times)
    {
        var r = new double[start.Length];
        for (int i = 0; i < r.Length; i++) r[i] = start[i] + times * delta[i];
        return r;
    }
}
