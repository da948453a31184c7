using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace ArcherIlgpu.Kernels;

/// <summary>
/// Fused causal grouped-query attention kernels (flash-attention style: no T×T matrix in global memory).
/// A qkv row is [q (H·D) | k (Hkv·D) | v (Hkv·D)]; query head h reads key/value head h / (H / Hkv), so
/// with Hkv = H (GPT-2) the kernels are the multi-head ones with one extra integer division.
///
/// Layout shared by all kernels: a group is W warps of 32 lanes. In the forward and the dQ kernel
/// each warp owns one query row of a (b, h, query tile of W rows); keys and values go through shared
/// memory 32 at a time (one key per lane for the scores, one channel per lane for the outputs, so a
/// lane keeps the channels lane, lane+32, lane+64, lane+96 of its row in four registers: D ≤ 128).
/// The dK/dV kernel swaps the roles: each warp owns one key of a key/value head and streams the query
/// tiles of every query head in that head's group, so a shared key's gradient still has one writer.
/// Rows in shared memory use the odd stride 129, so a warp reading one column of 32 rows touches 32
/// different banks whatever D is.
/// A tile's 32 per-lane scores and probabilities are passed between lanes through a small per-warp
/// shared "exchange" array and one warp barrier, not 32 shuffles: on a GPU a broadcast read costs the
/// same as a shuffle, and on the CPU simulator every shuffle is an OS-thread barrier.
/// </summary>
public sealed partial class IlgpuBackend
{
    const int AttnTile = 32;                    // keys (or queries) per shared tile = lanes per warp
    const int AttnMaxHeadSize = 128;            // four channels per lane
    const int AttnStride = AttnMaxHeadSize + 1; // padded row stride in shared memory
    const int AttnMaxWarps = 8;
    const int AttnTileFloats = AttnTile * AttnStride;
    const int AttnRowFloats = AttnMaxWarps * AttnMaxHeadSize;
    const int AttnExchangeFloats = AttnMaxWarps * 2 * AttnTile;   // per warp: 32 scores + 32 probabilities
    const float AttnMasked = -1e30f;            // finite "minus infinity": exp of it is exactly 0, no inf - inf

    Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, int, int, float>? attnForwardKernel;
    Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, int, int, float>? attnDqKernel;
    Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, int, int, float>? attnDkvKernel;
    Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, int, int, int>? attnCacheWriteKernel;
    Action<KernelConfig, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, int, float>? attnDecodeKernel;
    DeviceBuffer<float>? attnDelta;   // [B, H, T] row terms dO·O of the backward, kept between calls

    /// <summary>
    /// Warps per group: 8 on a GPU (a K/V tile is shared by 8 query rows); 4 on the CPU simulator,
    /// where every lane is an OS thread and a barrier over fewer of them is cheaper.
    /// </summary>
    int AttnWarps => Math.Min(Accelerator.AcceleratorType == AcceleratorType.CPU ? 4 : AttnMaxWarps, MaxGroupSize / AttnTile);

    /// <summary>
    /// The shape rules plus the kernels' own limit: a lane holds four channels of a row in registers and
    /// shared rows are sized for AttnMaxHeadSize, so D ≤ 128 (any D up to it, not only powers of two).
    /// </summary>
    /// <summary>What the ILGPU kernels add to <see cref="AttentionShape"/>'s checks (which the public op ran).</summary>
    void CheckAttention(string op, int D)
    {
        if (D > AttnMaxHeadSize)
            throw new NotSupportedException($"{op}: the ILGPU attention kernels support head sizes D up to {AttnMaxHeadSize} (four channels per lane of a 32-lane warp); got D={D}");
        if (WarpSize != AttnTile)
            throw new NotSupportedException($"{op}: the ILGPU attention kernels need a warp of {AttnTile} lanes; this device has {WarpSize}");
    }

    // ------------------------------------------------------------------ forward

    protected override void AttentionForwardCore(Buf<float> qkv, int B, int T, int H, int Hkv, int D,
        Buf<float> output, Buf<float> logSumExp)
    {
        CheckAttention(nameof(AttentionForward), D);
        if (UseFlashAttention) { FlashAttentionForward(qkv, B, T, H, Hkv, D, output, logSumExp); return; }
        attnForwardKernel ??= Accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, int, int, float>(AttnForwardKernel);
        int warps = AttnWarps, qTiles = (T + warps - 1) / warps;
        attnForwardKernel(new KernelConfig(B * H * qTiles, warps * AttnTile),
            qkv.View, output.View, logSumExp.View, T, H, Hkv, D, qTiles, 1f / MathF.Sqrt(D));
    }

    /// <summary>One group per (b, h, tile of W queries); warp w owns query t0 + w.</summary>
    static void AttnForwardKernel(ArrayView<float> qkv, ArrayView<float> output, ArrayView<float> logSumExp,
        int T, int H, int Hkv, int D, int qTiles, float scale)
    {
        var kTile = SharedMemory.Allocate<float>(AttnTileFloats);
        var vTile = SharedMemory.Allocate<float>(AttnTileFloats);
        var qRows = SharedMemory.Allocate<float>(AttnRowFloats);
        var exchange = SharedMemory.Allocate<float>(AttnExchangeFloats);

        int warps = Group.DimX / AttnTile, warp = Group.IdxX / AttnTile, lane = Group.IdxX % AttnTile;
        int bh = Grid.IdxX / qTiles, t0 = (Grid.IdxX % qTiles) * warps;
        int b = bh / H, h = bh % H, kvh = h / (H / Hkv), W = (H + 2 * Hkv) * D;
        int t = t0 + warp;
        int seqBase = b * T * W, qBase = seqBase + h * D;
        int kBase = seqBase + (H + kvh) * D, vBase = kBase + Hkv * D;
        int scores = warp * 2 * AttnTile, probs = scores + AttnTile;

        for (int d = lane; d < D; d += AttnTile)
            qRows[warp * AttnMaxHeadSize + d] = t < T ? qkv[qBase + t * W + d] * scale : 0f;

        float runMax = AttnMasked, runSum = 0f, o0 = 0f, o1 = 0f, o2 = 0f, o3 = 0f;
        int lastQuery = Math.Min(T, t0 + warps) - 1;
        for (int s0 = 0; s0 <= lastQuery; s0 += AttnTile)
        {
            Group.Barrier();   // the previous tile is consumed (and the query rows are written)
            LoadTile(qkv, kBase, W, s0, T, D, kTile);
            LoadTile(qkv, vBase, W, s0, T, D, vTile);
            Group.Barrier();
            if (t >= T || s0 > t) continue;   // uniform per warp

            int key = s0 + lane, keys = Math.Min(AttnTile, t - s0 + 1);
            exchange[scores + lane] = key <= t ? RowDot(qRows, warp * AttnMaxHeadSize, kTile, lane * AttnStride, D) : AttnMasked;
            Warp.Barrier();
            float newMax = XMath.Max(runMax, ExchangeMax(exchange, scores, keys));
            exchange[probs + lane] = key <= t ? XMath.Exp(exchange[scores + lane] - newMax) : 0f;
            Warp.Barrier();
            float correction = XMath.Exp(runMax - newMax);
            runMax = newMax;
            runSum *= correction;
            o0 *= correction; o1 *= correction; o2 *= correction; o3 *= correction;
            for (int j = 0; j < keys; j++)
            {
                float pj = exchange[probs + j];
                runSum += pj;
                int row = j * AttnStride + lane;
                o0 += pj * vTile[row];
                if (D > 32) o1 += pj * vTile[row + 32];
                if (D > 64) o2 += pj * vTile[row + 64];
                if (D > 96) o3 += pj * vTile[row + 96];
            }
        }

        if (t >= T) return;
        float inv = 1f / runSum;
        int outBase = (b * T + t) * H * D + h * D;
        StoreChannels(output, outBase, lane, D, o0 * inv, o1 * inv, o2 * inv, o3 * inv);
        if (lane == 0) logSumExp[bh * T + t] = runMax + XMath.Log(runSum);
    }

    // ----------------------------------------------------------------- backward

    protected override void AttentionBackwardCore(Buf<float> dOutput, Buf<float> qkv, Buf<float> output,
        Buf<float> logSumExp, int B, int T, int H, int Hkv, int D, Buf<float> dQkv)
    {
        CheckAttention(nameof(AttentionBackward), D);
        if (UseFlashAttention) { FlashAttentionBackward(dOutput, qkv, output, logSumExp, B, T, H, Hkv, D, dQkv); return; }
        attnDqKernel ??= Accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, int, int, float>(AttnDqKernel);
        attnDkvKernel ??= Accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, int, int, float>(AttnDkvKernel);
        var delta = AttnDeltaScratch(B * H * T);
        int warps = AttnWarps, tiles = (T + warps - 1) / warps;
        float scale = 1f / MathF.Sqrt(D);
        // dQ first: it also writes delta, which every key's dK needs for all of its queries.
        attnDqKernel(new KernelConfig(B * H * tiles, warps * AttnTile),
            dOutput.View, qkv.View, output.View, logSumExp.View, delta, dQkv.View, T, H, Hkv, D, tiles, scale);
        // One group per (b, kv head, key tile): a shared key's dK/dV sums its whole query-head group in registers.
        attnDkvKernel(new KernelConfig(B * Hkv * tiles, warps * AttnTile),
            dOutput.View, qkv.View, logSumExp.View, delta, dQkv.View, T, H, Hkv, D, tiles, scale);
    }

    ArrayView<float> AttnDeltaScratch(int n) => AttnScratch(ref attnDelta, n);

    /// <summary>The first n elements of a scratch buffer kept between calls, grown when too short.</summary>
    ArrayView<float> AttnScratch(ref DeviceBuffer<float>? buffer, long n)
    {
        if (buffer is null || buffer.Length < n)
        {
            // Growing happens once per larger size; the old buffer may still be read by queued work.
            Stream.Synchronize();
            buffer?.Dispose();
            buffer = Allocate<float>(n);
        }
        return buffer.All.Slice(0, n).View;
    }

    /// <summary>
    /// dQ_t = scale · sum_s P_ts (dP_ts - delta_t) k_s with P recomputed from logSumExp; one group per
    /// (b, h, tile of W queries), warp w owns query t. Also stores delta_t = dO_t · O_t.
    /// </summary>
    static void AttnDqKernel(ArrayView<float> dOutput, ArrayView<float> qkv, ArrayView<float> output,
        ArrayView<float> logSumExp, ArrayView<float> delta, ArrayView<float> dQkv, int T, int H, int Hkv, int D, int qTiles, float scale)
    {
        var kTile = SharedMemory.Allocate<float>(AttnTileFloats);
        var vTile = SharedMemory.Allocate<float>(AttnTileFloats);
        var qRows = SharedMemory.Allocate<float>(AttnRowFloats);
        var dORows = SharedMemory.Allocate<float>(AttnRowFloats);
        var exchange = SharedMemory.Allocate<float>(AttnExchangeFloats);

        int warps = Group.DimX / AttnTile, warp = Group.IdxX / AttnTile, lane = Group.IdxX % AttnTile;
        int bh = Grid.IdxX / qTiles, t0 = (Grid.IdxX % qTiles) * warps;
        int b = bh / H, h = bh % H, kvh = h / (H / Hkv), W = (H + 2 * Hkv) * D, HD = H * D;
        int t = t0 + warp;
        int seqBase = b * T * W, qBase = seqBase + h * D;
        int kBase = seqBase + (H + kvh) * D, vBase = kBase + Hkv * D;
        int rowBase = warp * AttnMaxHeadSize;

        float partialDelta = 0f;
        for (int d = lane; d < D; d += AttnTile)
        {
            bool live = t < T;
            float dO = live ? dOutput[(b * T + t) * HD + h * D + d] : 0f;
            qRows[rowBase + d] = live ? qkv[qBase + t * W + d] : 0f;
            dORows[rowBase + d] = dO;
            partialDelta += live ? dO * output[(b * T + t) * HD + h * D + d] : 0f;
        }
        float rowDelta = WarpSum(partialDelta);
        float rowLse = t < T ? logSumExp[bh * T + t] : 0f;
        if (t < T && lane == 0) delta[bh * T + t] = rowDelta;

        float g0 = 0f, g1 = 0f, g2 = 0f, g3 = 0f;
        int lastQuery = Math.Min(T, t0 + warps) - 1;
        for (int s0 = 0; s0 <= lastQuery; s0 += AttnTile)
        {
            Group.Barrier();
            LoadTile(qkv, kBase, W, s0, T, D, kTile);
            LoadTile(qkv, vBase, W, s0, T, D, vTile);
            Group.Barrier();
            if (t >= T || s0 > t) continue;

            int key = s0 + lane;
            float dScore = 0f;
            if (key <= t)
            {
                float p = XMath.Exp(RowDot(qRows, rowBase, kTile, lane * AttnStride, D) * scale - rowLse);
                float dp = RowDot(dORows, rowBase, vTile, lane * AttnStride, D);
                dScore = p * (dp - rowDelta);
            }
            int dScores = warp * 2 * AttnTile;
            exchange[dScores + lane] = dScore;
            Warp.Barrier();
            int keys = Math.Min(AttnTile, t - s0 + 1);
            for (int j = 0; j < keys; j++)
            {
                float dsj = exchange[dScores + j];
                int row = j * AttnStride + lane;
                g0 += dsj * kTile[row];
                if (D > 32) g1 += dsj * kTile[row + 32];
                if (D > 64) g2 += dsj * kTile[row + 64];
                if (D > 96) g3 += dsj * kTile[row + 96];
            }
        }

        if (t >= T) return;
        StoreChannels(dQkv, qBase + t * W, lane, D, g0 * scale, g1 * scale, g2 * scale, g3 * scale);
    }

    /// <summary>
    /// dV_s = sum_h sum_t P_ts dO_t and dK_s = scale · sum_h sum_t dS_ts q_t over queries t ≥ s of every
    /// query head h of the key's group; one group per (b, kv head, tile of W keys), warp w owns key s,
    /// and query tiles of 32 stream through shared memory, head after head. Every key is owned by exactly
    /// one warp, so nothing is accumulated across groups.
    /// </summary>
    static void AttnDkvKernel(ArrayView<float> dOutput, ArrayView<float> qkv, ArrayView<float> logSumExp,
        ArrayView<float> delta, ArrayView<float> dQkv, int T, int H, int Hkv, int D, int kTiles, float scale)
    {
        var qTile = SharedMemory.Allocate<float>(AttnTileFloats);
        var dOTile = SharedMemory.Allocate<float>(AttnTileFloats);
        var kRows = SharedMemory.Allocate<float>(AttnRowFloats);
        var vRows = SharedMemory.Allocate<float>(AttnRowFloats);
        var lseTile = SharedMemory.Allocate<float>(AttnTile);
        var deltaTile = SharedMemory.Allocate<float>(AttnTile);
        var exchange = SharedMemory.Allocate<float>(AttnExchangeFloats);

        int warps = Group.DimX / AttnTile, warp = Group.IdxX / AttnTile, lane = Group.IdxX % AttnTile;
        int bkv = Grid.IdxX / kTiles, k0 = (Grid.IdxX % kTiles) * warps;
        int b = bkv / Hkv, kvh = bkv % Hkv, group = H / Hkv, W = (H + 2 * Hkv) * D, HD = H * D;
        int s = k0 + warp;
        int seqBase = b * T * W, kBase = seqBase + (H + kvh) * D, vBase = kBase + Hkv * D;
        int rowBase = warp * AttnMaxHeadSize;

        for (int d = lane; d < D; d += AttnTile)
        {
            kRows[rowBase + d] = s < T ? qkv[kBase + s * W + d] : 0f;
            vRows[rowBase + d] = s < T ? qkv[vBase + s * W + d] : 0f;
        }

        float k0Grad = 0f, k1Grad = 0f, k2Grad = 0f, k3Grad = 0f;
        float v0Grad = 0f, v1Grad = 0f, v2Grad = 0f, v3Grad = 0f;
        for (int h = kvh * group; h < (kvh + 1) * group; h++)
        {
            int bh = b * H + h;
            for (int q0 = k0; q0 < T; q0 += AttnTile)
            {
                Group.Barrier();
                LoadTile(qkv, seqBase + h * D, W, q0, T, D, qTile);
                LoadTile(dOutput, b * T * HD + h * D, HD, q0, T, D, dOTile);
                if (Group.IdxX < AttnTile)
                {
                    int q = q0 + Group.IdxX;
                    lseTile[Group.IdxX] = q < T ? logSumExp[bh * T + q] : 0f;
                    deltaTile[Group.IdxX] = q < T ? delta[bh * T + q] : 0f;
                }
                Group.Barrier();
                if (s >= T) continue;

                int query = q0 + lane;
                float p = 0f, dScore = 0f;
                if (query < T && query >= s)
                {
                    p = XMath.Exp(RowDot(kRows, rowBase, qTile, lane * AttnStride, D) * scale - lseTile[lane]);
                    float dp = RowDot(vRows, rowBase, dOTile, lane * AttnStride, D);
                    dScore = p * (dp - deltaTile[lane]);
                }
                int probs = warp * 2 * AttnTile, dScores = probs + AttnTile;
                exchange[probs + lane] = p;
                exchange[dScores + lane] = dScore;
                Warp.Barrier();
                int queries = Math.Min(AttnTile, T - q0);
                for (int i = 0; i < queries; i++)
                {
                    float pi = exchange[probs + i];
                    float dsi = exchange[dScores + i];
                    int row = i * AttnStride + lane;
                    v0Grad += pi * dOTile[row]; k0Grad += dsi * qTile[row];
                    if (D > 32) { v1Grad += pi * dOTile[row + 32]; k1Grad += dsi * qTile[row + 32]; }
                    if (D > 64) { v2Grad += pi * dOTile[row + 64]; k2Grad += dsi * qTile[row + 64]; }
                    if (D > 96) { v3Grad += pi * dOTile[row + 96]; k3Grad += dsi * qTile[row + 96]; }
                }
            }
        }

        if (s >= T) return;
        StoreChannels(dQkv, kBase + s * W, lane, D, k0Grad * scale, k1Grad * scale, k2Grad * scale, k3Grad * scale);
        StoreChannels(dQkv, vBase + s * W, lane, D, v0Grad, v1Grad, v2Grad, v3Grad);
    }

    // ------------------------------------------------------------- KV cache

    protected override void KvCacheWriteCore(Buf<float> qkv, int B, int T, int H, int Hkv, int D, int maxT,
        Buf<float> kCache, Buf<float> vCache)
    {
        CheckAttention(nameof(KvCacheWrite), D);
        attnCacheWriteKernel ??= Accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, int, int, int>(AttnCacheWriteKernel);
        int n = B * Hkv * T * D;
        attnCacheWriteKernel(Linear(n), qkv.View, kCache.View, vCache.View, n, T, H, Hkv, D, maxT);
    }

    /// <summary>One thread per cache element (b, kv head, t, d): consecutive threads write consecutive d.</summary>
    static void AttnCacheWriteKernel(ArrayView<float> qkv, ArrayView<float> kCache, ArrayView<float> vCache,
        int n, int T, int H, int Hkv, int D, int maxT)
    {
        int i = Grid.GlobalIndex.X;
        if (i >= n) return;
        int d = i % D, row = i / D;
        int t = row % T, bkv = row / T;
        int b = bkv / Hkv, kvh = bkv % Hkv;
        int src = (b * T + t) * (H + 2 * Hkv) * D + (H + kvh) * D + d;
        int dst = (bkv * maxT + t) * D + d;
        kCache[dst] = qkv[src];
        vCache[dst] = qkv[src + Hkv * D];
    }

    protected override void AttentionDecodeCore(Buf<float> qkv, Buf<int> positions, int B, int H, int Hkv, int D, int maxT,
        Buf<float> kCache, Buf<float> vCache, Buf<float> output)
    {
        CheckAttention(nameof(AttentionDecode), D);
        attnDecodeKernel ??= Accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, int, float>(AttnDecodeKernel);
        attnDecodeKernel(new KernelConfig(B * H, AttnWarps * AttnTile),
            qkv.View, positions.View, kCache.View, vCache.View, output.View, H, Hkv, D, maxT, 1f / MathF.Sqrt(D));
    }

    /// <summary>
    /// One group per (b, h). The new key and value go into the cache first; then warp w takes key tiles
    /// w, w+W, ... with its own online softmax, and the W partial results are merged at the end.
    /// Every query head of a key/value group writes the same new key and value: groups cannot wait for
    /// each other, and identical values written twice are harmless.
    /// Positions outside [0, maxT) are clamped away: the row's output is left untouched.
    /// </summary>
    static void AttnDecodeKernel(ArrayView<float> qkv, ArrayView<int> positions, ArrayView<float> kCache,
        ArrayView<float> vCache, ArrayView<float> output, int H, int Hkv, int D, int maxT, float scale)
    {
        var qRow = SharedMemory.Allocate<float>(AttnMaxHeadSize);
        var warpMax = SharedMemory.Allocate<float>(AttnMaxWarps);
        var warpSum = SharedMemory.Allocate<float>(AttnMaxWarps);
        var warpOut = SharedMemory.Allocate<float>(AttnRowFloats);
        var exchange = SharedMemory.Allocate<float>(AttnExchangeFloats);

        int warps = Group.DimX / AttnTile, warp = Group.IdxX / AttnTile, lane = Group.IdxX % AttnTile;
        int bh = Grid.IdxX, b = bh / H, h = bh % H, kvh = h / (H / Hkv);
        int scores = warp * 2 * AttnTile, probs = scores + AttnTile;
        int pos = positions[b];
        if (pos < 0 || pos >= maxT) return;   // uniform per group: nothing to attend to
        int cacheBase = (b * Hkv + kvh) * maxT * D;
        int row = b * (H + 2 * Hkv) * D, kSrc = row + (H + kvh) * D, vSrc = kSrc + Hkv * D;

        for (int d = Group.IdxX; d < D; d += Group.DimX)
        {
            qRow[d] = qkv[row + h * D + d] * scale;
            kCache[cacheBase + pos * D + d] = qkv[kSrc + d];
            vCache[cacheBase + pos * D + d] = qkv[vSrc + d];
        }
        Group.Barrier();   // orders the cache writes (global) and qRow (shared) before any read

        float runMax = AttnMasked, runSum = 0f, o0 = 0f, o1 = 0f, o2 = 0f, o3 = 0f;
        for (int s0 = warp * AttnTile; s0 <= pos; s0 += warps * AttnTile)
        {
            int key = s0 + lane, keys = Math.Min(AttnTile, pos - s0 + 1);
            float score = AttnMasked;
            if (key <= pos)
            {
                score = 0f;
                int kRow = cacheBase + key * D;
                for (int d = 0; d < D; d++) score += qRow[d] * kCache[kRow + d];
            }
            exchange[scores + lane] = score;
            Warp.Barrier();
            float newMax = XMath.Max(runMax, ExchangeMax(exchange, scores, keys));
            exchange[probs + lane] = key <= pos ? XMath.Exp(score - newMax) : 0f;
            Warp.Barrier();
            float correction = XMath.Exp(runMax - newMax);
            runMax = newMax;
            runSum *= correction;
            o0 *= correction; o1 *= correction; o2 *= correction; o3 *= correction;
            for (int j = 0; j < keys; j++)
            {
                float pj = exchange[probs + j];
                runSum += pj;
                int vRow = cacheBase + (s0 + j) * D + lane;
                if (lane < D) o0 += pj * vCache[vRow];
                if (lane + 32 < D) o1 += pj * vCache[vRow + 32];
                if (lane + 64 < D) o2 += pj * vCache[vRow + 64];
                if (lane + 96 < D) o3 += pj * vCache[vRow + 96];
            }
            Warp.Barrier();   // every lane has read this tile's exchange slots before the next tile writes them
        }

        if (lane == 0) { warpMax[warp] = runMax; warpSum[warp] = runSum; }
        StoreChannels(warpOut, warp * AttnMaxHeadSize, lane, D, o0, o1, o2, o3);
        Group.Barrier();

        for (int d = Group.IdxX; d < D; d += Group.DimX)
        {
            float max = AttnMasked;
            for (int w = 0; w < warps; w++) max = XMath.Max(max, warpMax[w]);
            float sum = 0f, acc = 0f;
            for (int w = 0; w < warps; w++)
            {
                float weight = XMath.Exp(warpMax[w] - max);   // 0 for a warp that saw no key
                sum += warpSum[w] * weight;
                acc += warpOut[w * AttnMaxHeadSize + d] * weight;
            }
            output[(b * H + h) * D + d] = acc / sum;
        }
    }

    // ------------------------------------------------------------ device helpers

    /// <summary>
    /// Copies rows first..first+31 (channels 0..D-1) of a [T, stride] matrix starting at base into a
    /// padded shared tile; rows at or past T become zeros so that masked lanes never read garbage.
    /// Consecutive threads read consecutive channels (coalesced).
    /// </summary>
    static void LoadTile(ArrayView<float> src, int baseIndex, int stride, int first, int T, int D, ArrayView<float> tile)
    {
        for (int e = Group.IdxX; e < AttnTile * D; e += Group.DimX)
        {
            int r = e / D, d = e - r * D;
            int row = first + r;
            tile[r * AttnStride + d] = row < T ? src[baseIndex + row * stride + d] : 0f;
        }
    }

    /// <summary>sum_d a[aBase + d] * b[bBase + d] over d &lt; D, both in shared memory.</summary>
    static float RowDot(ArrayView<float> a, int aBase, ArrayView<float> b, int bBase, int D)
    {
        float sum = 0f;
        for (int d = 0; d < D; d++) sum += a[aBase + d] * b[bBase + d];
        return sum;
    }

    /// <summary>Writes a lane's four channel registers (lane, lane+32, lane+64, lane+96) where they are below D.</summary>
    static void StoreChannels(ArrayView<float> dst, int baseIndex, int lane, int D, float c0, float c1, float c2, float c3)
    {
        if (lane < D) dst[baseIndex + lane] = c0;
        if (lane + 32 < D) dst[baseIndex + lane + 32] = c1;
        if (lane + 64 < D) dst[baseIndex + lane + 64] = c2;
        if (lane + 96 < D) dst[baseIndex + lane + 96] = c3;
    }

    /// <summary>max of exchange[start .. start+n): every lane reads the same slots (shared-memory broadcast).</summary>
    static float ExchangeMax(ArrayView<float> exchange, int start, int n)
    {
        float max = AttnMasked;
        for (int j = 0; j < n; j++) max = XMath.Max(max, exchange[start + j]);
        return max;
    }

    static float WarpSum(float v)
    {
        for (int offset = AttnTile / 2; offset > 0; offset /= 2) v += Warp.ShuffleXor(v, offset);
        return v;
    }
}
