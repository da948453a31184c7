using System.Numerics.Tensors;

namespace ArcherIlgpu.Kernels;

/// <summary>
/// Classifier head on the managed backend: one row per task, each row a few vectorised passes with
/// TensorPrimitives. Where there is a gradient row to write, it doubles as the scratch for exp(z - max),
/// which also makes the in-place case (dLogits == logits) safe: every read of z that is still needed
/// happens before the row is overwritten. Without a gradient, exp goes through a stack chunk.
/// </summary>
public sealed partial class CpuBackend
{
    /// <summary>Elements per stack chunk when a row is reduced without a destination to scratch in.</summary>
    const int HeadChunk = 1024;

    /// <summary>Rows per parallel task: rows of a large vocabulary are work enough on their own.</summary>
    static int HeadGrain(int V) => Math.Max(1, 16384 / Math.Max(V, 1));

    protected override void CrossEntropyForwardBackwardCore(Buf<float> logits, Buf<int> targets, Buf<float> weights,
        int N, int V, Buf<float> losses, Buf<float> dLogits)
    {
        var z = logits.Buffer.Host!; long zOff = logits.Offset;
        var t = targets.Buffer.Host!; long tOff = targets.Offset;
        var w = weights.Buffer.Host!; long wOff = weights.Offset;
        var loss = losses.Buffer.Host!; long lOff = losses.Offset;
        bool grad = !dLogits.IsEmpty;
        var d = grad ? dLogits.Buffer.Host! : null; long dOff = grad ? dLogits.Offset : 0;
        ParallelRange(N, HeadGrain(V), (start, end) =>
        {
            for (int n = start; n < end; n++)
            {
                var row = z.AsSpan(checked((int)(zOff + (long)n * V)), V);
                var dRow = grad ? d!.AsSpan(checked((int)(dOff + (long)n * V)), V) : default;
                loss[lOff + n] = CrossEntropyRow(row, t[tOff + n], w[wOff + n], dRow, grad);
            }
        });
    }

    /// <summary>Returns w·(logsumexp(z) − z[target]) and, if asked, writes w·(softmax − onehot) into d (may alias z).</summary>
    static float CrossEntropyRow(Span<float> z, int target, float weight, Span<float> d, bool grad)
    {
        if (weight == 0f)
        {
            if (grad) d.Clear();
            return 0f;
        }
        // An out-of-range target is a caller bug; NaN makes it visible in the loss instead of a crash mid-batch.
        bool inRange = (uint)target < (uint)z.Length;
        float zTarget = inRange ? z[target] : float.NaN;   // read before d (maybe z) is overwritten
        float max = TensorPrimitives.Max(z);
        float sum;
        if (grad)
        {
            TensorPrimitives.Subtract(z, max, d);
            TensorPrimitives.Exp(d, d);
            sum = TensorPrimitives.Sum(d);
            TensorPrimitives.Multiply(d, weight / sum, d);
            if (inRange) d[target] -= weight;
        }
        else sum = SumExpShifted(z, max, 1f);
        return weight * (max + MathF.Log(sum) - zTarget);
    }

    /// <summary>Σ exp((z − max)·scale), through a stack chunk so that nothing is allocated.</summary>
    static float SumExpShifted(ReadOnlySpan<float> z, float max, float scale)
    {
        Span<float> tmp = stackalloc float[HeadChunk];
        float sum = 0f;
        for (int i = 0; i < z.Length; i += HeadChunk)
        {
            var part = z.Slice(i, Math.Min(HeadChunk, z.Length - i));
            var e = tmp[..part.Length];
            TensorPrimitives.Subtract(part, max, e);
            if (scale != 1f) TensorPrimitives.Multiply(e, scale, e);
            TensorPrimitives.Exp(e, e);
            sum += TensorPrimitives.Sum(e);
        }
        return sum;
    }

    protected override void TokenLogProbEntropyCore(Buf<float> logits, Buf<int> tokens, int N, int V, float temperature,
        Buf<float> logProbs, Buf<float> entropies)
    {
        var z = logits.Buffer.Host!; long zOff = logits.Offset;
        var tok = tokens.Buffer.Host!; long tOff = tokens.Offset;
        var lp = logProbs.Buffer.Host!; long lpOff = logProbs.Offset;
        var ent = entropies.Buffer.Host!; long eOff = entropies.Offset;
        float invT = InverseTemperature(temperature);
        ParallelRange(N, HeadGrain(V), (start, end) =>
        {
            for (int n = start; n < end; n++)
            {
                var row = z.AsSpan(checked((int)(zOff + (long)n * V)), V);
                (lp[lpOff + n], ent[eOff + n]) = LogProbEntropyRow(row, tok[tOff + n], invT);
            }
        });
    }

    /// <summary>
    /// Temperature as a multiplier. A temperature of 0 (greedy decoding) scores with temperature 1,
    /// exactly as <see cref="Backend.Sample"/> reports its log-probs, so a trainer can pass the sampling
    /// temperature straight through.
    /// </summary>
    internal static float InverseTemperature(float temperature) => temperature == 0f ? 1f : 1f / temperature;

    /// <summary>
    /// With x = (z − max)·invT, e = exp(x), S = Σe: log p[token] = x[token] − log S and
    /// H = log S − Σ e·x / S. Every x is ≤ 0, so nothing overflows; x is floored at −110, where e is
    /// already exactly 0 in float, so that a masked (−∞) logit adds 0·(−110) instead of 0·(−∞) = NaN.
    /// </summary>
    static (float LogProb, float Entropy) LogProbEntropyRow(ReadOnlySpan<float> z, int token, float invT)
    {
        float max = TensorPrimitives.Max(z);
        Span<float> x = stackalloc float[HeadChunk];
        Span<float> e = stackalloc float[HeadChunk];
        float sum = 0f, weighted = 0f;
        for (int i = 0; i < z.Length; i += HeadChunk)
        {
            var part = z.Slice(i, Math.Min(HeadChunk, z.Length - i));
            var xs = x[..part.Length]; var es = e[..part.Length];
            TensorPrimitives.Subtract(part, max, xs);
            TensorPrimitives.Multiply(xs, invT, xs);
            TensorPrimitives.Max(xs, -110f, xs);
            TensorPrimitives.Exp(xs, es);
            sum += TensorPrimitives.Sum(es);
            weighted += TensorPrimitives.Dot(es, xs);
        }
        float logSum = MathF.Log(sum);
        float logProb = (uint)token < (uint)z.Length ? (z[token] - max) * invT - logSum : float.NaN;
        return (logProb, logSum - weighted / sum);
    }

    protected override void TokenLogProbBackwardCore(Buf<float> logits, Buf<int> tokens, Buf<float> dLogProbs,
        int N, int V, float temperature, Buf<float> dLogits)
    {
        var z = logits.Buffer.Host!; long zOff = logits.Offset;
        var tok = tokens.Buffer.Host!; long tOff = tokens.Offset;
        var g = dLogProbs.Buffer.Host!; long gOff = dLogProbs.Offset;
        var d = dLogits.Buffer.Host!; long dOff = dLogits.Offset;
        float invT = InverseTemperature(temperature);
        ParallelRange(N, HeadGrain(V), (start, end) =>
        {
            for (int n = start; n < end; n++)
            {
                var row = z.AsSpan(checked((int)(zOff + (long)n * V)), V);
                var dRow = d.AsSpan(checked((int)(dOff + (long)n * V)), V);
                LogProbBackwardRow(row, tok[tOff + n], g[gOff + n], invT, dRow);
            }
        });
    }

    /// <summary>d = g·invT·(onehot − p), p = softmax(z·invT); d may alias z (z is only read before d is written).</summary>
    static void LogProbBackwardRow(ReadOnlySpan<float> z, int token, float g, float invT, Span<float> d)
    {
        // A zero weight (padding, masked token) contributes nothing; its token need not even be valid.
        if (g == 0f) { d.Clear(); return; }
        float max = TensorPrimitives.Max(z);
        TensorPrimitives.Subtract(z, max, d);
        TensorPrimitives.Multiply(d, invT, d);
        TensorPrimitives.Exp(d, d);
        float sum = TensorPrimitives.Sum(d);
        float scale = g * invT;
        TensorPrimitives.Multiply(d, -scale / sum, d);
        if ((uint)token < (uint)d.Length) d[token] += scale;
        else d.Fill(float.NaN);
    }
}
