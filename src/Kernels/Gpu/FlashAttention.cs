using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace ArcherIlgpu.Kernels;

/// <summary>Which kernels run causal attention's forward and backward on an ILGPU backend.</summary>
public enum AttentionKernel
{
    /// <summary>One warp per query (or key) row, dot products along D per lane (Attention.cs).</summary>
    Warp = 0,
    /// <summary>
    /// Register-tiled 64×64 query × key blocks (FlashAttention-2 style, this file). The default on
    /// CUDA, where it was measured (H200, 2026-12-04: forward and backward 3.2–4.3× faster than the
    /// warp kernels at the gpt2, Qwen2.5-0.5B and a D128 shape; the gpt2 B16·T1024 step 1,343 → 1,050
    /// ms); the warp kernels stay the default elsewhere (not measured). <c>ARCHER_ATTENTION=warp|flash</c>
    /// or <see cref="IlgpuBackend.AttentionKernel"/> overrides.
    /// </summary>
    Flash = 1,
}

// Flash-style causal grouped-query attention on float32 CUDA cores, with the same contract and saved
// state as the warp kernels (output, per-row logSumExp of the scaled scores; nothing of size T×T).
//
// Every kernel works on 64×64 blocks of queries × keys with 256 threads: thread (ty, tx) = (t / 16,
// t % 16) holds rows ty·4 .. ty·4+3 and columns tx·4 .. tx·4+3 of a block in 16 registers, and the
// same rows of a 64×D accumulator (columns tx·4.. and, for D > 64, 64 + tx·4..: 16 or 32 registers).
// Products are small GEMMs fed from shared memory as 128-bit reads, 16 deep per staged slice:
//   scores  S = (scale·Q)·Kᵀ and dP = dO·Vᵀ, depth D, from 16-channel slices of the two operands
//           stored transposed ([channel][row], pitch 68);
//   outputs O += P·V, dQ += dS·K, dV += Pᵀ·dO, dK += dSᵀ·(scale·Q), depth = keys or queries, from the
//           P or dS block in shared memory and 16-row slices of V, K, dO or Q ([row][channel], pitch
//           68 or 132).
// Each thread loads its 4 or 8 elements of the next slice into registers before multiplying the
// current one, so global (mostly L2) latency overlaps the arithmetic; two barriers per slice.
// The 16 threads that share a row are 16 adjacent lanes of one warp, so a row's max and sum are
// 4 xor-shuffles. Static shared memory stays under CUDA's 48 KiB (no opt-in for more in ILGPU).
//
// Forward: one group per (b, h, query block), keys 0..end of the block, online softmax (running row
// max and sum; O rescaled when the max grows). Backward: delta_i = dO_i·O_i, then one group per
// (b, h, query block) for dQ (P recomputed from logSumExp, keys 0..diagonal) and one group per
// (b, kv head, key block) for dK and dV (queries from the diagonal to T, every query head of the
// group in turn): each gradient element has exactly one writer, so the results are deterministic
// and no atomics are needed, at the price of recomputing S and dP once more than FA-2 does.
// Grouped-query shapes with few kv heads (Qwen2.5-0.5B: 2) would leave most SMs idle that way, so
// there each query head gets its own dK/dV groups writing partial gradients, which a last kernel
// sums over the group in head order (still deterministic).
public sealed partial class IlgpuBackend
{
    DeviceSetting<AttentionKernel> attentionKernel = new(ParseAttentionKernel(Environment.GetEnvironmentVariable("ARCHER_ATTENTION")));

    /// <summary>What was set, else ARCHER_ATTENTION (see <see cref="ParseAttentionKernel"/>), else <see cref="DefaultAttentionKernel"/>.</summary>
    public AttentionKernel AttentionKernel
    {
        get => attentionKernel.Get(DefaultAttentionKernel(Accelerator.AcceleratorType));
        set => attentionKernel.Set(value);
    }

    /// <summary>Flash on CUDA, where it was measured to win; the warp kernels elsewhere.</summary>
    public static AttentionKernel DefaultAttentionKernel(AcceleratorType type) =>
        type == AcceleratorType.Cuda ? AttentionKernel.Flash : AttentionKernel.Warp;

    /// <summary><c>flash</c> or <c>warp</c>; null (unset, empty or <c>default</c>) for the device's default.</summary>
    public static AttentionKernel? ParseAttentionKernel(string? text) => (text ?? "").Trim().ToLowerInvariant() switch
    {
        "" or "default" => null,
        "warp" => AttentionKernel.Warp,
        "flash" => AttentionKernel.Flash,
        _ => throw new ArgumentException($"ARCHER_ATTENTION must be warp, flash or default, not '{text}'"),
    };

    /// <summary>Queries and keys per block; threads per group (16 × 16, a 4×4 register block each).</summary>
    const int FlashTile = 64, FlashThreads = 256;
    /// <summary>
    /// Shared pitches: a 64-wide row plus 4 floats (16-byte aligned for vector reads; the transposing
    /// stores of a warp spread over the banks), and a 128-channel row plus 4.
    /// </summary>
    const int FlashPitch = FlashTile + 4, FlashWidePitch = 2 * FlashTile + 4;
    /// <summary>
    /// Depth of one staged slice: 16 channels of two operands of a score product ([depth][row]), or 16
    /// rows of one operand of an output product ([row][channel]). Either is one or two quads of 4
    /// consecutive elements per thread, held in registers while the previous slice is multiplied.
    /// </summary>
    const int FlashDepth = 16;
    const int FlashBlockFloats = FlashTile * FlashPitch;
    /// <summary>The staging area: two transposed slices, or (≤) one slice of 16 rows of 128 channels.</summary>
    const int FlashStageFloats = 2 * FlashDepth * FlashPitch;

    Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, int, int, float>? flashForwardKernel, flashForwardWideKernel;
    Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, int, int, float>? flashDqKernel, flashDqWideKernel;
    Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, int, int, float, int>? flashDkvKernel, flashDkvWideKernel;
    Action<KernelConfig, ArrayView<float>, ArrayView<float>, int, int, int, int, int>? flashGroupSumKernel;
    /// <summary>Per-query-head partial dK then dV, [2, B, H, T, D], when the group is split; kept between calls.</summary>
    DeviceBuffer<float>? flashPartials;

    /// <summary>
    /// The dK/dV kernel gives each query head of a kv group its own groups (partials summed after)
    /// when one group per (b, kv head, key block) would launch fewer groups than this: by default
    /// four per SM. Tests set it to 0 (never split) or int.MaxValue (always, when the group is > 1).
    /// </summary>
    internal int FlashSplitBelow { get; set; } = -1;

    bool SplitFlashGroups(int B, int H, int Hkv, int blocks) =>
        H > Hkv && (long)B * Hkv * blocks < (FlashSplitBelow >= 0 ? FlashSplitBelow : 4L * Accelerator.NumMultiprocessors);

    /// <summary>The flash kernels need groups of 256 threads (CUDA: 1024; ilgpu-cpu: 256).</summary>
    bool UseFlashAttention => AttentionKernel == AttentionKernel.Flash && MaxGroupSize >= FlashThreads;

    void FlashAttentionForward(Buf<float> qkv, int B, int T, int H, int Hkv, int D, Buf<float> output, Buf<float> logSumExp)
    {
        var kernel = D > FlashTile
            ? flashForwardWideKernel ??= Accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, int, int, float>(FlashForwardWideKernel)
            : flashForwardKernel ??= Accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, int, int, float>(FlashForwardKernel);
        int blocks = (T + FlashTile - 1) / FlashTile;
        kernel(new KernelConfig(B * H * blocks, FlashThreads), qkv.View, output.View, logSumExp.View, T, H, Hkv, D, blocks, 1f / MathF.Sqrt(D));
    }

    void FlashAttentionBackward(Buf<float> dOutput, Buf<float> qkv, Buf<float> output, Buf<float> logSumExp,
        int B, int T, int H, int Hkv, int D, Buf<float> dQkv)
    {
        bool wide = D > FlashTile;
        var dq = wide
            ? flashDqWideKernel ??= Accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, int, int, float>(FlashDqWideKernel)
            : flashDqKernel ??= Accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, int, int, float>(FlashDqKernel);
        var dkv = wide
            ? flashDkvWideKernel ??= Accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, int, int, float, int>(FlashDkvWideKernel)
            : flashDkvKernel ??= Accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, int, int, float, int>(FlashDkvKernel);
        var delta = AttnDeltaScratch(B * H * T);
        int blocks = (T + FlashTile - 1) / FlashTile;
        float scale = 1f / MathF.Sqrt(D);
        // dQ first: it also writes delta, which the dK/dV groups read for all of their queries.
        dq(new KernelConfig(B * H * blocks, FlashThreads),
            dOutput.View, qkv.View, output.View, logSumExp.View, delta, dQkv.View, T, H, Hkv, D, blocks, scale);
        if (!SplitFlashGroups(B, H, Hkv, blocks))
        {
            dkv(new KernelConfig(B * Hkv * blocks, FlashThreads),
                dOutput.View, qkv.View, logSumExp.View, delta, dQkv.View, dQkv.View, T, H, Hkv, D, blocks, scale, 0);
            return;
        }
        var partials = AttnScratch(ref flashPartials, 2L * B * H * T * D);
        dkv(new KernelConfig(B * H * blocks, FlashThreads),
            dOutput.View, qkv.View, logSumExp.View, delta, dQkv.View, partials, T, H, Hkv, D, blocks, scale, 1);
        flashGroupSumKernel ??= Accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, int, int, int, int, int>(FlashGroupSumKernel);
        int n = B * T * Hkv * D;
        flashGroupSumKernel(Linear(n), partials, dQkv.View, n, T, H, Hkv, D);
    }

    /// <summary>
    /// dK and dV of (b, t, kv head, d) = the sum, in head order, of the partials of the group's query
    /// heads; one thread per element, consecutive threads on consecutive channels.
    /// </summary>
    static void FlashGroupSumKernel(ArrayView<float> partials, ArrayView<float> dQkv, int n, int T, int H, int Hkv, int D)
    {
        int e = Grid.GlobalIndex.X;
        if (e >= n) return;
        int d = e % D, rest = e / D;
        int kvh = rest % Hkv, bt = rest / Hkv;
        int b = bt / T, t = bt % T, group = H / Hkv;
        int half = n / Hkv * H;   // B·H·T·D: dV's partials follow dK's
        float dk = 0f, dv = 0f;
        for (int h = kvh * group; h < (kvh + 1) * group; h++)
        {
            int at = ((b * H + h) * T + t) * D + d;
            dk += partials[at];
            dv += partials[half + at];
        }
        int dst = bt * (H + 2 * Hkv) * D + (H + kvh) * D + d;
        dQkv[dst] = dk;
        dQkv[dst + Hkv * D] = dv;
    }

    // ------------------------------------------------------------------ forward

    static void FlashForwardKernel(ArrayView<float> qkv, ArrayView<float> output, ArrayView<float> logSumExp,
        int T, int H, int Hkv, int D, int blocks, float scale) => FlashForward(qkv, output, logSumExp, T, H, Hkv, D, blocks, scale, false);

    /// <summary>The same for 64 &lt; D ≤ 128: 32 output registers per thread.</summary>
    static void FlashForwardWideKernel(ArrayView<float> qkv, ArrayView<float> output, ArrayView<float> logSumExp,
        int T, int H, int Hkv, int D, int blocks, float scale) => FlashForward(qkv, output, logSumExp, T, H, Hkv, D, blocks, scale, true);

    /// <summary>One group per (b, h, block of 64 queries); the last query blocks (most keys) start first.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void FlashForward(ArrayView<float> qkv, ArrayView<float> output, ArrayView<float> logSumExp,
        int T, int H, int Hkv, int D, int blocks, float scale, bool wide)
    {
        var stage = SharedMemory.Allocate<float>(FlashStageFloats);
        var probs = SharedMemory.Allocate<float>(FlashBlockFloats);   // P[key][query]
        int tx = Group.IdxX % 16, ty = Group.IdxX / 16;
        int bh = Grid.IdxX / blocks, q0 = (blocks - 1 - Grid.IdxX % blocks) * FlashTile;
        int b = bh / H, h = bh % H, kvh = h / (H / Hkv), W = (H + 2 * Hkv) * D;
        int seq = b * T * W, qBase = seq + h * D, kBase = seq + (H + kvh) * D, vBase = kBase + Hkv * D;
        int i0 = q0 + ty * 4;
        int keyEnd = Math.Min(T, q0 + FlashTile);

        FlashBlock oLo = default, oHi = default;
        var rowMax = FlashQuad.All(AttnMasked);
        FlashQuad rowSum = default;
        for (int k0 = 0; k0 < keyEnd; k0 += FlashTile)
        {
            // (its first barrier: the previous key block's P·V is done with probs and the stage)
            var s = ScoreProduct(qkv, qBase, W, q0, scale, qkv, kBase, W, k0, T, D, stage, ty, tx);
            s = s.Masked(i0, k0 + tx * 4, T);
            var newMax = FlashQuad.Max(rowMax, AllMax16(s.RowMax()));
            var correction = FlashQuad.Exp(rowMax.Minus(newMax));
            var p = s.Exp(newMax);
            rowMax = newMax;
            rowSum = rowSum.Times(correction).Plus(p.RowSum());   // this thread's columns only; summed at the end
            oLo = oLo.ScaleRows(correction);
            if (wide) oHi = oHi.ScaleRows(correction);
            StoreTransposed(probs, p, ty, tx);

            OutputProduct(ref oLo, ref oHi, probs, qkv, vBase, W, k0, Math.Min(FlashTile, T - k0), T, D, 1f, stage, ty, tx, wide);
        }

        var total = AllSum16(rowSum);
        var inverse = FlashQuad.All(1f).Over(total);
        int outBase = b * T * H * D + h * D;
        StoreRows(output, outBase, H * D, i0, T, D, tx, oLo.ScaleRows(inverse), oHi.ScaleRows(inverse), wide);
        if (tx == 0)
        {
            var lse = rowMax.Plus(FlashQuad.Log(total));
            int lseBase = bh * T;
            if (i0 < T) logSumExp[lseBase + i0] = lse.X;
            if (i0 + 1 < T) logSumExp[lseBase + i0 + 1] = lse.Y;
            if (i0 + 2 < T) logSumExp[lseBase + i0 + 2] = lse.Z;
            if (i0 + 3 < T) logSumExp[lseBase + i0 + 3] = lse.W;
        }
    }

    // ----------------------------------------------------------------- backward

    static void FlashDqKernel(ArrayView<float> dOutput, ArrayView<float> qkv, ArrayView<float> output, ArrayView<float> logSumExp,
        ArrayView<float> delta, ArrayView<float> dQkv, int T, int H, int Hkv, int D, int blocks, float scale) =>
        FlashDq(dOutput, qkv, output, logSumExp, delta, dQkv, T, H, Hkv, D, blocks, scale, false);

    static void FlashDqWideKernel(ArrayView<float> dOutput, ArrayView<float> qkv, ArrayView<float> output, ArrayView<float> logSumExp,
        ArrayView<float> delta, ArrayView<float> dQkv, int T, int H, int Hkv, int D, int blocks, float scale) =>
        FlashDq(dOutput, qkv, output, logSumExp, delta, dQkv, T, H, Hkv, D, blocks, scale, true);

    /// <summary>
    /// One group per (b, h, block of 64 queries): delta_i = dO_i·O_i (stored for the dK/dV kernel),
    /// then for each key block up to the diagonal P = exp(S − lse), dS = P∘(dP − delta) and
    /// dQ += dS·K; dQ = scale·that.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void FlashDq(ArrayView<float> dOutput, ArrayView<float> qkv, ArrayView<float> output, ArrayView<float> logSumExp,
        ArrayView<float> delta, ArrayView<float> dQkv, int T, int H, int Hkv, int D, int blocks, float scale, bool wide)
    {
        var stage = SharedMemory.Allocate<float>(FlashStageFloats);
        var dScores = SharedMemory.Allocate<float>(FlashBlockFloats);   // dS[key][query]
        var rowTerms = SharedMemory.Allocate<float>(FlashTile);
        int tx = Group.IdxX % 16, ty = Group.IdxX / 16;
        int bh = Grid.IdxX / blocks, q0 = (blocks - 1 - Grid.IdxX % blocks) * FlashTile;
        int b = bh / H, h = bh % H, kvh = h / (H / Hkv), W = (H + 2 * Hkv) * D, HD = H * D;
        int seq = b * T * W, qBase = seq + h * D, kBase = seq + (H + kvh) * D, vBase = kBase + Hkv * D;
        int dOBase = b * T * HD + h * D;
        int i0 = q0 + ty * 4;

        // delta: four threads per query row, channels part, part + 4, ...; summed by two shuffles.
        {
            int r = Group.IdxX / 4, part = Group.IdxX % 4, i = q0 + r;
            float partial = 0f;
            if (i < T)
                for (int d = part; d < D; d += 4)
                    partial += dOutput[dOBase + i * HD + d] * output[dOBase + i * HD + d];
            partial += Warp.ShuffleXor(partial, 1);
            partial += Warp.ShuffleXor(partial, 2);
            if (part == 0)
            {
                rowTerms[r] = partial;
                if (i < T) delta[bh * T + i] = partial;
            }
        }
        // (the first barrier of the loop below publishes rowTerms)

        var lse = LoadRowTerms(logSumExp, bh * T, i0, T);
        FlashBlock gLo = default, gHi = default;
        FlashQuad rowDelta = default;
        int keyEnd = Math.Min(T, q0 + FlashTile);
        for (int k0 = 0; k0 < keyEnd; k0 += FlashTile)
        {
            var s = ScoreProduct(qkv, qBase, W, q0, scale, qkv, kBase, W, k0, T, D, stage, ty, tx);
            var dp = ScoreProduct(dOutput, dOBase, HD, q0, 1f, qkv, vBase, W, k0, T, D, stage, ty, tx);
            if (k0 == 0) rowDelta = LoadRowTerms(rowTerms, 0, ty * 4, FlashTile);
            var p = s.Probabilities(lse, i0, k0 + tx * 4, T);
            StoreTransposed(dScores, p.ScoreGradient(dp, rowDelta), ty, tx);
            OutputProduct(ref gLo, ref gHi, dScores, qkv, kBase, W, k0, Math.Min(FlashTile, T - k0), T, D, 1f, stage, ty, tx, wide);
        }
        var factor = FlashQuad.All(scale);
        StoreRows(dQkv, qBase, W, i0, T, D, tx, gLo.ScaleRows(factor), gHi.ScaleRows(factor), wide);
    }

    static void FlashDkvKernel(ArrayView<float> dOutput, ArrayView<float> qkv, ArrayView<float> logSumExp,
        ArrayView<float> delta, ArrayView<float> dQkv, ArrayView<float> partials, int T, int H, int Hkv, int D, int blocks, float scale, int split) =>
        FlashDkv(dOutput, qkv, logSumExp, delta, dQkv, partials, T, H, Hkv, D, blocks, scale, split, false);

    static void FlashDkvWideKernel(ArrayView<float> dOutput, ArrayView<float> qkv, ArrayView<float> logSumExp,
        ArrayView<float> delta, ArrayView<float> dQkv, ArrayView<float> partials, int T, int H, int Hkv, int D, int blocks, float scale, int split) =>
        FlashDkv(dOutput, qkv, logSumExp, delta, dQkv, partials, T, H, Hkv, D, blocks, scale, split, true);

    /// <summary>
    /// One group per (b, kv head, block of 64 keys), or with split = 1 per (b, query head, block of 64
    /// keys); the first key blocks (most queries) start first. For every query head of the group (or
    /// the one head) and every query block from the diagonal on: P and dS as in dQ, then
    /// dV += Pᵀ·dO and dK += dSᵀ·(scale·Q), the thread's rows being keys this time. Split groups
    /// write their head's partial dK and dV to partials [2, B, H, T, D] instead of dQkv.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void FlashDkv(ArrayView<float> dOutput, ArrayView<float> qkv, ArrayView<float> logSumExp,
        ArrayView<float> delta, ArrayView<float> dQkv, ArrayView<float> partials, int T, int H, int Hkv, int D, int blocks, float scale,
        int split, bool wide)
    {
        var stage = SharedMemory.Allocate<float>(FlashStageFloats);
        var probs = SharedMemory.Allocate<float>(FlashBlockFloats);     // P[query][key]
        var dScores = SharedMemory.Allocate<float>(FlashBlockFloats);   // dS[query][key]
        int tx = Group.IdxX % 16, ty = Group.IdxX / 16;
        int unit = Grid.IdxX / blocks, k0 = (Grid.IdxX % blocks) * FlashTile;
        int group = H / Hkv, W = (H + 2 * Hkv) * D, HD = H * D;
        int b = split != 0 ? unit / H : unit / Hkv;
        int firstHead = split != 0 ? unit % H : unit % Hkv * group, heads = split != 0 ? 1 : group;
        int kvh = firstHead / group;
        int seq = b * T * W, kBase = seq + (H + kvh) * D, vBase = kBase + Hkv * D;

        FlashBlock dkLo = default, dkHi = default, dvLo = default, dvHi = default;
        for (int h = firstHead; h < firstHead + heads; h++)
        {
            int bh = b * H + h, qBase = seq + h * D, dOBase = b * T * HD + h * D;
            for (int q0 = k0; q0 < T; q0 += FlashTile)
            {
                int i0 = q0 + ty * 4;
                // (the first barrier of each product: the previous block's readers of probs, dScores and the stage are done)
                var s = ScoreProduct(qkv, qBase, W, q0, scale, qkv, kBase, W, k0, T, D, stage, ty, tx);
                var dp = ScoreProduct(dOutput, dOBase, HD, q0, 1f, qkv, vBase, W, k0, T, D, stage, ty, tx);
                var p = s.Probabilities(LoadRowTerms(logSumExp, bh * T, i0, T), i0, k0 + tx * 4, T);
                StoreRowsOfBlock(probs, p, ty, tx);
                StoreRowsOfBlock(dScores, p.ScoreGradient(dp, LoadRowTerms(delta, bh * T, i0, T)), ty, tx);

                int queries = Math.Min(FlashTile, T - q0);
                OutputProduct(ref dvLo, ref dvHi, probs, dOutput, dOBase, HD, q0, queries, T, D, 1f, stage, ty, tx, wide);
                OutputProduct(ref dkLo, ref dkHi, dScores, qkv, qBase, W, q0, queries, T, D, scale, stage, ty, tx, wide);
            }
        }
        int j0 = k0 + ty * 4;
        if (split != 0)
        {
            int partBase = unit * T * D, half = partials.IntLength / 2;   // unit = b·H + h
            StoreRows(partials, partBase, D, j0, T, D, tx, dkLo, dkHi, wide);
            StoreRows(partials, half + partBase, D, j0, T, D, tx, dvLo, dvHi, wide);
            return;
        }
        StoreRows(dQkv, kBase, W, j0, T, D, tx, dkLo, dkHi, wide);
        StoreRows(dQkv, vBase, W, j0, T, D, tx, dvLo, dvHi, wide);
    }

    /// <summary>
    /// The 64×64 product A·Bᵀ of rows a0.. of A (times aFactor) and rows b0.. of B over their D
    /// channels, both [T, stride] matrices, in 16-channel slices: the next slice's loads are issued
    /// before the current one is multiplied. Begins with a barrier, so whatever the caller wrote to
    /// shared memory before the call is only overwritten once every thread is done with it.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static FlashBlock ScoreProduct(ArrayView<float> a, int aBase, int aStride, int a0, float aFactor,
        ArrayView<float> b, int bBase, int bStride, int b0, int T, int D, ArrayView<float> stage, int ty, int tx)
    {
        FlashBlock acc = default;
        var staged = LoadScoreSlice(a, aBase, aStride, a0, aFactor, b, bBase, bStride, b0, T, 0, D);
        for (int d0 = 0; d0 < D; d0 += FlashDepth)
        {
            Group.Barrier();   // the stage's previous readers are done
            StoreScoreSlice(stage, staged);
            Group.Barrier();
            if (d0 + FlashDepth < D)
                staged = LoadScoreSlice(a, aBase, aStride, a0, aFactor, b, bBase, bStride, b0, T, d0 + FlashDepth, D);
            acc.AddProducts(stage, 0, FlashDepth * FlashPitch, FlashDepth, ty, tx);
        }
        return acc;
    }

    /// <summary>
    /// acc += block·R over `count` depth rows: the block (P or dS in shared memory, depth index major)
    /// times rows r0 .. r0+count-1 of R (a [T, stride] matrix, times factor), in 16-row slices with the
    /// next slice's loads in flight while the current one is multiplied. Begins with a barrier (the
    /// block is stored; the stage's previous readers are done).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void OutputProduct(ref FlashBlock lo, ref FlashBlock hi, ArrayView<float> block,
        ArrayView<float> r, int rBase, int rStride, int r0, int count, int T, int D, float factor,
        ArrayView<float> stage, int ty, int tx, bool wide)
    {
        var staged = LoadRowSlice(r, rBase, rStride, r0, T, D, factor, wide);
        for (int p0 = 0; p0 < count; p0 += FlashDepth)
        {
            Group.Barrier();
            StoreRowSlice(stage, staged, wide);
            Group.Barrier();
            if (p0 + FlashDepth < count) staged = LoadRowSlice(r, rBase, rStride, r0 + p0 + FlashDepth, T, D, factor, wide);
            AccumulateRows(ref lo, ref hi, block, p0, stage, 0, FlashDepth, ty, tx, wide);
        }
    }

    // ------------------------------------------------------------ shared-memory staging

    /// <summary>A thread's share of one staged slice: two quads of 4 consecutive elements.</summary>
    internal struct FlashStaged
    {
        public FlashQuad A, B;
    }

    /// <summary>
    /// Channels d0..d0+15 of rows a0..a0+63 of A and b0..b0+63 of B: thread t takes row t / 4,
    /// channels d0 + (t % 4)·4 .. +3 of each (4 threads read 64 contiguous bytes of a row). Rows at or
    /// past T and channels at or past D are zeros.
    /// </summary>
    static FlashStaged LoadScoreSlice(ArrayView<float> a, int aBase, int aStride, int a0, float aFactor,
        ArrayView<float> b, int bBase, int bStride, int b0, int T, int d0, int D)
    {
        int r = Group.IdxX / 4, d = d0 + Group.IdxX % 4 * 4;
        return new FlashStaged
        {
            A = LoadQuad(a, aBase, aStride, a0 + r, T, d, D, aFactor),
            B = LoadQuad(b, bBase, bStride, b0 + r, T, d, D, 1f),
        };
    }

    /// <summary>Transposed: A's slice at stage[channel·68 + row], B's after it (2-way bank conflicts at most).</summary>
    static void StoreScoreSlice(ArrayView<float> stage, FlashStaged v)
    {
        int r = Group.IdxX / 4, at = Group.IdxX % 4 * 4 * FlashPitch + r;
        const int b = FlashDepth * FlashPitch;
        stage[at] = v.A.X; stage[at + FlashPitch] = v.A.Y; stage[at + 2 * FlashPitch] = v.A.Z; stage[at + 3 * FlashPitch] = v.A.W;
        stage[b + at] = v.B.X; stage[b + at + FlashPitch] = v.B.Y; stage[b + at + 2 * FlashPitch] = v.B.Z; stage[b + at + 3 * FlashPitch] = v.B.W;
    }

    /// <summary>
    /// Rows r0..r0+15 of R, channels 0..63 (and 64..127 when wide): thread t takes row t / 16,
    /// channels (t % 16)·4 .. +3 (and 64 + those). Outside rows and channels are zeros.
    /// </summary>
    static FlashStaged LoadRowSlice(ArrayView<float> r, int rBase, int rStride, int r0, int T, int D, float factor, bool wide)
    {
        int row = r0 + Group.IdxX / 16, d = Group.IdxX % 16 * 4;
        return new FlashStaged
        {
            A = LoadQuad(r, rBase, rStride, row, T, d, D, factor),
            B = wide ? LoadQuad(r, rBase, rStride, row, T, d + FlashTile, D, factor) : default,
        };
    }

    /// <summary>As rows: stage[row·pitch + channel], one 128-bit store per quad (pitch 68, or 132 when wide).</summary>
    static void StoreRowSlice(ArrayView<float> stage, FlashStaged v, bool wide)
    {
        var quads = stage.Cast<FlashQuad>();
        int at = Group.IdxX / 16 * ((wide ? FlashWidePitch : FlashPitch) / 4) + Group.IdxX % 16;
        quads[at] = v.A;
        if (wide) quads[at + FlashTile / 4] = v.B;
    }

    /// <summary>src[base + row·stride + d .. d+3] times factor; zeros for a row at or past T or a channel at or past D.</summary>
    static FlashQuad LoadQuad(ArrayView<float> src, int baseIndex, int stride, int row, int T, int d, int D, float factor)
    {
        if (row >= T) return default;
        int at = baseIndex + row * stride + d;
        return new FlashQuad
        {
            X = d < D ? src[at] * factor : 0f,
            Y = d + 1 < D ? src[at + 1] * factor : 0f,
            Z = d + 2 < D ? src[at + 2] * factor : 0f,
            W = d + 3 < D ? src[at + 3] * factor : 0f,
        };
    }

    /// <summary>Stores a block transposed: element (row a, column c) goes to block[(tx·4 + c)·68 + ty·4 + a].</summary>
    static void StoreTransposed(ArrayView<float> block, FlashBlock x, int ty, int tx)
    {
        var quads = block.Cast<FlashQuad>();
        int at = tx * 4 * (FlashPitch / 4) + ty;
        quads[at] = new FlashQuad { X = x.R0.X, Y = x.R1.X, Z = x.R2.X, W = x.R3.X };
        quads[at + FlashPitch / 4] = new FlashQuad { X = x.R0.Y, Y = x.R1.Y, Z = x.R2.Y, W = x.R3.Y };
        quads[at + 2 * (FlashPitch / 4)] = new FlashQuad { X = x.R0.Z, Y = x.R1.Z, Z = x.R2.Z, W = x.R3.Z };
        quads[at + 3 * (FlashPitch / 4)] = new FlashQuad { X = x.R0.W, Y = x.R1.W, Z = x.R2.W, W = x.R3.W };
    }

    /// <summary>Stores a block as it is: row a goes to block[(ty·4 + a)·68 + tx·4 ..].</summary>
    static void StoreRowsOfBlock(ArrayView<float> block, FlashBlock x, int ty, int tx)
    {
        var quads = block.Cast<FlashQuad>();
        int at = ty * 4 * (FlashPitch / 4) + tx;
        quads[at] = x.R0;
        quads[at + FlashPitch / 4] = x.R1;
        quads[at + 2 * (FlashPitch / 4)] = x.R2;
        quads[at + 3 * (FlashPitch / 4)] = x.R3;
    }

    /// <summary>
    /// acc += A·R over depth rows p = 0..depth-1: A's column p is block[(first + p)·68 + ty·4 ..]
    /// (a P or dS block stored with the depth index major) and R's row p the staged row slice.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void AccumulateRows(ref FlashBlock lo, ref FlashBlock hi, ArrayView<float> block, int first,
        ArrayView<float> stage, int offset, int depth, int ty, int tx, bool wide)
    {
        var a = block.Cast<FlashQuad>();
        var r = stage.Cast<FlashQuad>();
        int pitch = wide ? FlashWidePitch : FlashPitch;
        for (int p = 0; p < depth; p++)
        {
            var column = a[(first + p) * (FlashPitch / 4) + ty];
            int row = (offset + p * pitch) / 4 + tx;
            lo.AddOuter(column, r[row]);
            if (wide) hi.AddOuter(column, r[row + FlashTile / 4]);
        }
    }

    /// <summary>values[base + i0 .. i0+3] where below limit, else 0.</summary>
    static FlashQuad LoadRowTerms(ArrayView<float> values, int baseIndex, int i0, int limit) => new()
    {
        X = i0 < limit ? values[baseIndex + i0] : 0f,
        Y = i0 + 1 < limit ? values[baseIndex + i0 + 1] : 0f,
        Z = i0 + 2 < limit ? values[baseIndex + i0 + 2] : 0f,
        W = i0 + 3 < limit ? values[baseIndex + i0 + 3] : 0f,
    };

    /// <summary>Rows i0..i0+3 (below T) of a [T, stride] matrix, channels tx·4.. and, when wide, 64 + tx·4.. (below D).</summary>
    static void StoreRows(ArrayView<float> dst, int baseIndex, int stride, int i0, int T, int D, int tx,
        FlashBlock lo, FlashBlock hi, bool wide)
    {
        StoreRow(dst, baseIndex, stride, i0, T, D, tx * 4, lo.R0); StoreRow(dst, baseIndex, stride, i0 + 1, T, D, tx * 4, lo.R1);
        StoreRow(dst, baseIndex, stride, i0 + 2, T, D, tx * 4, lo.R2); StoreRow(dst, baseIndex, stride, i0 + 3, T, D, tx * 4, lo.R3);
        if (!wide) return;
        int c = FlashTile + tx * 4;
        StoreRow(dst, baseIndex, stride, i0, T, D, c, hi.R0); StoreRow(dst, baseIndex, stride, i0 + 1, T, D, c, hi.R1);
        StoreRow(dst, baseIndex, stride, i0 + 2, T, D, c, hi.R2); StoreRow(dst, baseIndex, stride, i0 + 3, T, D, c, hi.R3);
    }

    static void StoreRow(ArrayView<float> dst, int baseIndex, int stride, int i, int T, int D, int c, FlashQuad v)
    {
        if (i >= T) return;
        int at = baseIndex + i * stride + c;
        if (c < D) dst[at] = v.X;
        if (c + 1 < D) dst[at + 1] = v.Y;
        if (c + 2 < D) dst[at + 2] = v.Z;
        if (c + 3 < D) dst[at + 3] = v.W;
    }

    /// <summary>Max over the 16 lanes that share a row (adjacent lanes: xor offsets below 16 stay among them).</summary>
    static FlashQuad AllMax16(FlashQuad v)
    {
        for (int offset = 8; offset > 0; offset /= 2)
            v = FlashQuad.Max(v, new FlashQuad
            {
                X = Warp.ShuffleXor(v.X, offset), Y = Warp.ShuffleXor(v.Y, offset),
                Z = Warp.ShuffleXor(v.Z, offset), W = Warp.ShuffleXor(v.W, offset),
            });
        return v;
    }

    static FlashQuad AllSum16(FlashQuad v)
    {
        for (int offset = 8; offset > 0; offset /= 2)
            v = v.Plus(new FlashQuad
            {
                X = Warp.ShuffleXor(v.X, offset), Y = Warp.ShuffleXor(v.Y, offset),
                Z = Warp.ShuffleXor(v.Z, offset), W = Warp.ShuffleXor(v.W, offset),
            });
        return v;
    }

    /// <summary>Four floats: one 128-bit shared-memory access, or one value per row of a thread's block.</summary>
    internal struct FlashQuad
    {
        public float X, Y, Z, W;

        public static FlashQuad All(float v) => new() { X = v, Y = v, Z = v, W = v };
        public static FlashQuad Max(FlashQuad a, FlashQuad b) => new() { X = XMath.Max(a.X, b.X), Y = XMath.Max(a.Y, b.Y), Z = XMath.Max(a.Z, b.Z), W = XMath.Max(a.W, b.W) };
        public static FlashQuad Exp(FlashQuad a) => new() { X = XMath.Exp(a.X), Y = XMath.Exp(a.Y), Z = XMath.Exp(a.Z), W = XMath.Exp(a.W) };
        public static FlashQuad Log(FlashQuad a) => new() { X = XMath.Log(a.X), Y = XMath.Log(a.Y), Z = XMath.Log(a.Z), W = XMath.Log(a.W) };
        public readonly FlashQuad Plus(FlashQuad b) => new() { X = X + b.X, Y = Y + b.Y, Z = Z + b.Z, W = W + b.W };
        public readonly FlashQuad Minus(FlashQuad b) => new() { X = X - b.X, Y = Y - b.Y, Z = Z - b.Z, W = W - b.W };
        public readonly FlashQuad Times(FlashQuad b) => new() { X = X * b.X, Y = Y * b.Y, Z = Z * b.Z, W = W * b.W };
        public readonly FlashQuad Over(FlashQuad b) => new() { X = X / b.X, Y = Y / b.Y, Z = Z / b.Z, W = W / b.W };
        public readonly FlashQuad Scaled(float f) => new() { X = X * f, Y = Y * f, Z = Z * f, W = W * f };
        public readonly float Max() => XMath.Max(XMath.Max(X, Y), XMath.Max(Z, W));
        public readonly float Sum() => X + Y + Z + W;
    }

    /// <summary>
    /// A thread's 4×4 block of a 64×64 tile (rows R0..R3, four columns each) or of a 64×D accumulator.
    /// Element (a, c) is row i0 + a, column j0 + c of the tile.
    /// </summary>
    internal struct FlashBlock
    {
        public FlashQuad R0, R1, R2, R3;

        /// <summary>this += column ⊗ row (16 multiply-adds; ptxas contracts them to FFMA).</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void AddOuter(FlashQuad column, FlashQuad row)
        {
            R0.X += column.X * row.X; R0.Y += column.X * row.Y; R0.Z += column.X * row.Z; R0.W += column.X * row.W;
            R1.X += column.Y * row.X; R1.Y += column.Y * row.Y; R1.Z += column.Y * row.Z; R1.W += column.Y * row.W;
            R2.X += column.Z * row.X; R2.Y += column.Z * row.Y; R2.Z += column.Z * row.Z; R2.W += column.Z * row.W;
            R3.X += column.W * row.X; R3.Y += column.W * row.Y; R3.Z += column.W * row.Z; R3.W += column.W * row.W;
        }

        /// <summary>this += A·B over a staged pair of transposed slices: A rows ty·4.., B columns tx·4...</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void AddProducts(ArrayView<float> stage, int aOffset, int bOffset, int depth, int ty, int tx)
        {
            var quads = stage.Cast<FlashQuad>();
            for (int p = 0; p < depth; p++)
                AddOuter(quads[(aOffset + p * FlashPitch) / 4 + ty], quads[(bOffset + p * FlashPitch) / 4 + tx]);
        }

        public readonly FlashBlock ScaleRows(FlashQuad f) => new() { R0 = R0.Scaled(f.X), R1 = R1.Scaled(f.Y), R2 = R2.Scaled(f.Z), R3 = R3.Scaled(f.W) };
        public readonly FlashQuad RowMax() => new() { X = R0.Max(), Y = R1.Max(), Z = R2.Max(), W = R3.Max() };
        public readonly FlashQuad RowSum() => new() { X = R0.Sum(), Y = R1.Sum(), Z = R2.Sum(), W = R3.Sum() };

        /// <summary>Scores the causal mask hides (key j > query i, or a padding query i ≥ T) become <see cref="AttnMasked"/>.</summary>
        public readonly FlashBlock Masked(int i0, int j0, int T) => new()
        {
            R0 = MaskRow(R0, i0, j0, T), R1 = MaskRow(R1, i0 + 1, j0, T),
            R2 = MaskRow(R2, i0 + 2, j0, T), R3 = MaskRow(R3, i0 + 3, j0, T),
        };

        /// <summary>exp(s − max of the row), and exactly 0 for masked scores.</summary>
        public readonly FlashBlock Exp(FlashQuad max) => new()
        {
            R0 = ExpRow(R0, max.X), R1 = ExpRow(R1, max.Y), R2 = ExpRow(R2, max.Z), R3 = ExpRow(R3, max.W),
        };

        /// <summary>P = exp(S − lse_i) where the causal mask allows, else 0 (the backward's recomputation).</summary>
        public readonly FlashBlock Probabilities(FlashQuad lse, int i0, int j0, int T) =>
            Masked(i0, j0, T).Exp(lse);

        /// <summary>dS = P ∘ (dP − delta_i), this being P.</summary>
        public readonly FlashBlock ScoreGradient(FlashBlock dp, FlashQuad delta) => new()
        {
            R0 = R0.Times(dp.R0.Minus(FlashQuad.All(delta.X))), R1 = R1.Times(dp.R1.Minus(FlashQuad.All(delta.Y))),
            R2 = R2.Times(dp.R2.Minus(FlashQuad.All(delta.Z))), R3 = R3.Times(dp.R3.Minus(FlashQuad.All(delta.W))),
        };

        static FlashQuad MaskRow(FlashQuad s, int i, int j0, int T)
        {
            bool live = i < T;
            return new()
            {
                X = live && j0 <= i ? s.X : AttnMasked, Y = live && j0 + 1 <= i ? s.Y : AttnMasked,
                Z = live && j0 + 2 <= i ? s.Z : AttnMasked, W = live && j0 + 3 <= i ? s.W : AttnMasked,
            };
        }

        static FlashQuad ExpRow(FlashQuad s, float max) => new()
        {
            X = s.X > AttnMasked ? XMath.Exp(s.X - max) : 0f, Y = s.Y > AttnMasked ? XMath.Exp(s.Y - max) : 0f,
            Z = s.Z > AttnMasked ? XMath.Exp(s.Z - max) : 0f, W = s.W > AttnMasked ? XMath.Exp(s.W - max) : 0f,
        };
    }
}
