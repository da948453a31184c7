using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Numerics.Tensors;

namespace ArcherIlgpu.Kernels;

/// <summary>
/// Causal grouped-query attention on the managed backend. Training attention (forward, backward) runs on the
/// packed GEMM over query blocks (see below). Decoding, per (b, h) and block of
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

    /// <summary>
    /// Where one head's vectors sit in a qkv row [q (H·D) | k (Hkv·D) | v (Hkv·D)] and an output row
    /// [H·D]: query head h reads key/value head h / group.
    /// </summary>
    readonly record struct AttnLayout(int H, int Hkv, int D)
    {
        public int Width => (H + 2 * Hkv) * D;
        public int OutWidth => H * D;
        public int Group => H / Hkv;
        public int Query(int h) => h * D;
        public int Key(int kvh) => (H + kvh) * D;
        public int Value(int kvh) => (H + Hkv + kvh) * D;
    }

    // ------------------------------------------------------------------ forward
    //
    // Training attention runs on the packed GEMM: per (b, h) and block of AttnGemmRows queries, the
    // scores against the keys that block can see (0 .. t1-1, so the causal mask costs at most half a
    // block) live in a per-thread [rows, t1] scratch, never a full T×T matrix. Every product (q·kᵀ,
    // p·v and the four backward ones) then runs at GEMM speed instead of as per-row dot products.

    /// <summary>Queries per GEMM block: 64 rows of scores (64×T floats) stay in L2 with the key block.</summary>
    const int AttnGemmRows = 64;

    sealed class AttnGemmScratch
    {
        public float[] Scores = [], Grad = [], Delta = [];
    }

    [ThreadStatic] static AttnGemmScratch? attnGemmScratch;

    static float* Pinned(ref float[] a, int n)
    {
        if (a.Length < n) a = GC.AllocateArray<float>(n, pinned: true);
        return (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(a));
    }

    protected override void AttentionForwardCore(Buf<float> qkv, int B, int T, int H, int Hkv, int D,
        Buf<float> output, Buf<float> logSumExp)
    {
        var layout = new AttnLayout(H, Hkv, D);
        nint qkvP = (nint)AttnPtr(qkv), outP = (nint)AttnPtr(output), lseP = (nint)AttnPtr(logSumExp);
        int qBlocks = (T + AttnGemmRows - 1) / AttnGemmRows;
        ParallelRange(B * H * qBlocks, 1, (start, end) =>
        {
            for (int item = start; item < end; item++)
            {
                int bh = item / qBlocks, qb = item % qBlocks;
                AttentionForwardGemm((float*)qkvP, (float*)outP, (float*)lseP, T, layout,
                    bh / H, bh % H, qb * AttnGemmRows, Math.Min(T, (qb + 1) * AttnGemmRows));
            }
        });
    }

    /// <summary>Queries t0..t1-1 of head h in sequence b: S = q·kᵀ, P = softmax(scale S) row by row, out = P·v.</summary>
    static void AttentionForwardGemm(float* qkv, float* output, float* logSumExp, int T, AttnLayout layout,
        int b, int h, int t0, int t1)
    {
        int D = layout.D, H = layout.H, W = layout.Width, HD = layout.OutWidth, kvh = h / layout.Group;
        int rows = t1 - t0, keys = t1;
        float scale = 1f / MathF.Sqrt(D);
        var s = attnGemmScratch ??= new AttnGemmScratch();
        float* scores = Pinned(ref s.Scores, rows * keys);
        float* seq = qkv + (long)b * T * W;
        float* q = seq + (long)t0 * W + layout.Query(h), k = seq + layout.Key(kvh), v = seq + layout.Value(kvh);

        // S[i, s] = q_i · k_s: B(d, s) = k[s, d] is read through its strides (packed by transposes).
        Gemm.Multiply(rows, keys, D, new StridedMatrix(q, W, 1), new StridedMatrix(k, 1, W),
            scores, keys, null, accumulate: false, serial: true);
        float* lse = logSumExp + ((long)b * H + h) * T;
        for (int i = 0; i < rows; i++)
        {
            int valid = t0 + i + 1;
            var row = new Span<float>(scores + (long)i * keys, keys);
            var seen = row[..valid];
            float max = TensorPrimitives.Max(seen);
            ExpAffine(seen, scale, -scale * max);
            float sum = TensorPrimitives.Sum(seen);
            TensorPrimitives.Multiply(seen, 1f / sum, seen);
            row[valid..].Clear();
            lse[t0 + i] = scale * max + MathF.Log(sum);
        }
        Gemm.Multiply(rows, D, keys, new StridedMatrix(scores, keys, 1), new StridedMatrix(v, W, 1),
            output + ((long)b * T + t0) * HD + h * D, HD, null, accumulate: false, serial: true);
    }

    /// <summary>x = exp(a x + c) in place.</summary>
    static void ExpAffine(Span<float> x, float a, float c)
    {
        int i = 0;
        fixed (float* p = x)
        {
            if (Vector512.IsHardwareAccelerated)
            {
                var va = Vector512.Create(a); var vc = Vector512.Create(c);
                for (; i <= x.Length - 16; i += 16)
                    Vector512.Store(Vector512.Exp(Vector512.FusedMultiplyAdd(Vector512.Load(p + i), va, vc)), p + i);
            }
            else
            {
                var va = Vector256.Create(a); var vc = Vector256.Create(c);
                for (; i <= x.Length - 8; i += 8)
                    Vector256.Store(Vector256.Exp(Vector256.FusedMultiplyAdd(Vector256.Load(p + i), va, vc)), p + i);
            }
        }
        for (; i < x.Length; i++) x[i] = MathF.Exp(a * x[i] + c);
    }

    // ----------------------------------------------------------------- backward

    protected override void AttentionBackwardCore(Buf<float> dOutput, Buf<float> qkv, Buf<float> output,
        Buf<float> logSumExp, int B, int T, int H, int Hkv, int D, Buf<float> dQkv)
    {
        var layout = new AttnLayout(H, Hkv, D);
        nint dOutP = (nint)AttnPtr(dOutput), qkvP = (nint)AttnPtr(qkv), outP = (nint)AttnPtr(output),
             lseP = (nint)AttnPtr(logSumExp), dQkvP = (nint)AttnPtr(dQkv);
        // dK and dV of a key collect contributions from every later query of every query head in its
        // group, so each (b, kv head) is one work item: no two threads ever write the same gradient element.
        ParallelRange(B * Hkv, 1, (start, end) =>
        {
            for (int bkv = start; bkv < end; bkv++)
            {
                int b = bkv / Hkv, kvh = bkv % Hkv;
                ClearKeyValueGrads((float*)dQkvP + (long)b * T * layout.Width, T, layout, kvh);
                for (int h = kvh * layout.Group; h < (kvh + 1) * layout.Group; h++)
                    AttentionBackwardGemm((float*)dOutP, (float*)qkvP, (float*)outP, (float*)lseP, (float*)dQkvP,
                        T, layout, b, h);
            }
        });
    }

    /// <summary>dK and dV of key/value head kvh in one sequence start at zero: every query head of the group adds into them.</summary>
    static void ClearKeyValueGrads(float* dSeq, int T, AttnLayout layout, int kvh)
    {
        for (int t = 0; t < T; t++)
        {
            float* row = dSeq + (long)t * layout.Width;
            new Span<float>(row + layout.Key(kvh), layout.D).Clear();
            new Span<float>(row + layout.Value(kvh), layout.D).Clear();
        }
    }

    /// <summary>
    /// One head of one sequence, query block by query block: P is recomputed from q·kᵀ and logSumExp,
    /// dP = dO·vᵀ, dS = P ∘ (dP − delta) · scale; then dV += Pᵀ·dO, dK += dSᵀ·q and dQ = dS·k.
    /// dK and dV (of query head h's key/value head) must be cleared before its group's first head.
    /// </summary>
    static void AttentionBackwardGemm(float* dOutput, float* qkv, float* output, float* logSumExp, float* dQkv,
        int T, AttnLayout layout, int b, int h)
    {
        int D = layout.D, H = layout.H, W = layout.Width, HD = layout.OutWidth, kvh = h / layout.Group;
        float scale = 1f / MathF.Sqrt(D);
        var s = attnGemmScratch ??= new AttnGemmScratch();
        int maxRows = Math.Min(T, AttnGemmRows);
        float* p = Pinned(ref s.Scores, maxRows * T);
        float* dp = Pinned(ref s.Grad, maxRows * T);
        float* delta = Pinned(ref s.Delta, T);

        float* seq = qkv + (long)b * T * W;
        float* dSeq = dQkv + (long)b * T * W;
        float* k = seq + layout.Key(kvh), v = seq + layout.Value(kvh);
        float* dK = dSeq + layout.Key(kvh), dV = dSeq + layout.Value(kvh);
        float* dO = dOutput + (long)b * T * HD + h * D;
        float* O = output + (long)b * T * HD + h * D;
        float* lse = logSumExp + ((long)b * H + h) * T;

        // delta_t = dO_t · O_t = sum_s P_ts dP_ts, the softmax backward's row term.
        for (int t = 0; t < T; t++)
            delta[t] = TensorPrimitives.Dot(new ReadOnlySpan<float>(dO + (long)t * HD, D), new ReadOnlySpan<float>(O + (long)t * HD, D));

        for (int t0 = 0; t0 < T; t0 += AttnGemmRows)
        {
            int t1 = Math.Min(T, t0 + AttnGemmRows), rows = t1 - t0, keys = t1;
            float* q = seq + (long)t0 * W + layout.Query(h);
            float* dOb = dO + (long)t0 * HD;
            Gemm.Multiply(rows, keys, D, new StridedMatrix(q, W, 1), new StridedMatrix(k, 1, W),
                p, keys, null, accumulate: false, serial: true);
            Gemm.Multiply(rows, keys, D, new StridedMatrix(dOb, HD, 1), new StridedMatrix(v, 1, W),
                dp, keys, null, accumulate: false, serial: true);
            for (int i = 0; i < rows; i++)
            {
                int t = t0 + i, valid = t + 1;
                var pRow = new Span<float>(p + (long)i * keys, keys);
                var dRow = new Span<float>(dp + (long)i * keys, keys);
                var seen = pRow[..valid];
                ExpAffine(seen, scale, -lse[t]);
                pRow[valid..].Clear();
                // dS = P (dP - delta) scale; the masked part of P is 0, so is its dS.
                var dSeen = dRow[..valid];
                TensorPrimitives.Subtract(dSeen, delta[t], dSeen);
                TensorPrimitives.Multiply(dSeen, seen, dSeen);
                TensorPrimitives.Multiply(dSeen, scale, dSeen);
                dRow[valid..].Clear();
            }
            // dV[s] += sum_i P[i, s] dO_i and dK[s] += sum_i dS[i, s] q_i: A(s, i) is P or dS read transposed.
            Gemm.Multiply(keys, D, rows, new StridedMatrix(p, 1, keys), new StridedMatrix(dOb, HD, 1),
                dV, W, null, accumulate: true, serial: true);
            Gemm.Multiply(keys, D, rows, new StridedMatrix(dp, 1, keys), new StridedMatrix(q, W, 1),
                dK, W, null, accumulate: true, serial: true);
            // dQ_i = sum_s dS[i, s] k_s (overwrites).
            Gemm.Multiply(rows, D, keys, new StridedMatrix(dp, keys, 1), new StridedMatrix(k, W, 1),
                dSeq + (long)t0 * W + layout.Query(h), W, null, accumulate: false, serial: true);
        }
    }

    // ------------------------------------------------------------- KV cache

    protected override void KvCacheWriteCore(Buf<float> qkv, int B, int T, int H, int Hkv, int D, int maxT,
        Buf<float> kCache, Buf<float> vCache)
    {
        var layout = new AttnLayout(H, Hkv, D);
        nint qkvP = (nint)AttnPtr(qkv), kP = (nint)AttnPtr(kCache), vP = (nint)AttnPtr(vCache);
        ParallelRange(B * Hkv, 1, (start, end) =>
        {
            for (int bkv = start; bkv < end; bkv++)
            {
                int b = bkv / Hkv, kvh = bkv % Hkv;
                float* src = (float*)qkvP + (long)b * T * layout.Width;
                float* k = (float*)kP + (long)bkv * maxT * D, v = (float*)vP + (long)bkv * maxT * D;
                for (int t = 0; t < T; t++)
                {
                    float* row = src + (long)t * layout.Width;
                    new ReadOnlySpan<float>(row + layout.Key(kvh), D).CopyTo(new Span<float>(k + (long)t * D, D));
                    new ReadOnlySpan<float>(row + layout.Value(kvh), D).CopyTo(new Span<float>(v + (long)t * D, D));
                }
            }
        });
    }

    protected override void AttentionDecodeCore(Buf<float> qkv, Buf<int> positions, int B, int H, int Hkv, int D, int maxT,
        Buf<float> kCache, Buf<float> vCache, Buf<float> output)
    {
        var layout = new AttnLayout(H, Hkv, D);
        var pos = positions.Span;
        for (int b = 0; b < B; b++)
            if ((uint)pos[b] >= (uint)maxT)
                throw new ArgumentOutOfRangeException(nameof(positions), $"positions[{b}] = {pos[b]} is outside the cache [0, {maxT})");
        float* qkvRows = AttnPtr(qkv), kCacheP = AttnPtr(kCache), vCacheP = AttnPtr(vCache);
        // The new keys and values go in before any head attends: the query heads of a group share them.
        for (int b = 0; b < B; b++)
            for (int kvh = 0; kvh < Hkv; kvh++)
            {
                float* row = qkvRows + (long)b * layout.Width;
                long at = ((long)(b * Hkv + kvh) * maxT + pos[b]) * D;
                new ReadOnlySpan<float>(row + layout.Key(kvh), D).CopyTo(new Span<float>(kCacheP + at, D));
                new ReadOnlySpan<float>(row + layout.Value(kvh), D).CopyTo(new Span<float>(vCacheP + at, D));
            }
        nint qkvP = (nint)qkvRows, kP = (nint)kCacheP, vP = (nint)vCacheP, outP = (nint)AttnPtr(output);
        nint posP = (nint)Unsafe.AsPointer(ref MemoryMarshal.GetReference(pos));   // pinned like every cpu buffer
        ParallelRange(B * H, 1, (start, end) =>
        {
            for (int bh = start; bh < end; bh++)
                DecodeHead((float*)qkvP, ((int*)posP)[bh / H], layout, maxT, (float*)kP, (float*)vP, (float*)outP, bh / H, bh % H);
        });
    }

    static void DecodeHead(float* qkv, int position, AttnLayout layout, int maxT, float* kCache, float* vCache,
        float* output, int b, int h)
    {
        int D = layout.D, kvh = h / layout.Group;
        float scale = 1f / MathF.Sqrt(D);
        float* row = qkv + (long)b * layout.Width + layout.Query(h);
        long cacheBase = ((long)b * layout.Hkv + kvh) * maxT * D;
        float* k = kCache + cacheBase, v = vCache + cacheBase;

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
            float* o = output + (long)b * layout.OutWidth + h * D;
            new Span<float>(o, D).Clear();
            WeightedRowSum(scores, n, v, D, o, D);
        }
    }

    // ------------------------------------------------------------ SIMD helpers

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
}
