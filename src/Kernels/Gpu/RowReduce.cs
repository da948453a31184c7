using ILGPU;

namespace ArcherIlgpu.Kernels;

/// <summary>
/// Reductions across one group for the "one group per row" kernels of the classifier head and the
/// sampler: a butterfly of warp shuffles, one partial per warp through shared memory, then every warp
/// reduces the partials itself, so every thread gets the result without a broadcast step.
/// The group size must be a multiple of the warp size and at most <see cref="MaxWarps"/> warps
/// (<see cref="IlgpuBackend.RowGroupSize"/> guarantees both). Each call ends with a barrier so the
/// same shared slots can be used by the next call.
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

    public static float GroupSum(float v, ArrayView<float> shared)
    {
        v = WarpSum(v);
        if (Warp.LaneIdx == 0) shared[WarpInGroup] = v;
        Group.Barrier();
        v = Warp.LaneIdx < WarpsInGroup ? shared[Warp.LaneIdx] : 0f;
        v = WarpSum(v);
        Group.Barrier();
        return v;
    }

    public static float GroupMax(float v, ArrayView<float> shared)
    {
        v = WarpMax(v);
        if (Warp.LaneIdx == 0) shared[WarpInGroup] = v;
        Group.Barrier();
        v = Warp.LaneIdx < WarpsInGroup ? shared[Warp.LaneIdx] : float.NegativeInfinity;
        v = WarpMax(v);
        Group.Barrier();
        return v;
    }

    public static int GroupSum(int v, ArrayView<int> shared)
    {
        v = WarpSum(v);
        if (Warp.LaneIdx == 0) shared[WarpInGroup] = v;
        Group.Barrier();
        v = Warp.LaneIdx < WarpsInGroup ? shared[Warp.LaneIdx] : 0;
        v = WarpSum(v);
        Group.Barrier();
        return v;
    }

    public static long GroupSum(long v, ArrayView<long> shared)
    {
        v = WarpSum(v);
        if (Warp.LaneIdx == 0) shared[WarpInGroup] = v;
        Group.Barrier();
        v = Warp.LaneIdx < WarpsInGroup ? shared[Warp.LaneIdx] : 0L;
        v = WarpSum(v);
        Group.Barrier();
        return v;
    }

    /// <summary>Group-wide argmax; on return every thread holds the winning key and index.</summary>
    public static void GroupArgMax(ref float key, ref int index, ArrayView<float> sharedKeys, ArrayView<int> sharedIndices)
    {
        WarpArgMax(ref key, ref index);
        if (Warp.LaneIdx == 0) { sharedKeys[WarpInGroup] = key; sharedIndices[WarpInGroup] = index; }
        Group.Barrier();
        bool has = Warp.LaneIdx < WarpsInGroup;
        key = has ? sharedKeys[Warp.LaneIdx] : float.NegativeInfinity;
        index = has ? sharedIndices[Warp.LaneIdx] : int.MaxValue;
        WarpArgMax(ref key, ref index);
        Group.Barrier();
    }
}
