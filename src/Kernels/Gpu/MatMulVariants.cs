using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Runtime;

namespace ArcherIlgpu.Kernels;

/// <summary>
/// GEMM strategies of the ILGPU backend. Both are on by default on CUDA, where they were measured
/// (H200, 2026-12-04, benchmarks/results/gpu-h200-2026-12-04.txt: at the gpt2 B16·T1024 products
/// vec4 made the float32 forward and dInput 1.65× faster and the tensor-core kernels 3.5–4×, and
/// split-K+vec4 the float32 dWeight 2.8–6×), and off elsewhere (not measured: the ilgpu-cpu and OpenCL
/// backends keep the plain kernels). <c>ARCHER_GEMM=none|splitk|vec4|splitk,vec4</c> or
/// <see cref="IlgpuBackend.GemmVariants"/> overrides. Both keep results deterministic and apply to
/// the float32 and the tensor-core kernels.
/// </summary>
[Flags]
public enum GemmVariants
{
    None = 0,
    /// <summary>
    /// Products with too few output tiles to fill the device and a long reduction (dWeight: OC×K
    /// output, B·T deep) are cut into K slices computed side by side, then summed in a fixed order.
    /// </summary>
    SplitK = 1,
    /// <summary>
    /// The 128×128 kernels (float32 and tensor-core) read global memory as 128-bit vectors where
    /// strides and offsets allow.
    /// </summary>
    Vec4Loads = 2,
}

// Split-K: S slices of the reduction each write a partial C into a workspace [S, M, N] with the
// 128×128 (or, for thin products, 64×64) kernel, all in one launch (grid z = slice); a second
// kernel adds the S partials in slice order, then bias and the previous C as the flags say.
public sealed partial class IlgpuBackend
{
    DeviceSetting<GemmVariants> gemmVariants = new(ParseGemmVariants(Environment.GetEnvironmentVariable("ARCHER_GEMM")));

    /// <summary>What was set, else ARCHER_GEMM (see <see cref="ParseGemmVariants"/>), else <see cref="DefaultGemmVariants"/>.</summary>
    public GemmVariants GemmVariants
    {
        get => gemmVariants.Get(DefaultGemmVariants(Accelerator.AcceleratorType));
        set => gemmVariants.Set(value);
    }

    /// <summary>Split-K and vec4 on CUDA, where they were measured to win; neither elsewhere.</summary>
    public static GemmVariants DefaultGemmVariants(AcceleratorType type) =>
        type == AcceleratorType.Cuda ? GemmVariants.SplitK | GemmVariants.Vec4Loads : GemmVariants.None;

    /// <summary>
    /// A comma-separated list of <c>splitk</c> and <c>vec4</c>; <c>none</c> or <c>off</c> for neither;
    /// null (unset, empty or <c>default</c>) for the device's default.
    /// </summary>
    public static GemmVariants? ParseGemmVariants(string? text)
    {
        if (string.IsNullOrWhiteSpace(text) || text.Trim().Equals("default", StringComparison.OrdinalIgnoreCase)) return null;
        var variants = GemmVariants.None;
        foreach (var raw in (text ?? "").Split(','))
        {
            variants |= raw.Trim().ToLowerInvariant() switch
            {
                "none" or "off" => GemmVariants.None,
                "splitk" => GemmVariants.SplitK,
                "vec4" => GemmVariants.Vec4Loads,
                _ => throw new ArgumentException($"ARCHER_GEMM must be a comma-separated list of splitk and vec4 (or none, or default), not '{text}'"),
            };
        }
        return variants;
    }

    /// <summary>
    /// The shallowest slice worth a launch slot: below it the partial tile's store and the extra pass
    /// over the workspace cost more than the parallelism gains. A guess (512 = 64 slices of the
    /// 128×128 kernel), not binding at the gpt2 shapes; tests lower it to split tiny products. (H200:
    /// forced 8–16 slices beat the automatic 3–4 by up to 1.17× on the float32 scalar-load dWeight, see
    /// the forced-slice rows of benchmarks/results/h200-2026-12-04-call1.txt; the plan is not retuned yet.)
    /// </summary>
    internal int SplitKMinDepth { get; set; } = 512;

    /// <summary>Tests and the benchmark force this many slices (still limited by the minimum depth); 0 = automatic.</summary>
    internal int SplitKSlices { get; set; }

    /// <summary>How one float32 product runs: 128×128 (Big) or 64×64 tiles, vector loads, K slices of SliceDepth.</summary>
    internal readonly record struct GemmChoice(bool Big, bool Quads, int Slices, int SliceDepth);

    internal GemmChoice ChooseGemm(ArrayView<float> a, ArrayView<float> b, GemmShape shape)
    {
        if ((GemmVariants & GemmVariants.SplitK) != 0)
        {
            var (slices, depth) = PlanSplitK(shape, Accelerator.NumMultiprocessors, SplitKMinDepth, SplitKSlices, ForceTiledGemm);
            if (slices > 1)
            {
                bool big = SplitUsesBigTiles(shape, ForceTiledGemm);
                return new GemmChoice(big, big && WantQuads(a, b, shape), slices, depth);
            }
        }
        bool tiled = !UseSmallGemm(shape);
        return new GemmChoice(tiled, tiled && WantQuads(a, b, shape), 1, shape.K);
    }

    bool WantQuads(ArrayView<float> a, ArrayView<float> b, GemmShape s) =>
        (GemmVariants & GemmVariants.Vec4Loads) != 0 && CanLoadQuads(ViewIndex(a), ViewIndex(b), s);

    /// <summary>
    /// Every quad the vector kernel reads must start on a 16-byte boundary: each operand contiguous
    /// along its tile dimension (stride 1), its other stride a multiple of 4 floats, and its view
    /// starting at a multiple of 4 floats into its (256-byte aligned) allocation. Slice starts are
    /// multiples of 16, so split-K keeps the alignment.
    /// </summary>
    internal static bool CanLoadQuads(long aIndex, long bIndex, GemmShape s) =>
        aIndex % 4 == 0 && bIndex % 4 == 0
        && (s.ACol == 1 ? s.ARow % 4 == 0 : s.ARow == 1 && s.ACol % 4 == 0)
        && (s.BCol == 1 ? s.BRow % 4 == 0 : s.BRow == 1 && s.BCol % 4 == 0);

    /// <summary>The view's first element within its buffer (a constrained call: no boxing).</summary>
    static long ViewIndex<TView>(TView view) where TView : IContiguousArrayView => view.Index;

    /// <summary>Thin products (one tile edge of 64 or less) stay on 64×64 tiles, as unsplit.</summary>
    static bool SplitUsesBigTiles(GemmShape s, bool forceBig) => forceBig || (s.M > GemmTile && s.N > GemmTile);

    /// <summary>
    /// Slices and slice depth for a product on a device with <paramref name="multiprocessors"/> SMs;
    /// (1, K) means no split. The target is two groups per SM (the 128×128 kernel's occupancy), and the
    /// slice count is the one, between just filling that and twice as many, that finishes in the
    /// fewest rounds of K/S-deep groups: e.g. 108 tiles on 132 SMs take 4 slices (432 groups, two
    /// rounds of K/4) rather than 3 (324 groups: two rounds of K/3). Depths are multiples of 16 (whole
    /// slices of either kernel, quad-aligned), and the last slice takes the remainder.
    /// </summary>
    internal static (int Slices, int Depth) PlanSplitK(GemmShape s, int multiprocessors, int minDepth, int forcedSlices, bool forceBig)
    {
        int tile = SplitUsesBigTiles(s, forceBig) ? BigTile : GemmTile;
        long tiles = (long)((s.M + tile - 1) / tile) * ((s.N + tile - 1) / tile);
        long target = 2L * Math.Max(1, multiprocessors);
        long slices = forcedSlices > 0 ? forcedSlices : tiles >= target ? 1 : FewestRounds(tiles, target);
        slices = Math.Min(slices, s.K / Math.Max(1, minDepth));
        if (slices <= 1) return (1, s.K);
        int depth = (int)((s.K + slices - 1) / slices + GemmDepth - 1) / GemmDepth * GemmDepth;
        return ((s.K + depth - 1) / depth, depth);
    }

    static long FewestRounds(long tiles, long target)
    {
        long first = (target + tiles - 1) / tiles, best = first;
        double bestCost = double.MaxValue;
        for (long slices = first; slices <= 2 * first; slices++)
        {
            double cost = (double)((tiles * slices + target - 1) / target) / slices;   // rounds × depth, in units of K
            if (cost < bestCost - 1e-12) { bestCost = cost; best = slices; }
        }
        return best;
    }

    // ------------------------------------------------------------------ launch

    Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmShape, int>? splitTiledKernel, splitTiledVec4Kernel, splitSmallKernel;
    Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmShape, int>? splitReduceKernel;
    /// <summary>Partial products [S, M, N]; grows to the largest split seen, then is reused.</summary>
    MemoryBuffer1D<float, Stride1D.Dense>? splitWorkspace;

    void LaunchSplitGemm(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, ArrayView<float> bias, GemmShape shape, GemmChoice choice)
    {
        long partialLength = (long)shape.M * shape.N;
        var partials = SplitWorkspace(choice.Slices * partialLength);
        // Partials are plain products: no bias, no accumulation, rows of exactly N.
        var part = shape;
        part.Ldc = shape.N;
        part.Flags = 0;
        if (choice.Big)
        {
            var kernel = choice.Quads
                ? splitTiledVec4Kernel ??= Accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmShape, int>(SplitTiledGemmVec4Kernel)
                : splitTiledKernel ??= Accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmShape, int>(SplitTiledGemmKernel);
            var grid = BigGrid(shape);
            kernel(new KernelConfig(new Index3D(grid.X, grid.Y, choice.Slices), new Index3D(GemmThreads, 1, 1)), a, b, partials, part, choice.SliceDepth);
        }
        else
        {
            splitSmallKernel ??= Accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmShape, int>(SplitSmallGemmKernel);
            var grid = new Index3D((shape.N + GemmTile - 1) / GemmTile, (shape.M + GemmTile - 1) / GemmTile, choice.Slices);
            splitSmallKernel(new KernelConfig(grid, new Index3D(GemmThreads, 1, 1)), a, b, partials, part, choice.SliceDepth);
        }
        ReduceSplits(partials, c, bias, shape, choice.Slices);
    }

    /// <summary>C = Σ partials in slice order (+ bias) (+ C) for the float32 and tensor-core split-K launches.</summary>
    void ReduceSplits(ArrayView<float> partials, ArrayView<float> c, ArrayView<float> bias, GemmShape shape, int slices)
    {
        splitReduceKernel ??= Accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmShape, int>(SplitKReduceKernel);
        var rows = new Index2D((shape.N + ReduceColumns - 1) / ReduceColumns, Math.Min(shape.M, MaxReduceRows));
        splitReduceKernel(new KernelConfig(rows, new Index2D(ReduceColumns, 1)), partials, c, bias, shape, slices);
    }

    /// <summary>
    /// The workspace as a view of at least <paramref name="length"/> floats. Growing it is the only
    /// allocation (and host wait: the old buffer may still be read by queued kernels), so after the
    /// first step of a training run every split reuses it.
    /// </summary>
    ArrayView<float> SplitWorkspace(long length) => Workspace(ref splitWorkspace, length);

    ArrayView<float> Workspace(ref MemoryBuffer1D<float, Stride1D.Dense>? buffer, long length)
    {
        if (buffer is null || buffer.Length < length)
        {
            if (buffer is not null) { Stream.Synchronize(); buffer.Dispose(); }
            buffer = Accelerator.Allocate1D<float>(length);
        }
        return buffer.View.SubView(0, length);
    }

    // ------------------------------------------------------------------ padded rows

    /// <summary>dOut with rows padded to a multiple of 4 floats; grows to the largest seen, then is reused.</summary>
    MemoryBuffer1D<float, Stride1D.Dense>? paddedWorkspace;

    /// <summary>Below this many elements the copy is not worth it (decode, the small presets).</summary>
    internal long PadRowsMinElements { get; set; } = 1 << 20;

    /// <summary>
    /// dOut of matmul backward as both products read it, and its row stride: itself (stride OC), or,
    /// when OC is not a multiple of 4 (the LM head's V = 50257) and vec4 is on, a copy whose rows are
    /// padded to a multiple of 4, so that dInput (A = dOut along OC) and dWeight (A = dOutᵀ across OC)
    /// can take the 128-bit load kernels: on an H200 the LM head's dInput and dWeight ran at 15-18
    /// TFLOP/s scalar where the aligned products of the same kernels reach 29 (float32) and 55-64 (TF32).
    /// The copy is one pass over dOut; the padding is never read (the products' K and M stay OC). The
    /// workspace is as big as dOut, so it is skipped when that exceeds an eighth of the device memory.
    /// </summary>
    internal (ArrayView<float> DOutput, int Stride) PaddedRows(ArrayView<float> dOutput, int N, int K, int OC)
    {
        int stride = (OC + 3) / 4 * 4;
        long length = (long)N * stride;
        if (stride == OC || (GemmVariants & GemmVariants.Vec4Loads) == 0 || K % 4 != 0
            || (long)N * OC < PadRowsMinElements || length * sizeof(float) > Accelerator.MemorySize / 8)
            return (dOutput, OC);
        var padded = Workspace(ref paddedWorkspace, length);
        padRowsKernel ??= Accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, int, int, int>(PadRowsKernel);
        var groups = new Index2D((stride + ReduceColumns - 1) / ReduceColumns, Math.Min(N, MaxReduceRows));
        padRowsKernel(new KernelConfig(groups, new Index2D(ReduceColumns, 1)), dOutput, padded, N, OC, stride);
        return (padded, stride);
    }

    Action<KernelConfig, ArrayView<float>, ArrayView<float>, int, int, int>? padRowsKernel;

    /// <summary>padded[i, j] = source[i, j] for j &lt; columns, 0 up to the stride; rows strided over the grid.</summary>
    static void PadRowsKernel(ArrayView<float> source, ArrayView<float> padded, int rows, int columns, int stride)
    {
        int j = Grid.IdxX * ReduceColumns + Group.IdxX;
        if (j >= stride) return;
        for (int i = Grid.IdxY; i < rows; i += Grid.DimY)
            padded[(long)i * stride + j] = j < columns ? source[(long)i * columns + j] : 0f;
    }

    /// <summary>Columns per reduction group (coalesced rows of the partials), and the grid's row limit (CUDA's 65535).</summary>
    const int ReduceColumns = 256, MaxReduceRows = 65535;

    // ------------------------------------------------------------------ kernels

    static void SplitTiledGemmKernel(ArrayView<float> a, ArrayView<float> b, ArrayView<float> partials, GemmShape s, int sliceDepth) =>
        SplitTiledGemm(a, b, partials, s, sliceDepth, false);

    static void SplitTiledGemmVec4Kernel(ArrayView<float> a, ArrayView<float> b, ArrayView<float> partials, GemmShape s, int sliceDepth) =>
        SplitTiledGemm(a, b, partials, s, sliceDepth, true);

    /// <summary>Group (x, y, z): tile (x, y) of slice z, depths [z·depth, min(K, (z+1)·depth)), into partial z.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void SplitTiledGemm(ArrayView<float> a, ArrayView<float> b, ArrayView<float> partials, GemmShape s, int sliceDepth, bool quads)
    {
        int kBegin = Grid.IdxZ * sliceDepth;
        var slice = SliceShape(s, kBegin + sliceDepth);
        TiledGemm(a, b, PartialOf(partials, s), partials, slice, kBegin, quads);
    }

    static void SplitSmallGemmKernel(ArrayView<float> a, ArrayView<float> b, ArrayView<float> partials, GemmShape s, int sliceDepth)
    {
        int kBegin = Grid.IdxZ * sliceDepth;
        var slice = SliceShape(s, kBegin + sliceDepth);
        SmallGemm(a, b, PartialOf(partials, s), partials, slice, kBegin);
    }

    /// <summary>The shape with K cut at the slice's end: loads past it read as zero, like past K.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static GemmShape SliceShape(GemmShape s, int kEnd)
    {
        if (kEnd < s.K) s.K = kEnd;
        return s;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static ArrayView<float> PartialOf(ArrayView<float> partials, GemmShape s)
    {
        long length = (long)s.M * s.N;
        return partials.SubView(Grid.IdxZ * length, length);
    }

    /// <summary>
    /// C[i, j] = Σ_z partial[z, i, j] in slice order (+ bias[j]) (+ C[i, j]): the same order on every
    /// run, so split results are deterministic. Group = 256 adjacent columns of one row (coalesced);
    /// rows beyond the grid's y limit are taken in strides of it.
    /// </summary>
    static void SplitKReduceKernel(ArrayView<float> partials, ArrayView<float> c, ArrayView<float> bias, GemmShape s, int slices)
    {
        int j = Grid.IdxX * ReduceColumns + Group.IdxX;
        if (j >= s.N) return;
        long length = (long)s.M * s.N;
        for (int i = Grid.IdxY; i < s.M; i += Grid.DimY)
        {
            long at = (long)i * s.N + j;
            float sum = partials[at];
            for (int z = 1; z < slices; z++) sum += partials[z * length + at];
            StoreGemm(c, bias, s, i, j, sum);
        }
    }
}
