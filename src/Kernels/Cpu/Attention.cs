using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Numerics.Tensors;

namespace ArcherIlgpu.Kernels;

/// <summary>
/// Causal multi-head attention on the managed backend, flash-attention style: per (b, h) and block of
/// queries, keys are visited in blocks of <see cref="AttnKeyBlock"/> with an online softmax, so no
/// T×T matrix exists anywhere; backward recomputes the probabilities from logSumExp.
/// Scores are computed against a transposed key block (D × 32) so that the inner loop is a
/// broadcast-FMA over 32 keys, with no horizontal sums; P·V and the gradients are axpys over D.
/// </summary>
public sealed unsafe partial class CpuBackend
{
    /// <summary>Keys per block: four Vector256 accumulators wide.</summary>
    const int AttnKeyBlock = 32;
    /// <summary>Queries per parallel work item in the forward.</summary>
    const int AttnQueryBlock = 32;

    /// <summary>
    /// Per-thread scratch, grown on demand and kept: after the first call at a size nothing is
    /// allocated (pool threads live for the process).
    /// </summary>
    sealed class AttnScratch
    {
        public float[] KeysT = [], ValuesT = [], Scores = [], Dp = [], Acc = [], Grad = [], Row = [];

        public static float[] Ensure(ref float[] a, int n)
        {
            if (a.Length < n) a = GC.AllocateArray<float>(n, pinned: true);
            return a;
        }
    }

    [ThreadStatic] static AttnScratch? attnScratch;
    static AttnScratch AttnThreadScratch => attnScratch ??= new AttnScratch();

    /// <summary>The pinned array behind a cpu-backend slice (every cpu buffer is allocated pinned).</summary>
    static float* AttnPtr(Buf<float> b) => (float*)Unsafe.AsPointer(ref MemoryMarshal.GetReference(b.Span));

    static void CheckAttentionShape(int B, int T, int C, int H)
    {
        if (B <= 0 || T <= 0 || C <= 0 || H <= 0 || C % H != 0)
            throw new ArgumentException($"attention needs positive B, T, C, H with C divisible by H; got B={B} T={T} C={C} H={H}");
    }

    // ------------------------------------------------------------------ forward

    public override void AttentionForward(Buf<float> qkv, int B, int T, int C, int H,
        Buf<float> output, Buf<float> logSumExp)
    {
        CheckAttentionShape(B, T, C, H);
        nint qkvP = (nint)AttnPtr(qkv), outP = (nint)AttnPtr(output), lseP = (nint)AttnPtr(logSumExp);
        int qBlocks = (T + AttnQueryBlock - 1) / AttnQueryBlock;
        ParallelRange(B * H * qBlocks, 1, (start, end) =>
        {
            for (int item = start; item < end; item++)
            {
                int bh = item / qBlocks, qb = item % qBlocks;
                AttentionForwardBlock((float*)qkvP, (float*)outP, (float*)lseP, T, C, H,
                    bh / H, bh % H, qb * AttnQueryBlock, Math.Min(T, (qb + 1) * AttnQueryBlock));
            }
        });
    }

    /// <summary>Queries t0..t1-1 of head h in sequence b, online softmax over key blocks.</summary>
    static void AttentionForwardBlock(float* qkv, float* output, float* logSumExp, int T, int C, int H,
        int b, int h, int t0, int t1)
    {
        int D = C / H, C3 = 3 * C;
        float scale = 1f / MathF.Sqrt(D);
        var s = AttnThreadScratch;
        int rows = t1 - t0;
        fixed (float* kt = AttnScratch.Ensure(ref s.KeysT, D * AttnKeyBlock))
        fixed (float* scores = AttnScratch.Ensure(ref s.Scores, AttnKeyBlock))
        fixed (float* acc = AttnScratch.Ensure(ref s.Acc, AttnQueryBlock * D))
        fixed (float* stats = AttnScratch.Ensure(ref s.Row, 2 * AttnQueryBlock))
        {
            float* runMax = stats, runSum = stats + AttnQueryBlock;
            new Span<float>(acc, rows * D).Clear();
            for (int i = 0; i < rows; i++) { runMax[i] = float.NegativeInfinity; runSum[i] = 0; }

            float* seq = qkv + (long)b * T * C3;
            for (int s0 = 0; s0 < t1; s0 += AttnKeyBlock)
            {
                int n = Math.Min(AttnKeyBlock, T - s0);
                TransposeBlock(seq + (long)s0 * C3 + C + h * D, C3, n, D, kt);
                for (int t = Math.Max(t0, s0); t < t1; t++)
                {
                    int i = t - t0;
                    int valid = Math.Min(n, t - s0 + 1);
                    float* q = seq + (long)t * C3 + h * D;
                    ScoresAgainstBlock(q, kt, D, scale, scores);
                    float newMax = MathF.Max(runMax[i], BlockMax(scores, valid));
                    float correction = MathF.Exp(runMax[i] - newMax);   // exp(-inf) = 0 on the first block
                    runSum[i] = runSum[i] * correction + ExpInPlace(scores, valid, newMax);
                    runMax[i] = newMax;
                    float* o = acc + i * D;
                    if (correction != 1f) Scale(o, D, correction);
                    WeightedRowSum(scores, valid, seq + (long)s0 * C3 + 2 * C + h * D, C3, o, D);
                }
            }

            for (int i = 0; i < rows; i++)
            {
                int t = t0 + i;
                float inv = 1f / runSum[i];
                TensorPrimitives.Multiply(new ReadOnlySpan<float>(acc + i * D, D), inv,
                    new Span<float>(output + ((long)b * T + t) * C + h * D, D));
                logSumExp[((long)b * H + h) * T + t] = runMax[i] + MathF.Log(runSum[i]);
            }
        }
    }

    // ----------------------------------------------------------------- backward

    public override void AttentionBackward(Buf<float> dOutput, Buf<float> qkv, Buf<float> output,
        Buf<float> logSumExp, int B, int T, int C, int H, Buf<float> dQkv)
    {
        CheckAttentionShape(B, T, C, H);
        nint dOutP = (nint)AttnPtr(dOutput), qkvP = (nint)AttnPtr(qkv), outP = (nint)AttnPtr(output),
             lseP = (nint)AttnPtr(logSumExp), dQkvP = (nint)AttnPtr(dQkv);
        // dK and dV of a key collect contributions from every later query, so each (b, h) is one work
        // item: no two threads ever write the same gradient element.
        ParallelRange(B * H, 1, (start, end) =>
        {
            for (int bh = start; bh < end; bh++)
                AttentionBackwardHead((float*)dOutP, (float*)qkvP, (float*)outP, (float*)lseP, (float*)dQkvP,
                    T, C, H, bh / H, bh % H);
        });
    }

    static void AttentionBackwardHead(float* dOutput, float* qkv, float* output, float* logSumExp, float* dQkv,
        int T, int C, int H, int b, int h)
    {
        int D = C / H, C3 = 3 * C;
        float scale = 1f / MathF.Sqrt(D);
        var s = AttnThreadScratch;
        fixed (float* kt = AttnScratch.Ensure(ref s.KeysT, D * AttnKeyBlock))
        fixed (float* vt = AttnScratch.Ensure(ref s.ValuesT, D * AttnKeyBlock))
        fixed (float* p = AttnScratch.Ensure(ref s.Scores, AttnKeyBlock))
        fixed (float* dp = AttnScratch.Ensure(ref s.Dp, AttnKeyBlock))
        fixed (float* dkv = AttnScratch.Ensure(ref s.Grad, 2 * AttnKeyBlock * D))
        fixed (float* delta = AttnScratch.Ensure(ref s.Row, T))
        {
            float* seq = qkv + (long)b * T * C3;
            float* dSeq = dQkv + (long)b * T * C3;
            float* dO = dOutput + (long)b * T * C + h * D;
            float* O = output + (long)b * T * C + h * D;
            float* lse = logSumExp + ((long)b * H + h) * T;

            // delta_t = dO_t · O_t = sum_s P_ts dP_ts, the softmax backward's row term.
            for (int t = 0; t < T; t++)
            {
                delta[t] = TensorPrimitives.Dot(new ReadOnlySpan<float>(dO + (long)t * C, D), new ReadOnlySpan<float>(O + (long)t * C, D));
                new Span<float>(dSeq + (long)t * C3 + h * D, D).Clear();
            }

            float* dK = dkv, dV = dkv + AttnKeyBlock * D;
            for (int s0 = 0; s0 < T; s0 += AttnKeyBlock)
            {
                int n = Math.Min(AttnKeyBlock, T - s0);
                float* kRows = seq + (long)s0 * C3 + C + h * D;
                TransposeBlock(kRows, C3, n, D, kt);
                TransposeBlock(kRows + C, C3, n, D, vt);
                new Span<float>(dkv, 2 * AttnKeyBlock * D).Clear();
                for (int t = s0; t < T; t++)
                {
                    int valid = Math.Min(n, t - s0 + 1);
                    float* q = seq + (long)t * C3 + h * D;
                    float* dOt = dO + (long)t * C;
                    ScoresAgainstBlock(q, kt, D, scale, p);
                    ScoresAgainstBlock(dOt, vt, D, 1f, dp);
                    ExpInPlace(p, valid, lse[t]);
                    for (int j = 0; j < valid; j++)
                    {
                        Axpy(p[j], dOt, dV + j * D, D);
                        dp[j] = p[j] * (dp[j] - delta[t]) * scale;   // now the scaled score gradient
                        Axpy(dp[j], q, dK + j * D, D);
                    }
                    WeightedRowSum(dp, valid, kRows, C3, dSeq + (long)t * C3 + h * D, D);
                }
                for (int j = 0; j < n; j++)
                {
                    float* dRow = dSeq + (long)(s0 + j) * C3 + h * D;
                    new ReadOnlySpan<float>(dK + j * D, D).CopyTo(new Span<float>(dRow + C, D));
                    new ReadOnlySpan<float>(dV + j * D, D).CopyTo(new Span<float>(dRow + 2 * C, D));
                }
            }
        }
    }

    // ------------------------------------------------------------- KV cache

    public override void KvCacheWrite(Buf<float> qkv, int B, int T, int C, int H, int maxT,
        Buf<float> kCache, Buf<float> vCache)
    {
        CheckAttentionShape(B, T, C, H);
        if (T > maxT) throw new ArgumentException($"KvCacheWrite: T={T} exceeds the cache length maxT={maxT}");
        nint qkvP = (nint)AttnPtr(qkv), kP = (nint)AttnPtr(kCache), vP = (nint)AttnPtr(vCache);
        int D = C / H;
        ParallelRange(B * H, 1, (start, end) =>
        {
            for (int bh = start; bh < end; bh++)
            {
                int b = bh / H, h = bh % H;
                float* src = (float*)qkvP + (long)b * T * 3 * C + h * D;
                float* k = (float*)kP + (long)bh * maxT * D, v = (float*)vP + (long)bh * maxT * D;
                for (int t = 0; t < T; t++)
                {
                    float* row = src + (long)t * 3 * C;
                    new ReadOnlySpan<float>(row + C, D).CopyTo(new Span<float>(k + (long)t * D, D));
                    new ReadOnlySpan<float>(row + 2 * C, D).CopyTo(new Span<float>(v + (long)t * D, D));
                }
            }
        });
    }

    public override void AttentionDecode(Buf<float> qkv, Buf<int> positions, int B, int C, int H, int maxT,
        Buf<float> kCache, Buf<float> vCache, Buf<float> output)
    {
        CheckAttentionShape(B, 1, C, H);
        var pos = positions.Span;
        for (int b = 0; b < B; b++)
            if ((uint)pos[b] >= (uint)maxT)
                throw new ArgumentOutOfRangeException(nameof(positions), $"positions[{b}] = {pos[b]} is outside the cache [0, {maxT})");
        nint qkvP = (nint)AttnPtr(qkv), kP = (nint)AttnPtr(kCache), vP = (nint)AttnPtr(vCache), outP = (nint)AttnPtr(output);
        nint posP = (nint)Unsafe.AsPointer(ref MemoryMarshal.GetReference(pos));   // pinned like every cpu buffer
        ParallelRange(B * H, 1, (start, end) =>
        {
            for (int bh = start; bh < end; bh++)
                DecodeHead((float*)qkvP, ((int*)posP)[bh / H], C, H, maxT, (float*)kP, (float*)vP, (float*)outP, bh / H, bh % H);
        });
    }

    static void DecodeHead(float* qkv, int position, int C, int H, int maxT, float* kCache, float* vCache,
        float* output, int b, int h)
    {
        int D = C / H;
        float scale = 1f / MathF.Sqrt(D);
        float* row = qkv + (long)b * 3 * C + h * D;
        float* k = kCache + ((long)b * H + h) * maxT * D, v = vCache + ((long)b * H + h) * maxT * D;
        new ReadOnlySpan<float>(row + C, D).CopyTo(new Span<float>(k + (long)position * D, D));
        new ReadOnlySpan<float>(row + 2 * C, D).CopyTo(new Span<float>(v + (long)position * D, D));

        var s = AttnThreadScratch;
        int n = position + 1;
        fixed (float* scores = AttnScratch.Ensure(ref s.Scores, Math.Max(n, AttnKeyBlock)))
        {
            var q = new ReadOnlySpan<float>(row, D);
            for (int j = 0; j < n; j++) scores[j] = TensorPrimitives.Dot(q, new ReadOnlySpan<float>(k + (long)j * D, D)) * scale;
            var sc = new Span<float>(scores, n);
            float max = TensorPrimitives.Max(sc);
            TensorPrimitives.Subtract(sc, max, sc);
            TensorPrimitives.Exp(sc, sc);
            TensorPrimitives.Multiply(sc, 1f / TensorPrimitives.Sum(sc), sc);
            float* o = output + (long)b * C + h * D;
            new Span<float>(o, D).Clear();
            WeightedRowSum(scores, n, v, D, o, D);
        }
    }

    // ------------------------------------------------------------ SIMD helpers

    /// <summary>dst[d * 32 + j] = rows[j * stride + d] for j &lt; n, zero for n ≤ j &lt; 32.</summary>
    static void TransposeBlock(float* rows, int stride, int n, int D, float* dst)
    {
        if (n < AttnKeyBlock) new Span<float>(dst, D * AttnKeyBlock).Clear();
        for (int j = 0; j < n; j++)
        {
            float* r = rows + (long)j * stride;
            for (int d = 0; d < D; d++) dst[d * AttnKeyBlock + j] = r[d];
        }
    }

    /// <summary>
    /// dst[j] = scale * sum_d x[d] * keysT[d, j] for the 32 keys of a block. Even and odd d feed
    /// separate accumulators so eight FMA chains are in flight.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void ScoresAgainstBlock(float* x, float* keysT, int D, float scale, float* dst)
    {
        if (Vector512.IsHardwareAccelerated) { ScoresAgainstBlock512(x, keysT, D, scale, dst); return; }
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        Vector256<float> b0 = default, b1 = default, b2 = default, b3 = default;
        int d = 0;
        for (; d + 1 < D; d += 2)
        {
            float* k = keysT + d * AttnKeyBlock;
            var x0 = Vector256.Create(x[d]);
            var x1 = Vector256.Create(x[d + 1]);
            a0 = Vector256.FusedMultiplyAdd(x0, Vector256.Load(k), a0);
            a1 = Vector256.FusedMultiplyAdd(x0, Vector256.Load(k + 8), a1);
            a2 = Vector256.FusedMultiplyAdd(x0, Vector256.Load(k + 16), a2);
            a3 = Vector256.FusedMultiplyAdd(x0, Vector256.Load(k + 24), a3);
            b0 = Vector256.FusedMultiplyAdd(x1, Vector256.Load(k + 32), b0);
            b1 = Vector256.FusedMultiplyAdd(x1, Vector256.Load(k + 40), b1);
            b2 = Vector256.FusedMultiplyAdd(x1, Vector256.Load(k + 48), b2);
            b3 = Vector256.FusedMultiplyAdd(x1, Vector256.Load(k + 56), b3);
        }
        if (d < D)
        {
            float* k = keysT + d * AttnKeyBlock;
            var x0 = Vector256.Create(x[d]);
            a0 = Vector256.FusedMultiplyAdd(x0, Vector256.Load(k), a0);
            a1 = Vector256.FusedMultiplyAdd(x0, Vector256.Load(k + 8), a1);
            a2 = Vector256.FusedMultiplyAdd(x0, Vector256.Load(k + 16), a2);
            a3 = Vector256.FusedMultiplyAdd(x0, Vector256.Load(k + 24), a3);
        }
        var sc = Vector256.Create(scale);
        ((a0 + b0) * sc).Store(dst);
        ((a1 + b1) * sc).Store(dst + 8);
        ((a2 + b2) * sc).Store(dst + 16);
        ((a3 + b3) * sc).Store(dst + 24);
    }

    /// <summary>
    /// acc[0..D) += sum_j w[j] * rows[j * stride + (0..D)]: the accumulator chunk stays in registers
    /// across all n rows (64 channels at a time), so each row costs loads and FMAs only.
    /// </summary>
    static void WeightedRowSum(float* w, int n, float* rows, int stride, float* acc, int D)
    {
        int d = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; d + 64 <= D; d += 64)
            {
                float* a = acc + d;
                var s0 = Vector512.Load(a); var s1 = Vector512.Load(a + 16);
                var s2 = Vector512.Load(a + 32); var s3 = Vector512.Load(a + 48);
                for (int j = 0; j < n; j++)
                {
                    float* r = rows + (long)j * stride + d;
                    var wj = Vector512.Create(w[j]);
                    s0 = Vector512.FusedMultiplyAdd(wj, Vector512.Load(r), s0);
                    s1 = Vector512.FusedMultiplyAdd(wj, Vector512.Load(r + 16), s1);
                    s2 = Vector512.FusedMultiplyAdd(wj, Vector512.Load(r + 32), s2);
                    s3 = Vector512.FusedMultiplyAdd(wj, Vector512.Load(r + 48), s3);
                }
                s0.Store(a); s1.Store(a + 16); s2.Store(a + 32); s3.Store(a + 48);
            }
            for (; d + 16 <= D; d += 16)
            {
                var s0 = Vector512.Load(acc + d);
                for (int j = 0; j < n; j++) s0 = Vector512.FusedMultiplyAdd(Vector512.Create(w[j]), Vector512.Load(rows + (long)j * stride + d), s0);
                s0.Store(acc + d);
            }
        }
        for (; d + 32 <= D; d += 32)
        {
            float* a = acc + d;
            var s0 = Vector256.Load(a); var s1 = Vector256.Load(a + 8);
            var s2 = Vector256.Load(a + 16); var s3 = Vector256.Load(a + 24);
            for (int j = 0; j < n; j++)
            {
                float* r = rows + (long)j * stride + d;
                var wj = Vector256.Create(w[j]);
                s0 = Vector256.FusedMultiplyAdd(wj, Vector256.Load(r), s0);
                s1 = Vector256.FusedMultiplyAdd(wj, Vector256.Load(r + 8), s1);
                s2 = Vector256.FusedMultiplyAdd(wj, Vector256.Load(r + 16), s2);
                s3 = Vector256.FusedMultiplyAdd(wj, Vector256.Load(r + 24), s3);
            }
            s0.Store(a); s1.Store(a + 8); s2.Store(a + 16); s3.Store(a + 24);
        }
        for (; d + 8 <= D; d += 8)
        {
            var s0 = Vector256.Load(acc + d);
            for (int j = 0; j < n; j++) s0 = Vector256.FusedMultiplyAdd(Vector256.Create(w[j]), Vector256.Load(rows + (long)j * stride + d), s0);
            s0.Store(acc + d);
        }
        for (; d < D; d++)
        {
            float sum = acc[d];
            for (int j = 0; j < n; j++) sum = MathF.FusedMultiplyAdd(w[j], rows[(long)j * stride + d], sum);
            acc[d] = sum;
        }
    }

    /// <summary>The same with 512-bit vectors: two per key block, four d phases in flight.</summary>
    static void ScoresAgainstBlock512(float* x, float* keysT, int D, float scale, float* dst)
    {
        Vector512<float> a0 = default, a1 = default, b0 = default, b1 = default;
        Vector512<float> c0 = default, c1 = default, e0 = default, e1 = default;
        int d = 0;
        for (; d + 3 < D; d += 4)
        {
            float* k = keysT + d * AttnKeyBlock;
            var x0 = Vector512.Create(x[d]); var x1 = Vector512.Create(x[d + 1]);
            var x2 = Vector512.Create(x[d + 2]); var x3 = Vector512.Create(x[d + 3]);
            a0 = Vector512.FusedMultiplyAdd(x0, Vector512.Load(k), a0);
            a1 = Vector512.FusedMultiplyAdd(x0, Vector512.Load(k + 16), a1);
            b0 = Vector512.FusedMultiplyAdd(x1, Vector512.Load(k + 32), b0);
            b1 = Vector512.FusedMultiplyAdd(x1, Vector512.Load(k + 48), b1);
            c0 = Vector512.FusedMultiplyAdd(x2, Vector512.Load(k + 64), c0);
            c1 = Vector512.FusedMultiplyAdd(x2, Vector512.Load(k + 80), c1);
            e0 = Vector512.FusedMultiplyAdd(x3, Vector512.Load(k + 96), e0);
            e1 = Vector512.FusedMultiplyAdd(x3, Vector512.Load(k + 112), e1);
        }
        for (; d < D; d++)
        {
            float* k = keysT + d * AttnKeyBlock;
            var x0 = Vector512.Create(x[d]);
            a0 = Vector512.FusedMultiplyAdd(x0, Vector512.Load(k), a0);
            a1 = Vector512.FusedMultiplyAdd(x0, Vector512.Load(k + 16), a1);
        }
        var sc = Vector512.Create(scale);
        (((a0 + b0) + (c0 + e0)) * sc).Store(dst);
        (((a1 + b1) + (c1 + e1)) * sc).Store(dst + 16);
    }

    /// <summary>max of x[0..n) for a 32-wide block; n ≥ 1.</summary>
    static float BlockMax(float* x, int n)
    {
        if (n == AttnKeyBlock)
        {
            var m = Vector256.Max(Vector256.Max(Vector256.Load(x), Vector256.Load(x + 8)),
                                  Vector256.Max(Vector256.Load(x + 16), Vector256.Load(x + 24)));
            float lanes = m[0];
            for (int k = 1; k < 8; k++) lanes = MathF.Max(lanes, m[k]);
            return lanes;
        }
        float max = x[0];
        for (int j = 1; j < n; j++) max = MathF.Max(max, x[j]);
        return max;
    }

    /// <summary>x[j] = exp(x[j] - shift) for j &lt; n (a 32-wide block), returning their sum.</summary>
    static float ExpInPlace(float* x, int n, float shift)
    {
        if (n == AttnKeyBlock)
        {
            var sh = Vector256.Create(shift);
            var e0 = Vector256.Exp(Vector256.Load(x) - sh); var e1 = Vector256.Exp(Vector256.Load(x + 8) - sh);
            var e2 = Vector256.Exp(Vector256.Load(x + 16) - sh); var e3 = Vector256.Exp(Vector256.Load(x + 24) - sh);
            e0.Store(x); e1.Store(x + 8); e2.Store(x + 16); e3.Store(x + 24);
            return Vector256.Sum((e0 + e1) + (e2 + e3));
        }
        var row = new Span<float>(x, n);
        TensorPrimitives.Subtract(row, shift, row);
        TensorPrimitives.Exp(row, row);
        return TensorPrimitives.Sum(row);
    }

    static void Scale(float* x, int n, float factor)
    {
        int d = 0;
        var f = Vector256.Create(factor);
        for (; d + 8 <= n; d += 8) (Vector256.Load(x + d) * f).Store(x + d);
        for (; d < n; d++) x[d] *= factor;
    }

    /// <summary>y[0..n) += a * x[0..n).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Axpy(float a, float* x, float* y, int n)
    {
        int d = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var va = Vector512.Create(a);
            for (; d + 16 <= n; d += 16)
                Vector512.FusedMultiplyAdd(va, Vector512.Load(x + d), Vector512.Load(y + d)).Store(y + d);
        }
        var vb = Vector256.Create(a);
        for (; d + 8 <= n; d += 8)
            Vector256.FusedMultiplyAdd(vb, Vector256.Load(x + d), Vector256.Load(y + d)).Store(y + d);
        for (; d < n; d++) y[d] = MathF.FusedMultiplyAdd(a, x[d], y[d]);
    }
}
