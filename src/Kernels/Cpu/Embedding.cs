using System.Numerics.Tensors;

using static ArcherIlgpu.Kernels.BufChecks;

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

    public override void EmbeddingForward(Buf<int> tokens, Buf<int> positions, Buf<float> wte, Buf<float> wpe,
        int N, int C, Buf<float> output)
    {
        RequireElements(tokens, N); RequireElements(positions, N); RequireElements(output, (long)N * C);
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

    public override void EmbeddingBackward(Buf<float> dOutput, Buf<int> tokens, Buf<int> positions,
        int N, int C, Buf<float> dWte, Buf<float> dWpe)
    {
        RequireElements(tokens, N); RequireElements(positions, N); RequireElements(dOutput, (long)N * C);
        var g = dOutput.Buffer.Host!; long go = dOutput.Offset;
        var tok = tokens.Buffer.Host!; int to = (int)tokens.Offset;
        var pos = positions.Buffer.Host!; int po = (int)positions.Offset;
        var te = dWte.Buffer.Host!; long teo = dWte.Offset; long vocab = dWte.Length / Math.Max(C, 1);
        var pe = dWpe.Buffer.Host!; long peo = dWpe.Offset; long maxT = dWpe.Length / Math.Max(C, 1);
        for (int n = 0; n < N; n++)
        {
            if ((uint)tok[to + n] >= vocab) throw new ArgumentOutOfRangeException(nameof(tokens), $"token {tok[to + n]} at row {n} is outside [0, {vocab})");
            if ((uint)pos[po + n] >= maxT) throw new ArgumentOutOfRangeException(nameof(positions), $"position {pos[po + n]} at row {n} is outside [0, {maxT})");
        }
        int strips = (C + EmbeddingStrip - 1) / EmbeddingStrip;
        // One strip of N rows is N * 64 floats; ask for enough strips per chunk to be worth a thread.
        int grain = Math.Max(1, (1 << 15) / Math.Max(1, N * EmbeddingStrip));
        ParallelRange(strips, grain, (s0, s1) =>
        {
            int c0 = s0 * EmbeddingStrip, width = Math.Min(C, s1 * EmbeddingStrip) - c0;
            for (int n = 0; n < N; n++)
            {
                var src = g.AsSpan((int)(go + (long)n * C + c0), width);
                var dte = te.AsSpan((int)(teo + (long)tok[to + n] * C + c0), width);
                TensorPrimitives.Add(dte, src, dte);
                var dpe = pe.AsSpan((int)(peo + (long)pos[po + n] * C + c0), width);
                TensorPrimitives.Add(dpe, src, dpe);
            }
        });
    }
}
