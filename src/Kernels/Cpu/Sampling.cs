using System.Numerics.Tensors;

namespace ArcherIlgpu.Kernels;

/// <summary>
/// The managed sampler. It draws exactly what the ILGPU kernel draws (see <see cref="SamplingMath"/>)
/// but finds the top-k and top-p thresholds with a 4-pass radix select over 8-bit digits of the order
/// key, as the kernel does; both return the largest key whose "mass at or above it" reaches the target,
/// which is one number however it is found (the digit width or visiting order cannot change it).
/// </summary>
public sealed partial class CpuBackend
{
    /// <summary>Per-thread fixed-point masses of one row, grown to the largest vocabulary seen (allocated once).</summary>
    [ThreadStatic] static long[]? sampleMassScratch;

    protected override void SampleCore(Buf<float> logits, Buf<int> rows, Buf<int> positions, int N, int V,
        float temperature, int topK, float topP, ulong seed, Buf<int> tokens, Buf<float> logProbs)
    {
        float invT = InverseTemperature(temperature);
        bool greedy = temperature == 0f;
        var z = logits.Buffer.Host!; long zOff = logits.Offset;
        var r = rows.Buffer.Host!; long rOff = rows.Offset;
        var p = positions.Buffer.Host!; long pOff = positions.Offset;
        var tok = tokens.Buffer.Host!; long tOff = tokens.Offset;
        var lp = logProbs.Buffer.Host!; long lpOff = logProbs.Offset;
        ParallelRange(N, 1, (start, end) =>
        {
            for (int n = start; n < end; n++)
            {
                var row = z.AsSpan(checked((int)(zOff + (long)n * V)), V);
                var (max, argMax) = MaxAndFirstArgMax(row);
                int token = greedy ? argMax
                    : DrawRow(row, max, invT, topK, topP, seed, r[rOff + n], p[pOff + n]);
                tok[tOff + n] = token;
                lp[lpOff + n] = token < 0 ? float.NaN
                    : SamplingMath.Scaled(row[token], max, invT) - MathF.Log(SumExpShifted(row, max, invT));
            }
        });
    }

    protected override void RecordSamplesCore(Buf<int> sampled, Buf<float> sampledLogProbs, int B, int maxNew, int maxT, int endToken,
        Buf<int> status, Buf<int> counts, Buf<int> lengths, Buf<int> outTokens, Buf<float> outLogProbs,
        Buf<int> nextTokens, Buf<int> nextPositions, Buf<int> samplePositions)
    {
        // B is one row per sequence: a plain loop is cheaper than waking the workers.
        var tok = sampled.Span; var lp = sampledLogProbs.Span;
        var st = status.Span; var cnt = counts.Span; var len = lengths.Span;
        var outTok = outTokens.Span; var outLp = outLogProbs.Span;
        var next = nextTokens.Span; var nextPos = nextPositions.Span; var samplePos = samplePositions.Span;
        for (int b = 0; b < B; b++)
        {
            int slot = GenerationMath.Advance(tok[b], maxNew, maxT, endToken, ref st[b], ref cnt[b], ref len[b]);
            if (slot >= 0) { outTok[b * maxNew + slot] = tok[b]; outLp[b * maxNew + slot] = lp[b]; }
            next[b] = Math.Max(tok[b], 0);
            nextPos[b] = GenerationMath.DecodePosition(len[b], maxT);
            samplePos[b] = GenerationMath.SamplePosition(len[b], maxT);
        }
    }

    /// <summary>The maximum and the lowest index holding it (−1 if every logit is NaN).</summary>
    static (float Max, int ArgMax) MaxAndFirstArgMax(ReadOnlySpan<float> z)
    {
        float max = float.NegativeInfinity; int arg = -1;
        for (int v = 0; v < z.Length; v++)
            if (z[v] > max || (arg < 0 && z[v] == max)) { max = z[v]; arg = v; }
        return (max, arg);
    }

    static int DrawRow(ReadOnlySpan<float> z, float max, float invT, int topK, float topP, ulong seed, int rowId, int position)
    {
        int V = z.Length;
        uint minKey = 0;
        if (topK > 0 && topK < V) minKey = SelectThresholdKey(z, default, topK);
        if (topP < 1f)
        {
            var mass = sampleMassScratch is { } s && s.Length >= V ? s : (sampleMassScratch = new long[V]);
            var masses = mass.AsSpan(0, V);
            long total = 0;
            for (int v = 0; v < V; v++)
            {
                long m = SamplingMath.OrderKey(z[v]) >= minKey ? SamplingMath.FixedMass(SamplingMath.Scaled(z[v], max, invT)) : 0;
                masses[v] = m; total += m;
            }
            uint nucleusKey = SelectThresholdKey(z, masses, SamplingMath.NucleusTarget(total, topP));
            if (nucleusKey > minKey) minKey = nucleusKey;
        }
        // Gumbel race. A racer's key is scaled − log(−log u) with scaled ≤ 0, so it can only beat the
        // best key so far if u ≥ exp(−exp(−bestKey)): below that floor the two logs are skipped, which
        // for a flat distribution is nearly every token. The floor is taken 0.01 lower in key (far
        // beyond float rounding of a key) so that no racer that could win is ever skipped.
        ulong stream = CounterRng.StreamHash(seed, rowId, position);
        float bestKey = float.NegativeInfinity; int best = -1;
        double uFloor = 0;
        for (int v = 0; v < V; v++)
        {
            if (SamplingMath.OrderKey(z[v]) < minKey) continue;
            float scaled = SamplingMath.Scaled(z[v], max, invT);
            if (scaled + SamplingMath.MaxGumbel < bestKey) continue;   // cannot win: skip the RNG and two logs
            float u = CounterRng.UniformInStream(stream, v);
            if (u < uFloor) continue;
            float key = scaled - MathF.Log(-MathF.Log(u));
            if (key > bestKey || (best < 0 && key == bestKey))
            {
                bestKey = key; best = v;
                uFloor = Math.Exp(-Math.Exp(-(bestKey - 0.01)));
            }
        }
        return best;
    }

    /// <summary>
    /// The largest key θ with Σ_{key_v ≥ θ} weight_v ≥ target (weights empty: all 1, i.e. a count), by
    /// radix select: per 8-bit digit, from the top, a histogram of the candidates still sharing the chosen
    /// prefix, then the highest digit whose bucket brings the mass above the prefix up to the target.
    /// Requires 0 &lt; target ≤ total weight.
    /// </summary>
    static uint SelectThresholdKey(ReadOnlySpan<float> z, ReadOnlySpan<long> weights, double target)
    {
        Span<long> histogram = stackalloc long[256];
        bool counting = weights.IsEmpty;
        uint prefix = 0, prefixMask = 0;
        long above = 0;
        for (int shift = 24; shift >= 0; shift -= 8)
        {
            histogram.Clear();
            for (int v = 0; v < z.Length; v++)
            {
                uint key = SamplingMath.OrderKey(z[v]);
                if ((key & prefixMask) == prefix) histogram[(int)((key >> shift) & 0xFF)] += counting ? 1 : weights[v];
            }
            int digit = 255;
            for (; digit > 0; digit--)
            {
                if (above + histogram[digit] >= target) break;
                above += histogram[digit];
            }
            prefix |= (uint)digit << shift;
            prefixMask |= 0xFFu << shift;
        }
        return prefix;
    }
}
