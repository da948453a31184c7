using System.Numerics.Tensors;

namespace ArcherIlgpu.Kernels;

public sealed partial class CpuBackend
{
    // Rows per parallel chunk in the forward: a chunk should copy a few hundred KiB.
    const int EmbeddingRowGrain = 64;

    // The backward splits the channels into column strips of this width (a few cache lines) and gives
    // each strip to one thread, which walks the rows in order. Every dWte/dWpe element is then
    // written by exactly one thread and always summed in row order: race-free and deterministic,
    // whatever the thread count and however often a token or position repeats.
    const int EmbeddingStrip = 64;

    protected override void EmbeddingForwardCore(Buf<int> tokens, Buf<int> positions, Buf<float> wte, Buf<float> wpe,
        int N, int C, Buf<float> output)
    {
        var tok = tokens.Buffer.Host!; int to = (int)tokens.Offset;
        var pos = positions.Buffer.Host!; int po = (int)positions.Offset;
        var te = wte.Buffer.Host!; long teo = wte.Offset; long vocab = wte.Length / Math.Max(C, 1);
        var pe = wpe.Buffer.Host!; long peo = wpe.Offset; long maxT = wpe.Length / Math.Max(C, 1);
        var o = output.Buffer.Host!; long oo = output.Offset;
        ParallelRange(N, EmbeddingRowGrain, (start, end) =>
        {
            for (int n = start; n < end; n++)
            {
                int t = tok[to + n], p = pos[po + n];
                if ((uint)t >= vocab) throw new ArgumentOutOfRangeException(nameof(tokens), $"token {t} at row {n} is outside [0, {vocab})");
                if ((uint)p >= maxT) throw new ArgumentOutOfRangeException(nameof(positions), $"position {p} at row {n} is outside [0, {maxT})");
                TensorPrimitives.Add(te.AsSpan((int)(teo + (long)t * C), C), pe.AsSpan((int)(peo + (long)p * C), C),
                    o.AsSpan((int)(oo + (long)n * C), C));
            }
        });
    }

    protected override void EmbeddingBackwardCore(Buf<float> dOutput, Buf<int> tokens, Buf<int> positions,
        int N, int C, Buf<float> dWte, Buf<float> dWpe)
    {
        RequireIdsInTable(tokens, N, dWte, C, nameof(tokens), "token");
        RequireIdsInTable(positions, N, dWpe, C, nameof(positions), "position");
        ScatterRowsByStrip(dOutput, N, C, new EmbeddingTarget(tokens, dWte), new EmbeddingTarget(positions, dWpe));
    }

    protected override void TokenEmbeddingForwardCore(Buf<int> tokens, Buf<float> wte, int N, int C, Buf<float> output)
    {
        var tok = tokens.Buffer.Host!; int to = (int)tokens.Offset;
        var te = wte.Buffer.Host!; long teo = wte.Offset; long vocab = wte.Length / Math.Max(C, 1);
        var o = output.Buffer.Host!; long oo = output.Offset;
        ParallelRange(N, EmbeddingRowGrain, (start, end) =>
        {
            for (int n = start; n < end; n++)
            {
                int t = tok[to + n];
                if ((uint)t >= vocab) throw new ArgumentOutOfRangeException(nameof(tokens), $"token {t} at row {n} is outside [0, {vocab})");
                te.AsSpan((int)(teo + (long)t * C), C).CopyTo(o.AsSpan((int)(oo + (long)n * C), C));
            }
        });
    }

    protected override void TokenEmbeddingBackwardCore(Buf<float> dOutput, Buf<int> tokens, int N, int C, Buf<float> dWte)
    {
        RequireIdsInTable(tokens, N, dWte, C, nameof(tokens), "token");
        ScatterRowsByStrip(dOutput, N, C, new EmbeddingTarget(tokens, dWte), null);
    }

    /// <summary>A table whose row ids[n] receives row n of the gradient.</summary>
    readonly record struct EmbeddingTarget(Buf<int> Ids, Buf<float> Table);

    /// <summary>Checked before any write, so a bad id leaves the table untouched.</summary>
    static void RequireIdsInTable(Buf<int> ids, int N, Buf<float> table, int C, string parameter, string what)
    {
        var h = ids.Buffer.Host!; int o = (int)ids.Offset; long rows = table.Length / Math.Max(C, 1);
        for (int n = 0; n < N; n++)
            if ((uint)h[o + n] >= rows) throw new ArgumentOutOfRangeException(parameter, $"{what} {h[o + n]} at row {n} is outside [0, {rows})");
    }

    /// <summary>
    /// table[ids[n], :] += g[n, :] for every target, strip by strip (see <see cref="EmbeddingStrip"/>);
    /// both targets of the GPT-2 embedding share one pass over g.
    /// </summary>
    static void ScatterRowsByStrip(Buf<float> dOutput, int N, int C, EmbeddingTarget first, EmbeddingTarget? second)
    {
        var g = dOutput.Buffer.Host!; long go = dOutput.Offset;
        var ids1 = first.Ids.Buffer.Host!; int io1 = (int)first.Ids.Offset;
        var t1 = first.Table.Buffer.Host!; long to1 = first.Table.Offset;
        var ids2 = second?.Ids.Buffer.Host; int io2 = (int)(second?.Ids.Offset ?? 0);
        var t2 = second?.Table.Buffer.Host; long to2 = second?.Table.Offset ?? 0;
        int strips = (C + EmbeddingStrip - 1) / EmbeddingStrip;
        // One strip of N rows is N * 64 floats; ask for enough strips per chunk to be worth a thread.
        int grain = Math.Max(1, (1 << 15) / Math.Max(1, N * EmbeddingStrip));
        ParallelRange(strips, grain, (s0, s1) =>
        {
            int c0 = s0 * EmbeddingStrip, width = Math.Min(C, s1 * EmbeddingStrip) - c0;
            for (int n = 0; n < N; n++)
            {
                var src = g.AsSpan((int)(go + (long)n * C + c0), width);
                var d1 = t1.AsSpan((int)(to1 + (long)ids1[io1 + n] * C + c0), width);
                TensorPrimitives.Add(d1, src, d1);
                if (t2 is null) continue;
                var d2 = t2.AsSpan((int)(to2 + (long)ids2![io2 + n] * C + c0), width);
                TensorPrimitives.Add(d2, src, d2);
            }
        });
    }
}
