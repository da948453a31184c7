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
    /// Register-tiled 64×64 query × key blocks (FlashAttention-2 style, this file). Off by default
    /// until measured on a GPU: <c>ARCHER_ATTENTION=flash</c> or <see cref="IlgpuBackend.AttentionKernel"/>.
    /// </summary>
    Flash = 1,
}

// Flash-style causal grouped-query attention on float32 CUDA cores, with the same contract and saved
// state as the warp kernels (output, per-row logSumExp of the scaled scores; nothing of size T×T).
//
// Every kernel works on 64×64 blocks of queries × keys with 256 threads: thread (ty, tx) = (t / 16,
// t % 16) holds rows ty·4 .. ty·4+3 and columns tx·4 .. tx·4+3 of a block in 16 registers, and the
// same rows of a 64×D accumulator (columns tx·4.. and, for D > 64, 64 + tx·4..: 16 or 32 registers).
// Products are small GEMMs fed from shared memory as 128-bit reads:
//   scores  S = (scale·Q)·Kᵀ and dP = dO·Vᵀ, depth D, from depth slices of Q, K, dO, V stored
//           transposed ([depth][row], pitch 68);
//   outputs O += P·V, dQ += dS·K, dV += Pᵀ·dO, dK += dSᵀ·(scale·Q), depth = keys or queries, from the
//           P or dS block in shared memory and row slices of V, K, dO or Q ([row][channel], pitch 132).
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
    /// <summary>Defaults to the ARCHER_ATTENTION environment variable (see <see cref="ParseAttentionKernel"/>).</summary>
    public AttentionKernel AttentionKernel { get; set; } = ParseAttentionKernel(Environment.GetEnvironmentVariable("ARCHER_ATTENTION"));

    /// <summary><c>flash</c>, or empty, <c>warp</c> or <c>default</c> for the warp kernels.</summary>
    public static AttentionKernel ParseAttentionKernel(string? text) => (text ?? "").Trim().ToLowerInvariant() switch
    {
        "" or "warp" or "default" => AttentionKernel.Warp,
        "flash" => AttentionKernel.Flash,
        _ => throw new ArgumentException($"ARCHER_ATTENTION must be warp or flash, not '{text}'"),
    };

    /// <summary>Queries and keys per block; threads per group (16 × 16, a 4×4 register block each).</summary>
    const int FlashTile = 64, FlashThreads = 256;
    /// <summary>
    /// Shared pitches: a 64-wide row plus 4 floats (16-byte aligned for vector reads; the transposing
    /// stores of a warp spread over the banks), and a 128-channel row plus 4.
    /// </summary>
    const int FlashPitch = FlashTile + 4, FlashWidePitch = 2 * FlashTile + 4;
    /// <summary>
    /// Depth of one staged slice (channels of the score products, keys or queries of the others): as
    /// deep as the kernel's shared memory allows, for fewer barriers. Forward: 32 (two operands at a
    /// time); dQ: 16 for the four score operands, 32 for K's rows; dK/dV: 8 (two blocks live there).
    /// </summary>
    const int FlashForwardDepth = 32, FlashDqDepth = 16, FlashDqRowDepth = 32, FlashDkvDepth = 8;
    const int FlashBlockFloats = FlashTile * FlashPitch;
    /// <summary>
    /// Staging areas, each the larger of what its kernel stages at once: forward 2 transposed slices
    /// (Q, K) or a 128-channel row slice of V; dQ 4 transposed slices (Q, K, dO, V) or a row slice of K;
    /// dK/dV 4 transposed slices or row slices of dO and Q.
    /// </summary>
    const int FlashForwardStageFloats = 2 * FlashForwardDepth * FlashPitch;
    const int FlashDqStageFloats = 4 * FlashDqDepth * FlashPitch;
    const int FlashDkvStageFloats = 4 * FlashDkvDepth * FlashPitch;

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
        var partials = FlashPartialsScratch(2L * B * H * T * D);
        dkv(new KernelConfig(B * H * blocks, FlashThreads),
            dOutput.View, qkv.View, logSumExp.View, delta, dQkv.View, partials, T, H, Hkv, D, blocks, scale, 1);
        flashGroupSumKernel ??= Accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, int, int, int, int, int>(FlashGroupSumKernel);
        int n = B * T * Hkv * D;
        flashGroupSumKernel(Linear(n), partials, dQkv.View, n, T, H, Hkv, D);
    }

    ArrayView<float> FlashPartialsScratch(long n)
    {
        if (flashPartials is null || flashPartials.Length < n)
        {
            // Growing happens once per larger size; the old buffer may still be read by queued work.
            Stream.Synchronize();
            flashPartials?.Dispose();
            flashPartials = Allocate<float>(n);
        }
        return flashPartials.All.Slice(0, n).View;
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
        var stage = SharedMemory.Allocate<float>(FlashForwardStageFloats);
        var probs = SharedMemory.Allocate<float>(FlashBlockFloats);   // P[key][query]
        int tx = Group.IdxX % 16, ty = Group.IdxX / 16;
        int bh = Grid.IdxX / blocks, q0 = (blocks - 1 - Grid.IdxX % blocks) * FlashTile;
        int b = bh / H, h = bh % H, kvh = h / (H / Hkv), W = (H + 2 * Hkv) * D;
        int seq = b * T * W, qBase = seq + h * D, kBase = seq + (H + kvh) * D, vBase = kBase + Hkv * D;
        int i0 = q0 + ty * 4;
        int keyEnd = Math.Min(T, q0 + FlashTile);
        const int keySlice = FlashForwardDepth * FlashPitch;   // K's slice follows Q's

        FlashBlock oLo = default, oHi = default;
        var rowMax = FlashQuad.All(AttnMasked);
        FlashQuad rowSum = default;
        for (int k0 = 0; k0 < keyEnd; k0 += FlashTile)
        {
            FlashBlock s = default;
            for (int d0 = 0; d0 < D; d0 += FlashForwardDepth)
            {
                Group.Barrier();   // the previous slices (and the previous P·V) are consumed
                StageTransposed(qkv, qBase, W, q0, T, d0, D, scale, stage, 0, FlashForwardDepth);
                StageTransposed(qkv, kBase, W, k0, T, d0, D, 1f, stage, keySlice, FlashForwardDepth);
                Group.Barrier();
                s.AddProducts(stage, 0, keySlice, FlashForwardDepth, ty, tx);
            }

            s = s.Masked(i0, k0 + tx * 4, T);
            var newMax = FlashQuad.Max(rowMax, AllMax16(s.RowMax()));
            var correction = FlashQuad.Exp(rowMax.Minus(newMax));
            var p = s.Exp(newMax);
            rowMax = newMax;
            rowSum = rowSum.Times(correction).Plus(p.RowSum());   // this thread's columns only; summed at the end
            oLo = oLo.ScaleRows(correction);
            if (wide) oHi = oHi.ScaleRows(correction);
            StoreTransposed(probs, p, ty, tx);

            int keys = Math.Min(FlashTile, T - k0);
            for (int j0 = 0; j0 < keys; j0 += FlashForwardDepth)
            {
                Group.Barrier();   // P is stored; the previous slice is consumed
                StageRows(qkv, vBase, W, k0 + j0, T, D, 1f, stage, 0, FlashForwardDepth, wide);
                Group.Barrier();
                AccumulateRows(ref oLo, ref oHi, probs, j0, stage, 0, FlashForwardDepth, ty, tx, wide);
            }
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
        var stage = SharedMemory.Allocate<float>(FlashDqStageFloats);
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
            var (s, dp) = ScoresAndGradients(qkv, dOutput, qBase, kBase, vBase, dOBase, W, HD, q0, k0, T, D, scale, stage, FlashDqDepth, ty, tx);
            if (k0 == 0) rowDelta = LoadRowTerms(rowTerms, 0, ty * 4, FlashTile);
            var p = s.Probabilities(lse, i0, k0 + tx * 4, T);
            StoreTransposed(dScores, p.ScoreGradient(dp, rowDelta), ty, tx);

            int keys = Math.Min(FlashTile, T - k0);
            for (int j0 = 0; j0 < keys; j0 += FlashDqRowDepth)
            {
                Group.Barrier();   // dS is stored; the previous slice is consumed
                StageRows(qkv, kBase, W, k0 + j0, T, D, 1f, stage, 0, FlashDqRowDepth, wide);
                Group.Barrier();
                AccumulateRows(ref gLo, ref gHi, dScores, j0, stage, 0, FlashDqRowDepth, ty, tx, wide);
            }
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
        var stage = SharedMemory.Allocate<float>(FlashDkvStageFloats);
        var probs = SharedMemory.Allocate<float>(FlashBlockFloats);     // P[query][key]
        var dScores = SharedMemory.Allocate<float>(FlashBlockFloats);   // dS[query][key]
        int tx = Group.IdxX % 16, ty = Group.IdxX / 16;
        int unit = Grid.IdxX / blocks, k0 = (Grid.IdxX % blocks) * FlashTile;
        int group = H / Hkv, W = (H + 2 * Hkv) * D, HD = H * D;
        int b = split != 0 ? unit / H : unit / Hkv;
        int firstHead = split != 0 ? unit % H : unit % Hkv * group, heads = split != 0 ? 1 : group;
        int kvh = firstHead / group;
        int seq = b * T * W, kBase = seq + (H + kvh) * D, vBase = kBase + Hkv * D;
        const int rowSlice = FlashDkvDepth * FlashWidePitch;

        FlashBlock dkLo = default, dkHi = default, dvLo = default, dvHi = default;
        for (int h = firstHead; h < firstHead + heads; h++)
        {
            int bh = b * H + h, qBase = seq + h * D, dOBase = b * T * HD + h * D;
            for (int q0 = k0; q0 < T; q0 += FlashTile)
            {
                int i0 = q0 + ty * 4;
                var (s, dp) = ScoresAndGradients(qkv, dOutput, qBase, kBase, vBase, dOBase, W, HD, q0, k0, T, D, scale, stage, FlashDkvDepth, ty, tx);
                var p = s.Probabilities(LoadRowTerms(logSumExp, bh * T, i0, T), i0, k0 + tx * 4, T);
                StoreRowsOfBlock(probs, p, ty, tx);
                StoreRowsOfBlock(dScores, p.ScoreGradient(dp, LoadRowTerms(delta, bh * T, i0, T)), ty, tx);

                int queries = Math.Min(FlashTile, T - q0);
                for (int r0 = 0; r0 < queries; r0 += FlashDkvDepth)
                {
                    Group.Barrier();   // P and dS are stored; the previous slices are consumed
                    StageRows(dOutput, dOBase, HD, q0 + r0, T, D, 1f, stage, 0, FlashDkvDepth, wide);
                    StageRows(qkv, qBase, W, q0 + r0, T, D, scale, stage, rowSlice, FlashDkvDepth, wide);
                    Group.Barrier();
                    AccumulateRows(ref dvLo, ref dvHi, probs, r0, stage, 0, FlashDkvDepth, ty, tx, wide);
                    AccumulateRows(ref dkLo, ref dkHi, dScores, r0, stage, rowSlice, FlashDkvDepth, ty, tx, wide);
                }
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
    /// S = (scale·Q)·Kᵀ and dP = dO·Vᵀ for queries q0.. × keys k0.. (depth D in slices): rows are
    /// queries in both. Begins with a barrier, so the caller's shared blocks may be rewritten after it.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static (FlashBlock S, FlashBlock DP) ScoresAndGradients(ArrayView<float> qkv, ArrayView<float> dOutput,
        int qBase, int kBase, int vBase, int dOBase, int W, int HD, int q0, int k0, int T, int D, float scale,
        ArrayView<float> stage, int depth, int ty, int tx)
    {
        int slice = depth * FlashPitch;
        FlashBlock s = default, dp = default;
        for (int d0 = 0; d0 < D; d0 += depth)
        {
            Group.Barrier();
            StageTransposed(qkv, qBase, W, q0, T, d0, D, scale, stage, 0, depth);
            StageTransposed(qkv, kBase, W, k0, T, d0, D, 1f, stage, slice, depth);
            StageTransposed(dOutput, dOBase, HD, q0, T, d0, D, 1f, stage, 2 * slice, depth);
            StageTransposed(qkv, vBase, W, k0, T, d0, D, 1f, stage, 3 * slice, depth);
            Group.Barrier();
            s.AddProducts(stage, 0, slice, depth, ty, tx);
            dp.AddProducts(stage, 2 * slice, 3 * slice, depth, ty, tx);
        }
        return (s, dp);
    }

    // ------------------------------------------------------------ shared-memory staging

    /// <summary>
    /// Rows first..first+63, channels d0..d0+depth-1 of a [T, stride] matrix, times factor, into
    /// tile[offset + channel·68 + row]; rows at or past T and channels at or past D become zeros.
    /// Consecutive threads read consecutive channels of a row.
    /// </summary>
    static void StageTransposed(ArrayView<float> src, int baseIndex, int stride, int first, int T, int d0, int D, float factor,
        ArrayView<float> tile, int offset, int depth)
    {
        for (int e = Group.IdxX; e < FlashTile * depth; e += FlashThreads)
        {
            int r = e / depth, c = e - r * depth;
            int row = first + r, d = d0 + c;
            tile[offset + c * FlashPitch + r] = row < T && d < D ? src[baseIndex + row * stride + d] * factor : 0f;
        }
    }

    /// <summary>
    /// Rows first..first+depth-1, channels 0..63 (or 0..127 when wide) of a [T, stride] matrix, times
    /// factor, into tile[offset + row·pitch + channel]; outside rows and channels become zeros.
    /// </summary>
    static void StageRows(ArrayView<float> src, int baseIndex, int stride, int first, int T, int D, float factor,
        ArrayView<float> tile, int offset, int depth, bool wide)
    {
        int width = wide ? 2 * FlashTile : FlashTile, pitch = wide ? FlashWidePitch : FlashPitch;
        for (int e = Group.IdxX; e < depth * width; e += FlashThreads)
        {
            int r = e / width, d = e - r * width;
            int row = first + r;
            tile[offset + r * pitch + d] = row < T && d < D ? src[baseIndex + row * stride + d] * factor : 0f;
        }
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
