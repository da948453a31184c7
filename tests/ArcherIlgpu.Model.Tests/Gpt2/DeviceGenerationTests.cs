using ArcherIlgpu.Kernels;
using ArcherIlgpu.Model.Generation;
using ArcherIlgpu.Model.Gpt2;
using Xunit;

namespace ArcherIlgpu.Model.Tests.Gpt2;

/// <summary>
/// Generation on the device (issue 14 items 1 and 5): it draws exactly what the host-driven per-token
/// loop drew before (kept here as the reference), and copies to or from the host only at its every-K
/// status checks and once at each end.
/// </summary>
[Collection(Gpt2Collection.Name)]
public class DeviceGenerationTests
{
    static readonly int[][] Prompts = [[1, 2, 3], [4], [5, 6], [7]];

    static List<IReadOnlyList<int>> AsList(int[][] prompts) => prompts.Select(p => (IReadOnlyList<int>)p).ToList();

    /// <summary>
    /// The loop Generator.Generate ran before it moved to the device: the host keeps each row's length and
    /// status, uploads positions and the decode input, and downloads every draw.
    /// </summary>
    static GenerationResult PerTokenReference(Generator gen, Backend be, IModelConfig c, IReadOnlyList<IReadOnlyList<int>> prompts, SamplingOptions o)
    {
        int B = prompts.Count, V = c.VocabSize;
        using var zBuf = be.Allocate<float>((long)B * V); using var rowBuf = be.Allocate<int>(B); using var posBuf = be.Allocate<int>(B);
        using var tokBuf = be.Allocate<int>(B); using var lpBuf = be.Allocate<float>(B);
        be.Upload(rowBuf.All, Enumerable.Range(o.RowOffset, B).ToArray());
        var logits = gen.Prefill(prompts);
        var tokens = new List<int>[B]; var logProbs = new List<float>[B];
        var ended = new bool[B]; var done = new bool[B];
        var length = prompts.Select(p => p.Count).ToArray();
        for (int b = 0; b < B; b++) { tokens[b] = []; logProbs[b] = []; }
        var hostTokens = new int[B]; var hostLogProbs = new float[B];
        while (true)
        {
            be.Upload(zBuf.All, logits);
            be.Upload(posBuf.All, length.Select(l => Math.Min(l, c.MaxT - 1)).ToArray());
            be.Sample(zBuf.All, rowBuf.All, posBuf.All, B, V, o.Temperature, o.TopK, o.TopP, o.Seed, tokBuf.All, lpBuf.All);
            be.Download(tokBuf.All, hostTokens); be.Download(lpBuf.All, hostLogProbs);
            for (int b = 0; b < B; b++)
            {
                if (done[b]) continue;
                Assert.True(hostTokens[b] >= 0, $"row {b} drew no token");
                tokens[b].Add(hostTokens[b]); logProbs[b].Add(hostLogProbs[b]); length[b]++;
                ended[b] = o.EndToken == hostTokens[b];
                done[b] = ended[b] || tokens[b].Count >= o.MaxNewTokens || length[b] >= c.MaxT;
            }
            if (done.All(d => d)) break;
            logits = gen.Step(hostTokens, length.Select(l => Math.Min(l - 1, c.MaxT - 1)).ToArray());
        }
        return new GenerationResult(tokens.Select(t => t.ToArray()).ToArray(), logProbs.Select(l => l.ToArray()).ToArray(), ended);
    }

    [SkippableTheory, MemberData(nameof(ModelBackends.Names), MemberType = typeof(ModelBackends))]
    public void DeviceGenerationDrawsWhatThePerTokenLoopDraws(string backendName)
    {
        var be = ModelBackends.Get(backendName);
        var c = ModelBackends.ConfigFor(backendName);
        using var model = new Gpt2Model(be, c, Gpt2TestData.RandomParameters(new ParameterLayout(c), seed: 31));
        var prompts = AsList(Prompts.Select(p => p.Select(t => t % c.VocabSize).ToArray()).ToArray());
        // Rows that end on the end token, rows cut by MaxNewTokens, rows that fill the context; top-k and top-p on.
        var options = new[]
        {
            new SamplingOptions(MaxNewTokens: 100, Temperature: 0.9f, TopK: 6, TopP: 0.9f, Seed: 5, RowOffset: 3, EndToken: 2),
            new SamplingOptions(MaxNewTokens: 3, Temperature: 1.3f, Seed: 6),
            new SamplingOptions(MaxNewTokens: 100, Temperature: 0, EndToken: 1),
        };
        // ilgpu-cpu simulates every GPU thread: one case keeps it within seconds (its context of 5 gives k = 2 two checks).
        bool slow = backendName == "ilgpu-cpu";
        if (slow) options = options[..1];
        using var reference = new Generator(model);
        var expectedFor = options.Select(o => PerTokenReference(reference, be, c, prompts, o)).ToArray();
        foreach (int k in slow ? new[] { 2 } : new[] { 1, 2, Generator.DefaultDoneCheckInterval })
        {
            using var gen = new Generator(model, k);
            for (int i = 0; i < options.Length; i++)
            {
                var (o, expected) = (options[i], expectedFor[i]);
                var actual = gen.Generate(prompts, o);
                for (int b = 0; b < prompts.Count; b++)
                {
                    Assert.Equal(expected.Tokens[b], actual.Tokens[b]);
                    Assert.Equal(expected.LogProbs[b], actual.LogProbs[b]);   // bit for bit: the same sampler on the same logits
                    Assert.Equal(expected.Ended[b], actual.Ended[b]);
                }
            }
        }
    }

    /// <summary>Enough context for several every-K checks, small enough for ilgpu-cpu's simulated threads.</summary>
    static readonly Gpt2Config LongContext = new(VocabSize: 11, MaxT: 12, Layers: 1, Heads: 2, Channels: 8);

    [SkippableFact]
    public void GenerationCopiesOnlyAtTheEveryKChecksAndTheEnds()
    {
        var be = ModelBackends.Get("ilgpu-cpu");
        using var model = new Gpt2Model(be, LongContext, Gpt2TestData.RandomParameters(new ParameterLayout(LongContext), seed: 32));
        using var gen = new Generator(model, doneCheckInterval: 2);
        var prompts = AsList([[1, 2], [3]]);   // B = 2, prefill T = 2
        TransferCounts Run(int maxNew)
        {
            var before = be.Transfers;
            var result = gen.Generate(prompts, new SamplingOptions(MaxNewTokens: maxNew, Seed: 9));
            Assert.All(result.Tokens, t => Assert.Equal(maxNew, t.Length));   // no end token, room in the context: every row runs to maxNew
            return be.Transfers - before;
        }
        Run(1);   // first call: buffers are allocated (and the decode positions uploaded) once

        // Uploads: the prefill tokens [2×2], the row ids [2] and the prompt lengths [2], whatever the length.
        // Downloads: the status [2] after tokens 2, 4, 6, 8 (not after the last, 9th: the loop ends there),
        // then status [2], counts [2], tokens [2×9], log-probs [2×9].
        Assert.Equal(new TransferCounts(H2DCalls: 3, H2DBytes: (4 + 2 + 2) * 4, D2HCalls: 4 + 4, D2HBytes: (4 * 2 + 2 + 2 + 18 + 18) * 4), Run(9));
        // Five tokens: checks after 2 and 4 only. Four more tokens cost two checks and their share of the final copy, no per-token copy.
        Assert.Equal(new TransferCounts(H2DCalls: 3, H2DBytes: (4 + 2 + 2) * 4, D2HCalls: 2 + 4, D2HBytes: (2 * 2 + 2 + 2 + 10 + 10) * 4), Run(5));
    }

    [Fact]
    public void GenerationStopsAtTheFirstCheckAfterEveryRowEnded()
    {
        var profiler = new ProfilingBackend(ModelBackends.Get("cpu"));   // counts the sampler's calls; not disposed: it would dispose the shared backend
        var c = ModelBackends.ConfigFor("cpu");
        using var model = new Gpt2Model(profiler, c, Gpt2TestData.RandomParameters(new ParameterLayout(c), seed: 33));
        using var gen = new Generator(model, doneCheckInterval: 4);
        var prompts = AsList([[1, 2], [1, 2], [1, 2]]);
        var greedy = new SamplingOptions(MaxNewTokens: 10, Temperature: 0);
        int first = gen.Generate(prompts, greedy).Tokens[0][0];   // every row draws the same greedy token first

        profiler.Reset();
        var result = gen.Generate(prompts, greedy with { EndToken = first });
        Assert.All(result.Tokens, t => Assert.Equal(new[] { first }, t));
        Assert.All(result.Ended, Assert.True);
        // All rows ended at the first draw; the host sees it at its first check, after 4 draws, not after 10.
        Assert.Equal(4, profiler.Stats["Sample"].Calls);
        Assert.Equal(4, profiler.Stats["RecordSamples"].Calls);
    }
}
