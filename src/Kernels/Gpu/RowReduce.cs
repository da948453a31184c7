using ILGPU;

namespace ArcherIlgpu.Kernels;

/// <summary>
/// Reductions across one group for the "one group per row" kernels (classifier head, sampler, norms, RL loss):
/// a butterfly of warp shuffles, one partial per warp through shared memory, then every thread adds the
/// partials itself in warp order, so every thread gets the same result without a broadcast step and the
/// sum's order does not depend on the warp size. The group size must be a multiple of the warp size and at
/// most <see cref="MaxWarps"/> warps (<see cref="IlgpuBackend.RowGroupSize"/> guarantees both; the warps of a
/// group may outnumber a warp's lanes, as with 8-lane warps and groups of 256). Each call ends with a barrier
/// so the same shared slots can be used by the next call.
/// </summary>
internal static class RowReduce
{
    /// <summary>Shared slots a reduction needs: one per warp of the largest group (1024 / 32).</summary>
    public const int MaxWarps = 32;

    public static float WarpSum(float v)
    {
        for (int offset = Warp.WarpSize / 2; offset > 0; offset /= 2) v += Warp.ShuffleXor(v, offset);
        return v;
    }

    public static float WarpMax(float v)
    {
        for (int offset = Warp.WarpSize / 2; offset > 0; offset /= 2)
        {
            float other = Warp.ShuffleXor(v, offset);
            v = other > v ? other : v;
        }
        return v;
    }

    public static int WarpSum(int v)
    {
        for (int offset = Warp.WarpSize / 2; offset > 0; offset /= 2) v += Warp.ShuffleXor(v, offset);
        return v;
    }

    /// <summary>64-bit sum, shuffled as two 32-bit halves (a shuffle moves 32 bits on every backend).</summary>
    public static long WarpSum(long v)
    {
        for (int offset = Warp.WarpSize / 2; offset > 0; offset /= 2)
        {
            int lo = Warp.ShuffleXor((int)v, offset);
            int hi = Warp.ShuffleXor((int)(v >> 32), offset);
            v += ((long)hi << 32) | (uint)lo;
        }
        return v;
    }

    /// <summary>The larger key wins; equal keys go to the lower index (both backends pick the same token).</summary>
    public static void WarpArgMax(ref float key, ref int index)
    {
        for (int offset = Warp.WarpSize / 2; offset > 0; offset /= 2)
        {
            float otherKey = Warp.ShuffleXor(key, offset);
            int otherIndex = Warp.ShuffleXor(index, offset);
            if (otherKey > key || (otherKey == key && otherIndex < index)) { key = otherKey; index = otherIndex; }
        }
    }

    static int WarpInGroup => Group.IdxX / Warp.WarpSize;
    static int WarpsInGroup => Group.DimX / Warp.WarpSize;

    /// <summary>Sum over the group; every thread gets the same value (warps are added in a fixed order).</summary>
    public static float GroupSum(float v, ArrayView<float> shared)
    {
        v = WarpSum(v);
        if (Warp.LaneIdx == 0) shared[WarpInGroup] = v;
        Group.Barrier();
        float total = 0f;
        for (int w = 0; w < WarpsInGroup; w++) total += shared[w];
        Group.Barrier();
        return total;
    }

    /// <summary>Two group sums for the price of one pair of barriers; <paramref name="shared"/> holds 2 × <see cref="MaxWarps"/>.</summary>
    public static void GroupSum2(ref float a, ref float b, ArrayView<float> shared)
    {
        a = WarpSum(a); b = WarpSum(b);
        if (Warp.LaneIdx == 0) { shared[WarpInGroup] = a; shared[MaxWarps + WarpInGroup] = b; }
        Group.Barrier();
        a = 0f; b = 0f;
        for (int w = 0; w < WarpsInGroup; w++) { a += shared[w]; b += shared[MaxWarps + w]; }
        Group.Barrier();
    }

    public static float GroupMax(float v, ArrayView<float> shared)
    {
        v = WarpMax(v);
        if (Warp.LaneIdx == 0) shared[WarpInGroup] = v;
        Group.Barrier();
        for (int w = 0; w < WarpsInGroup; w++) v = shared[w] > v ? shared[w] : v;
        Group.Barrier();
        return v;
    }

    public static int GroupSum(int v, ArrayView<int> shared)
    {
        v = WarpSum(v);
        if (Warp.LaneIdx == 0) shared[WarpInGroup] = v;
        Group.Barrier();
        int total = 0;
        for (int w = 0; w < WarpsInGroup; w++) total += shared[w];
        Group.Barrier();
        return total;
    }

    public static long GroupSum(long v, ArrayView<long> shared)
    {
        v = WarpSum(v);
        if (Warp.LaneIdx == 0) shared[WarpInGroup] = v;
        Group.Barrier();
        long total = 0;
        for (int w = 0; w < WarpsInGroup; w++) total += shared[w];
        Group.Barrier();
        return total;
    }

    /// <summary>Group-wide argmax; on return every thread holds the winning key and index.</summary>
    public static void GroupArgMax(ref float key, ref int index, ArrayView<float> sharedKeys, ArrayView<int> sharedIndices)
    {
        WarpArgMax(ref key, ref index);
        if (Warp.LaneIdx == 0) { sharedKeys[WarpInGroup] = key; sharedIndices[WarpInGroup] = index; }
        Group.Barrier();
        for (int w = 0; w < WarpsInGroup; w++)
        {
            float otherKey = sharedKeys[w];
            int otherIndex = sharedIndices[w];
            if (otherKey > key || (otherKey == key && otherIndex < index)) { key = otherKey; index = otherIndex; }
        }
        Group.Barrier();
    }
}
