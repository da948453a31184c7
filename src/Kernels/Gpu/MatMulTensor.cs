using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

namespace ArcherIlgpu.Kernels;

/// <summary>
/// Operand precision of the ILGPU matmul. Accumulation is float32 in every mode; Tf32 and Bf16 round
/// the operands (to 10 and 7 mantissa bits) and multiply them on the tensor cores.
/// </summary>
public enum MatMulPrecision
{
    Float32,
    Tf32,
    Bf16,
}

// The tensor-core GEMM: the 128×128 tile of the float32 kernel, but each of the 8 warps multiplies a
// 64×32 piece of it with mma.sync (m16n8k8 TF32 or m16n8k16 BF16) on operand fragments it gathers
// from shared memory itself. ILGPU 1.5.3 gives a kernel no shared-memory address (ArrayView's
// LoadEffectiveAddressAsPtr is internal), so no ldmatrix or cp.async. The one way in found: inline PTX
// may name an allocation's symbol (`mov.u32 r, __shared_alloca0;`), but ILGPU numbers the allocations
// in its own order (a probe with two tiles gave alloca0 to the larger, declared second), so that would
// need a PTX test pinning the numbering before any kernel relied on it. Not done.
public sealed partial class IlgpuBackend
{
    /// <summary>
    /// Tensor-core operands (CUDA only; other accelerators always use float32). Defaults to the
    /// ARCHER_MATMUL environment variable: fp32 (the default), tf32 or bf16.
    /// </summary>
    public MatMulPrecision MatMulPrecision { get; set; } = ParseMatMulPrecision(Environment.GetEnvironmentVariable("ARCHER_MATMUL"));

    /// <summary>
    /// Tests set this to run the tensor-core kernel on a non-CUDA accelerator, where each mma.sync is
    /// replaced by warp shuffles that gather exactly the fragments the instruction would read.
    /// </summary>
    internal bool EmulateTensorCores { get; set; }

    MatMulPrecision EffectiveMatMulPrecision =>
        Accelerator.AcceleratorType == AcceleratorType.Cuda || EmulateTensorCores ? MatMulPrecision : MatMulPrecision.Float32;

    public static MatMulPrecision ParseMatMulPrecision(string? text) => text?.Trim().ToLowerInvariant() switch
    {
        null or "" or "fp32" or "float32" or "f32" => MatMulPrecision.Float32,
        "tf32" => MatMulPrecision.Tf32,
        "bf16" => MatMulPrecision.Bf16,
        _ => throw new ArgumentException($"ARCHER_MATMUL must be fp32, tf32 or bf16, not '{text}'"),
    };

    /// <summary>K slice depth: two m16n8k8 TF32 steps or one m16n8k16 BF16 step.</summary>
    const int TcDepth = 16;
    /// <summary>
    /// Row pitch (32-bit words) of the shared tiles. Both hold depth rows of the 128 rows (A) or
    /// columns (B) of the tile: TF32 16 rows of floats, BF16 8 rows of bf16 pairs (depths 2p, 2p+1 in
    /// one word, the way mma.sync takes them). A warp's fragment read touches depth rows tig (+4) at
    /// columns groupID: banks tig·pitch + groupID are 32 distinct when pitch ≡ 8 (mod 32). Rows stay
    /// 16-byte aligned.
    /// </summary>
    const int TcPitch = BigTile + 8;
    const int Tf32Shared = 2 * TcDepth * TcPitch, Bf16Shared = 2 * (TcDepth / 2) * TcPitch;

    /// <summary>Loaded tensor-core kernels by (precision is BF16) · 2 + (vector loads).</summary>
    readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmShape, int>?[] tensorKernels = new Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmShape, int>?[4];

    /// <summary>
    /// With vec4 (<see cref="GemmVariants.Vec4Loads"/>) and operands that allow it
    /// (<see cref="CanLoadQuads"/>), the kernel stages each slice with 128-bit global loads. With
    /// split-K (<see cref="GemmVariants.SplitK"/>), products with too few 128×128 tiles to fill the
    /// device (dWeight) run as K slices into partials that <see cref="ReduceSplits"/> sums in order.
    /// </summary>
    void LaunchTensorGemm(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, ArrayView<float> bias, GemmShape shape, MatMulPrecision precision)
    {
        if (WarpSize != 32) throw new NotSupportedException($"{Name}: mma.sync needs warps of 32 threads, the device has {WarpSize}");
        bool quads = TensorQuads(a, b, shape);
        int slot = (precision == MatMulPrecision.Bf16 ? 2 : 0) + (quads ? 1 : 0);
        var kernel = tensorKernels[slot] ??= Accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmShape, int>(
            TensorKernelFor(precision, quads, Accelerator.AcceleratorType == AcceleratorType.Cuda));
        var grid = BigGrid(shape);
        var (slices, depth) = TensorSplit(shape);
        if (slices == 1)
        {
            kernel(new KernelConfig(grid, new Index2D(GemmThreads, 1)), a, b, c, bias, shape, shape.K);
            return;
        }
        var partials = SplitWorkspace(slices * (long)shape.M * shape.N);
        var part = shape;   // partials are plain products: no bias, no accumulation, rows of exactly N
        part.Ldc = shape.N;
        part.Flags = 0;
        kernel(new KernelConfig(new Index3D(grid.X, grid.Y, slices), new Index3D(GemmThreads, 1, 1)), a, b, partials, partials, part, depth);
        ReduceSplits(partials, c, bias, shape, slices);
    }

    /// <summary>Slices and slice depth of a tensor-core product ((1, K): unsplit); always 128×128 tiles.</summary>
    internal (int Slices, int Depth) TensorSplit(GemmShape shape) =>
        (GemmVariants & GemmVariants.SplitK) != 0
            ? PlanSplitK(shape, Accelerator.NumMultiprocessors, SplitKMinDepth, SplitKSlices, forceBig: true)
            : (1, shape.K);

    /// <summary>Whether the tensor-core kernel for this product stages with 128-bit loads.</summary>
    internal bool TensorQuads(ArrayView<float> a, ArrayView<float> b, GemmShape shape) => WantQuads(a, b, shape);

    // Not named ...Kernel: the PTX tests compile every static method whose name ends so.
    static Action<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmShape, int> TensorKernelFor(MatMulPrecision precision, bool quads, bool cuda) =>
        (precision, quads, cuda) switch
        {
            (MatMulPrecision.Tf32, false, true) => Tf32GemmKernel,
            (MatMulPrecision.Tf32, true, true) => Tf32GemmVec4Kernel,
            (MatMulPrecision.Tf32, false, false) => EmulatedTf32GemmKernel,
            (MatMulPrecision.Tf32, true, false) => EmulatedTf32GemmVec4Kernel,
            (_, false, true) => Bf16GemmKernel,
            (_, true, true) => Bf16GemmVec4Kernel,
            (_, false, false) => EmulatedBf16GemmKernel,
            (_, true, false) => EmulatedBf16GemmVec4Kernel,
        };

    // One kernel per precision and load pattern, so both are constants the compiler folds into the
    // body; the emulated ones (tests on ilgpu-cpu) carry a per-warp scratch in place of mma.sync.
    static void Tf32GemmKernel(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, ArrayView<float> bias, GemmShape s, int sliceDepth) =>
        TensorGemm(a, b, c, bias, s, sliceDepth, (int)MatMulPrecision.Tf32, false, false, default);

    static void Bf16GemmKernel(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, ArrayView<float> bias, GemmShape s, int sliceDepth) =>
        TensorGemm(a, b, c, bias, s, sliceDepth, (int)MatMulPrecision.Bf16, false, false, default);

    static void Tf32GemmVec4Kernel(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, ArrayView<float> bias, GemmShape s, int sliceDepth) =>
        TensorGemm(a, b, c, bias, s, sliceDepth, (int)MatMulPrecision.Tf32, true, false, default);

    static void Bf16GemmVec4Kernel(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, ArrayView<float> bias, GemmShape s, int sliceDepth) =>
        TensorGemm(a, b, c, bias, s, sliceDepth, (int)MatMulPrecision.Bf16, true, false, default);

    static void EmulatedTf32GemmKernel(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, ArrayView<float> bias, GemmShape s, int sliceDepth) =>
        TensorGemm(a, b, c, bias, s, sliceDepth, (int)MatMulPrecision.Tf32, false, true, SharedMemory.Allocate<uint>(EmulationScratch));

    static void EmulatedBf16GemmKernel(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, ArrayView<float> bias, GemmShape s, int sliceDepth) =>
        TensorGemm(a, b, c, bias, s, sliceDepth, (int)MatMulPrecision.Bf16, false, true, SharedMemory.Allocate<uint>(EmulationScratch));

    static void EmulatedTf32GemmVec4Kernel(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, ArrayView<float> bias, GemmShape s, int sliceDepth) =>
        TensorGemm(a, b, c, bias, s, sliceDepth, (int)MatMulPrecision.Tf32, true, true, SharedMemory.Allocate<uint>(EmulationScratch));

    static void EmulatedBf16GemmVec4Kernel(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, ArrayView<float> bias, GemmShape s, int sliceDepth) =>
        TensorGemm(a, b, c, bias, s, sliceDepth, (int)MatMulPrecision.Bf16, true, true, SharedMemory.Allocate<uint>(EmulationScratch));

    /// <summary>Every lane's 6 fragment registers (a0..a3, b0, b1), for the 8 warps of a group.</summary>
    const int EmulationScratch = GemmThreads * 6;

    /// <summary>The 4 f32 accumulators of one m16n8 output fragment.</summary>
    internal struct Frag
    {
        public float C0, C1, C2, C3;
    }

    /// <summary>A fragment: 4 .b32 registers (TF32: one value each; BF16: two values each).</summary>
    internal struct AFrag
    {
        public uint R0, R1, R2, R3;
    }

    /// <summary>B fragment: 2 .b32 registers.</summary>
    internal struct BFrag
    {
        public uint R0, R1;
    }

    /// <summary>A warp's 64×32 piece of C: 4 m16 rows × 4 n8 columns of fragments (Fmn).</summary>
    internal struct MmaAcc
    {
        public Frag F00, F01, F02, F03, F10, F11, F12, F13, F20, F21, F22, F23, F30, F31, F32, F33;
    }

    /// <summary>
    /// One group per 128×128 tile of C, 8 warps as 2 (rows) × 4 (columns), each warp 64×32. Operands are
    /// rounded to the precision as they are staged (BF16 packed in pairs), so fragments are plain
    /// 32-bit shared loads. The next slice is prefetched into registers while the current one is
    /// multiplied. <paramref name="quads"/> picks 128-bit global loads (<see cref="StageQuads"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void TensorGemm(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, ArrayView<float> bias, GemmShape s, int sliceDepth,
        int precision, bool quads, bool emulate, ArrayView<uint> emulation)
    {
        // Split-K: group z takes depths [z·sliceDepth, (z+1)·sliceDepth) into partial z of c (the
        // workspace, rows of N); unsplit launches have one z and sliceDepth = K.
        int kBegin = Grid.IdxZ * sliceDepth;
        if (Grid.IdxZ > 0) c = c.SubView(Grid.IdxZ * (long)s.M * s.N, (long)s.M * s.N);
        s = SliceShape(s, kBegin + sliceDepth);
        int t = Group.IdxX, lane = t % 32, warp = t / 32;
        int groupId = lane >> 2, tig = lane & 3;   // the PTX ISA's groupID and threadID_in_group
        int wm = (warp & 1) * 64, wn = (warp >> 1) * 32;
        int m0 = Grid.IdxY * BigTile, n0 = Grid.IdxX * BigTile;
        var slab = new Slab
        {
            M0 = m0, N0 = n0, KBegin = kBegin, Slices = (s.K - kBegin + TcDepth - 1) / TcDepth,
            QuadA = QuadElement(s.ACol == 1, t), QuadB = QuadElement(s.BCol != 1, t),
        };
        // This lane's first fragment element (depth row tig, row/column groupID of the warp's piece):
        // every fragment read is at a constant offset from it, which ptxas folds into the ld.shared.
        int lane0 = tig * TcPitch + groupId;
        var acc = precision == (int)MatMulPrecision.Tf32
            ? Tf32Product(a, b, s, slab, lane0 + wm, lane0 + wn, quads, emulate, emulation)
            : Bf16Product(a, b, s, slab, lane0 + wm, lane0 + wn, quads, emulate, emulation);

        int i = m0 + wm + groupId, j = n0 + wn + 2 * tig;
        StoreFrag(c, bias, s, i, j, acc.F00); StoreFrag(c, bias, s, i, j + 8, acc.F01);
        StoreFrag(c, bias, s, i, j + 16, acc.F02); StoreFrag(c, bias, s, i, j + 24, acc.F03);
        StoreFrag(c, bias, s, i + 16, j, acc.F10); StoreFrag(c, bias, s, i + 16, j + 8, acc.F11);
        StoreFrag(c, bias, s, i + 16, j + 16, acc.F12); StoreFrag(c, bias, s, i + 16, j + 24, acc.F13);
        StoreFrag(c, bias, s, i + 32, j, acc.F20); StoreFrag(c, bias, s, i + 32, j + 8, acc.F21);
        StoreFrag(c, bias, s, i + 32, j + 16, acc.F22); StoreFrag(c, bias, s, i + 32, j + 24, acc.F23);
        StoreFrag(c, bias, s, i + 48, j, acc.F30); StoreFrag(c, bias, s, i + 48, j + 8, acc.F31);
        StoreFrag(c, bias, s, i + 48, j + 16, acc.F32); StoreFrag(c, bias, s, i + 48, j + 24, acc.F33);
    }

    /// <summary>
    /// Where a group works (its tile's corner, first depth, slice count) and the first element of this
    /// thread's quads of A and B (<see cref="QuadElement"/>), computed once outside the slice loop.
    /// </summary>
    internal struct Slab
    {
        public int M0, N0, KBegin, Slices, QuadA, QuadB;
    }

    // The two products differ only in what a shared word holds (a TF32 float, or a pair of BF16) and in
    // the mma step; the double-buffered loop is the same: slice s+1 is loaded into registers while s is
    // multiplied, stored into the other buffer, and one barrier per slice separates the two.
    static MmaAcc Tf32Product(ArrayView<float> a, ArrayView<float> b, GemmShape s, Slab g, int laneA, int laneB, bool quads, bool emulate, ArrayView<uint> emulation)
    {
        var tileA = SharedMemory.Allocate<float>(Tf32Shared);
        var tileB = SharedMemory.Allocate<float>(Tf32Shared);
        var staged = StageQuads(a, b, s, g, g.KBegin, quads);
        StoreTf32Slice(tileA, tileB, s, staged, 0, g);
        Group.Barrier();
        MmaAcc acc = default;
        for (int slice = 0; slice < g.Slices; slice++)
        {
            int offset = (slice & 1) * TcDepth * TcPitch;
            bool more = slice + 1 < g.Slices;
            if (more) staged = StageQuads(a, b, s, g, g.KBegin + (slice + 1) * TcDepth, quads);
            var fragA = tileA.SubView(offset + laneA, Tf32Shared - offset - laneA);
            var fragB = tileB.SubView(offset + laneB, Tf32Shared - offset - laneB);
            acc = Tf32Step(fragA, fragB, 0, acc, emulate, emulation);
            acc = Tf32Step(fragA, fragB, 8, acc, emulate, emulation);
            if (more) StoreTf32Slice(tileA, tileB, s, staged, (slice & 1) ^ 1, g);
            Group.Barrier();
        }
        return acc;
    }

    static MmaAcc Bf16Product(ArrayView<float> a, ArrayView<float> b, GemmShape s, Slab g, int laneA, int laneB, bool quads, bool emulate, ArrayView<uint> emulation)
    {
        var tileA = SharedMemory.Allocate<uint>(Bf16Shared);
        var tileB = SharedMemory.Allocate<uint>(Bf16Shared);
        var staged = StageQuads(a, b, s, g, g.KBegin, quads);
        StoreBf16Slice(tileA, tileB, s, staged, 0, g, emulate);
        Group.Barrier();
        MmaAcc acc = default;
        for (int slice = 0; slice < g.Slices; slice++)
        {
            int offset = (slice & 1) * (TcDepth / 2) * TcPitch;
            bool more = slice + 1 < g.Slices;
            if (more) staged = StageQuads(a, b, s, g, g.KBegin + (slice + 1) * TcDepth, quads);
            var fragA = tileA.SubView(offset + laneA, Bf16Shared - offset - laneA);
            var fragB = tileB.SubView(offset + laneB, Bf16Shared - offset - laneB);
            acc = Bf16Step(fragA, fragB, acc, emulate, emulation);
            if (more) StoreBf16Slice(tileA, tileB, s, staged, (slice & 1) ^ 1, g, emulate);
            Group.Barrier();
        }
        return acc;
    }

    // ------------------------------------------------------------ fragments (PTX ISA, section
    // "Matrix Fragments for mma.m16n8k8" and "Matrix Fragments for mma.m16n8k16 with floating point
    // type", under "Warp Level Matrix Multiply-Accumulate Instructions"). With
    // groupID = %laneid >> 2 and threadID_in_group (tig) = %laneid % 4:
    //
    // m16n8k8, .tf32 (one element per .b32 register):
    //   A 16×8 (.row), a0..a3: row = groupID for a0, a2; groupID + 8 for a1, a3
    //                          col = tig for a0, a1;     tig + 4 for a2, a3
    //   B 8×8 (.col),  b0, b1: row (k) = tig for b0; tig + 4 for b1;  col (n) = groupID
    // m16n8k16, .bf16 (two elements per .b32 register, the lower-indexed one in the low 16 bits):
    //   A 16×16, a0..a7 in 4 registers {a0,a1} {a2,a3} {a4,a5} {a6,a7}:
    //     row = groupID for a0, a1, a4, a5; groupID + 8 for a2, a3, a6, a7
    //     col = tig * 2 + (i & 1) for a0..a3; tig * 2 + (i & 1) + 8 for a4..a7
    //   B 16×8, b0..b3 in 2 registers {b0,b1} {b2,b3}:
    //     row (k) = tig * 2 + (i & 1) for b0, b1; tig * 2 + (i & 1) + 8 for b2, b3;  col (n) = groupID
    // C/D 16×8 f32 (both shapes), c0..c3: row = groupID for c0, c1; groupID + 8 for c2, c3
    //                                     col = tig * 2 + (i & 1)
    // Shared memory is depth-major and swizzled: A(i, k) at tileA[off + Swizzled(k, i)], B(k, j) at
    // tileB[off + Swizzled(k, j)], with k the depth row of the slice (BF16: the pair row k/2).

    /// <summary>
    /// Word (depth row, column) of a tile buffer. The column is XORed with 8·(row/4): a quad that runs
    /// along depth is stored by 4 lanes of a warp into rows r..r+3 of one column, and without the XOR
    /// those 4 rows sit in the same bank (pitch ≡ 8 mod 32 makes 4·pitch ≡ 0): the H200's Nsight
    /// Compute counted 43% of the TF32 kernel's shared wavefronts as such conflicts. The XOR moves only
    /// bits 3–4 of the column, so quads of columns stay whole and 16-byte aligned, and a fragment read
    /// (rows tig + 4u, columns groupID + 8v) stays conflict-free and at constant offsets.
    /// </summary>
    static int Swizzled(int row, int col) => row * TcPitch + (col ^ ((row & 12) << 1));

    // The views start at this lane's first element (depth row tig, column groupID of the warp's
    // piece); Swizzled(dk, col0) below is then a constant offset from it (tig < 4 leaves row / 4 alone).
    static MmaAcc Tf32Step(ArrayView<float> fragA, ArrayView<float> fragB, int dk, MmaAcc acc, bool emulate, ArrayView<uint> emulation)
    {
        var a0 = Tf32A(fragA, dk, 0); var a1 = Tf32A(fragA, dk, 16);
        var a2 = Tf32A(fragA, dk, 32); var a3 = Tf32A(fragA, dk, 48);
        var b0 = Tf32B(fragB, dk, 0); var b1 = Tf32B(fragB, dk, 8);
        var b2 = Tf32B(fragB, dk, 16); var b3 = Tf32B(fragB, dk, 24);
        return Mma16(acc, a0, a1, a2, a3, b0, b1, b2, b3, (int)MatMulPrecision.Tf32, emulate, emulation);
    }

    static MmaAcc Bf16Step(ArrayView<uint> fragA, ArrayView<uint> fragB, MmaAcc acc, bool emulate, ArrayView<uint> emulation)
    {
        var a0 = Bf16A(fragA, 0); var a1 = Bf16A(fragA, 16);
        var a2 = Bf16A(fragA, 32); var a3 = Bf16A(fragA, 48);
        var b0 = Bf16B(fragB, 0); var b1 = Bf16B(fragB, 8);
        var b2 = Bf16B(fragB, 16); var b3 = Bf16B(fragB, 24);
        return Mma16(acc, a0, a1, a2, a3, b0, b1, b2, b3, (int)MatMulPrecision.Bf16, emulate, emulation);
    }

    /// <summary>A fragment of rows row0..row0+15, depths dk..dk+7 of the slice (a0..a3 as listed above).</summary>
    static AFrag Tf32A(ArrayView<float> tile, int dk, int row0) => new()
    {
        R0 = Interop.FloatAsInt(tile[Swizzled(dk, row0)]), R1 = Interop.FloatAsInt(tile[Swizzled(dk, row0 + 8)]),
        R2 = Interop.FloatAsInt(tile[Swizzled(dk + 4, row0)]), R3 = Interop.FloatAsInt(tile[Swizzled(dk + 4, row0 + 8)]),
    };

    static BFrag Tf32B(ArrayView<float> tile, int dk, int col0) => new()
    {
        R0 = Interop.FloatAsInt(tile[Swizzled(dk, col0)]), R1 = Interop.FloatAsInt(tile[Swizzled(dk + 4, col0)]),
    };

    /// <summary>BF16: each register is one stored pair; pair rows tig and tig + 4 hold depths 2·tig(+1) and 2·tig + 8(+1).</summary>
    static AFrag Bf16A(ArrayView<uint> tile, int row0) => new()
    {
        R0 = tile[Swizzled(0, row0)], R1 = tile[Swizzled(0, row0 + 8)],
        R2 = tile[Swizzled(4, row0)], R3 = tile[Swizzled(4, row0 + 8)],
    };

    static BFrag Bf16B(ArrayView<uint> tile, int col0) => new() { R0 = tile[Swizzled(0, col0)], R1 = tile[Swizzled(4, col0)] };

    static MmaAcc Mma16(MmaAcc acc, AFrag a0, AFrag a1, AFrag a2, AFrag a3, BFrag b0, BFrag b1, BFrag b2, BFrag b3, int precision, bool emulate, ArrayView<uint> emulation)
    {
        acc.F00 = Mma(acc.F00, a0, b0, precision, emulate, emulation); acc.F01 = Mma(acc.F01, a0, b1, precision, emulate, emulation);
        acc.F02 = Mma(acc.F02, a0, b2, precision, emulate, emulation); acc.F03 = Mma(acc.F03, a0, b3, precision, emulate, emulation);
        acc.F10 = Mma(acc.F10, a1, b0, precision, emulate, emulation); acc.F11 = Mma(acc.F11, a1, b1, precision, emulate, emulation);
        acc.F12 = Mma(acc.F12, a1, b2, precision, emulate, emulation); acc.F13 = Mma(acc.F13, a1, b3, precision, emulate, emulation);
        acc.F20 = Mma(acc.F20, a2, b0, precision, emulate, emulation); acc.F21 = Mma(acc.F21, a2, b1, precision, emulate, emulation);
        acc.F22 = Mma(acc.F22, a2, b2, precision, emulate, emulation); acc.F23 = Mma(acc.F23, a2, b3, precision, emulate, emulation);
        acc.F30 = Mma(acc.F30, a3, b0, precision, emulate, emulation); acc.F31 = Mma(acc.F31, a3, b1, precision, emulate, emulation);
        acc.F32 = Mma(acc.F32, a3, b2, precision, emulate, emulation); acc.F33 = Mma(acc.F33, a3, b3, precision, emulate, emulation);
        return acc;
    }

    /// <summary>
    /// D = A·B + C for one fragment: mma.sync, or, in the emulated kernels (emulate, a compile-time constant), the
    /// same product computed from the registers every lane holds.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Frag Mma(Frag c, AFrag a, BFrag b, int precision, bool emulate, ArrayView<uint> emulation)
    {
        if (emulate) return EmulateMma(c, a, b, precision, emulation);
        Ref<float> d0 = c.C0, d1 = c.C1, d2 = c.C2, d3 = c.C3;
        Input<uint> a0 = a.R0, a1 = a.R1, a2 = a.R2, a3 = a.R3, b0 = b.R0, b1 = b.R1;
        if (precision == (int)MatMulPrecision.Tf32)
            CudaAsm.EmitRef("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};",
                ref d0, ref d1, ref d2, ref d3, ref a0, ref a1, ref a2, ref a3, ref b0, ref b1);
        else
            CudaAsm.EmitRef("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};",
                ref d0, ref d1, ref d2, ref d3, ref a0, ref a1, ref a2, ref a3, ref b0, ref b1);
        return new Frag { C0 = d0.Value, C1 = d1.Value, C2 = d2.Value, C3 = d3.Value };
    }

    /// <summary>
    /// What mma.sync computes for this lane's c0..c3 (rows groupID, groupID + 8; columns 2·tig,
    /// 2·tig + 1): every lane publishes its registers in the warp's scratch, then each A(row, k) and
    /// B(k, col) is read from the lane and register that hold it under the layout above.
    /// TF32: A(r, k) in lane 4·(r mod 8) + k mod 4, register a0/a1 (k &lt; 4) or a2/a3; B(k, n) in lane
    /// 4·n + k mod 4, register b0 (k &lt; 4) or b1.
    /// BF16: A(r, k) in lane 4·(r mod 8) + (k mod 8) / 2, register {a0,a1}/{a2,a3} (k &lt; 8) or
    /// {a4,a5}/{a6,a7}, half k mod 2; B(k, n) in lane 4·n + (k mod 8) / 2, register {b0,b1} (k &lt; 8) or
    /// {b2,b3}, half k mod 2.
    /// </summary>
    static Frag EmulateMma(Frag c, AFrag a, BFrag b, int precision, ArrayView<uint> scratch)
    {
        int lane = Warp.LaneIdx, groupId = lane >> 2, tig = lane & 3;
        int warpBase = Group.IdxX / 32 * 32 * 6;
        int mine = warpBase + lane * 6;
        scratch[mine] = a.R0; scratch[mine + 1] = a.R1; scratch[mine + 2] = a.R2; scratch[mine + 3] = a.R3;
        scratch[mine + 4] = b.R0; scratch[mine + 5] = b.R1;
        Warp.Barrier();
        bool tf32 = precision == (int)MatMulPrecision.Tf32;
        int depth = tf32 ? 8 : 16;
        for (int k = 0; k < depth; k++)
        {
            bool high = tf32 ? k >= 4 : k >= 8;
            int holder = tf32 ? k & 3 : (k & 7) >> 1;
            bool upperHalf = !tf32 && (k & 1) != 0;
            int aLane = warpBase + (4 * groupId + holder) * 6;
            float top = Operand(scratch[aLane + (high ? 2 : 0)], tf32, upperHalf);      // A(groupID, k)
            float bottom = Operand(scratch[aLane + (high ? 3 : 1)], tf32, upperHalf);   // A(groupID + 8, k)
            int bRegister = high ? 5 : 4;
            float left = Operand(scratch[warpBase + (4 * (2 * tig) + holder) * 6 + bRegister], tf32, upperHalf);       // B(k, 2·tig)
            float right = Operand(scratch[warpBase + (4 * (2 * tig + 1) + holder) * 6 + bRegister], tf32, upperHalf);  // B(k, 2·tig + 1)
            c.C0 += top * left; c.C1 += top * right; c.C2 += bottom * left; c.C3 += bottom * right;
        }
        Warp.Barrier();   // nobody overwrites the scratch while a lane still reads it
        return c;
    }

    static float Operand(uint register, bool tf32, bool upperHalf) =>
        Interop.IntAsFloat(tf32 ? register : upperHalf ? register & 0xFFFF0000u : register << 16);

    // ------------------------------------------------------------ rounding and staging

    /// <summary>
    /// To TF32 (10 mantissa bits), round to nearest with ties away from zero: bit-for-bit what
    /// cvt.rna.tf32.f32 gives for finite values, done with integer ops so the CUDA and emulated paths
    /// agree exactly. Infinities and NaN pass unchanged (adding the half-ulp would turn Inf into NaN).
    /// </summary>
    internal static float RoundToTf32(float v)
    {
        uint u = Interop.FloatAsInt(v);
        if ((u & 0x7F800000u) == 0x7F800000u) return v;
        return Interop.IntAsFloat((u + 0x1000u) & 0xFFFFE000u);
    }

    /// <summary>To BF16 (7 mantissa bits), round to nearest even; NaN stays a (quiet) NaN.</summary>
    internal static float RoundToBf16(float v)
    {
        uint u = Interop.FloatAsInt(v);
        if ((u & 0x7FFFFFFFu) > 0x7F800000u) return Interop.IntAsFloat((u | 0x00400000u) & 0xFFFF0000u);
        return Interop.IntAsFloat((u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u);
    }

    /// <summary>
    /// Two floats as a bf16x2 register, each rounded to nearest even, <paramref name="low"/> in the low
    /// half: cvt.rn.bf16x2.f32 on CUDA (which takes the high half first), the same in integer ops when
    /// emulated. (NaN: the hardware gives the canonical NaN, the emulation a quiet NaN; either stays NaN.)
    /// </summary>
    static uint PackBf16(float low, float high, bool emulate)
    {
        if (emulate) return (Interop.FloatAsInt(RoundToBf16(low)) >> 16) | (Interop.FloatAsInt(RoundToBf16(high)) & 0xFFFF0000u);
        Output<uint> d = default;
        Input<float> h = high, l = low;
        CudaAsm.EmitRef("cvt.rn.bf16x2.f32 %0, %1, %2;", ref d, ref h, ref l);
        return d.Value;
    }

    /// <summary>A thread's share of one slice: two quads of A and two of B (elements <see cref="QuadElement"/>).</summary>
    internal struct StagedQuads
    {
        public Vec4 A1, A2, B1, B2;
    }

    /// <summary>
    /// The first element of a thread's first quad of a 128×16 slice, whose elements e walk the operand's
    /// contiguous dimension (<see cref="TileRowA"/>): along depth, thread t takes rows t/4 and 64 + t/4
    /// at depths 4(t%4)..+3; along rows (columns), rows 4(t%32)..+3 at the two adjacent depths 2(t/32)
    /// and 2(t/32) + 1, so that BF16 can pack each row's pair of depths into one word. Either way a
    /// warp's loads are 512 contiguous bytes per quad (coalesced).
    /// </summary>
    static int QuadElement(bool alongDepth, int t) => alongDepth ? 4 * t : 4 * (t & 31) + 256 * (t >> 5);

    /// <summary>Where the second quad starts after the first: 64 rows on, or one depth on.</summary>
    static int SecondQuad(bool alongDepth) => alongDepth ? BigTile * TcDepth / 2 : BigTile;

    static StagedQuads StageQuads(ArrayView<float> a, ArrayView<float> b, GemmShape s, Slab g, int k0, bool quads)
    {
        int a2 = g.QuadA + SecondQuad(s.ACol == 1), b2 = g.QuadB + SecondQuad(s.BCol != 1);
        // quads (a compile-time constant): 128-bit loads where the quad lies inside the matrix,
        // otherwise the 4 elements one by one (shapes whose strides are not multiples of 4).
        return quads
            ? new StagedQuads
            {
                A1 = LoadQuadA(a, s, g.M0, k0, g.QuadA, TcDepth), A2 = LoadQuadA(a, s, g.M0, k0, a2, TcDepth),
                B1 = LoadQuadB(b, s, g.N0, k0, g.QuadB, TcDepth), B2 = LoadQuadB(b, s, g.N0, k0, b2, TcDepth),
            }
            : new StagedQuads
            {
                A1 = ElementsA(a, s, g.M0, k0, g.QuadA, TcDepth), A2 = ElementsA(a, s, g.M0, k0, a2, TcDepth),
                B1 = ElementsB(b, s, g.N0, k0, g.QuadB, TcDepth), B2 = ElementsB(b, s, g.N0, k0, b2, TcDepth),
            };
    }

    static void StoreTf32Slice(ArrayView<float> tileA, ArrayView<float> tileB, GemmShape s, StagedQuads v, int buffer, Slab g)
    {
        int o = buffer * TcDepth * TcPitch;
        bool aDepth = s.ACol == 1, bDepth = s.BCol != 1;
        int a2 = g.QuadA + SecondQuad(aDepth), b2 = g.QuadB + SecondQuad(bDepth);
        StoreTf32Quad(tileA, o, aDepth, TileDepthA(s, g.QuadA, BigTile, TcDepth), TileRowA(s, g.QuadA, BigTile, TcDepth), v.A1);
        StoreTf32Quad(tileA, o, aDepth, TileDepthA(s, a2, BigTile, TcDepth), TileRowA(s, a2, BigTile, TcDepth), v.A2);
        StoreTf32Quad(tileB, o, bDepth, TileDepthB(s, g.QuadB, BigTile, TcDepth), TileColB(s, g.QuadB, BigTile, TcDepth), v.B1);
        StoreTf32Quad(tileB, o, bDepth, TileDepthB(s, b2, BigTile, TcDepth), TileColB(s, b2, BigTile, TcDepth), v.B2);
    }

    /// <summary>
    /// A quad at depth row k, column col: along depth, rows k..k+3 of one column (k a multiple of 4, so
    /// one swizzle for all four: conflict-free scalar stores); along columns, one 128-bit store.
    /// </summary>
    static void StoreTf32Quad(ArrayView<float> tile, int o, bool alongDepth, int k, int col, Vec4 q)
    {
        var r = new Vec4 { X = RoundToTf32(q.X), Y = RoundToTf32(q.Y), Z = RoundToTf32(q.Z), W = RoundToTf32(q.W) };
        int at = o + Swizzled(k, col);
        if (alongDepth)
        {
            tile[at] = r.X; tile[at + TcPitch] = r.Y; tile[at + 2 * TcPitch] = r.Z; tile[at + 3 * TcPitch] = r.W;
        }
        else tile.Cast<Vec4>()[at >> 2] = r;
    }

    /// <summary>Four 32-bit words, stored into shared memory as one 128-bit store.</summary>
    internal struct Words4
    {
        public uint X, Y, Z, W;
    }

    static void StoreBf16Slice(ArrayView<uint> tileA, ArrayView<uint> tileB, GemmShape s, StagedQuads v, int buffer, Slab g, bool emulate)
    {
        int o = buffer * (TcDepth / 2) * TcPitch;
        bool aDepth = s.ACol == 1, bDepth = s.BCol != 1;
        int a2 = g.QuadA + SecondQuad(aDepth), b2 = g.QuadB + SecondQuad(bDepth);
        StoreBf16Quads(tileA, o, aDepth, TileDepthA(s, g.QuadA, BigTile, TcDepth), TileRowA(s, g.QuadA, BigTile, TcDepth), TileRowA(s, a2, BigTile, TcDepth), v.A1, v.A2, emulate);
        StoreBf16Quads(tileB, o, bDepth, TileDepthB(s, g.QuadB, BigTile, TcDepth), TileColB(s, g.QuadB, BigTile, TcDepth), TileColB(s, b2, BigTile, TcDepth), v.B1, v.B2, emulate);
    }

    /// <summary>
    /// A thread's two quads as bf16 pairs. Along depth: each quad is depths k..k+3 of one column, two
    /// pairs, stored into pair rows k/2 and k/2 + 1 of columns col1 and col2. Along columns: the quads
    /// are depths k and k+1 of columns col1..col1+3, four pairs in pair row k/2: one 128-bit store.
    /// </summary>
    static void StoreBf16Quads(ArrayView<uint> tile, int o, bool alongDepth, int k, int col1, int col2, Vec4 q1, Vec4 q2, bool emulate)
    {
        int p = k >> 1;
        if (alongDepth)
        {
            tile[o + Swizzled(p, col1)] = PackBf16(q1.X, q1.Y, emulate);
            tile[o + Swizzled(p + 1, col1)] = PackBf16(q1.Z, q1.W, emulate);
            tile[o + Swizzled(p, col2)] = PackBf16(q2.X, q2.Y, emulate);
            tile[o + Swizzled(p + 1, col2)] = PackBf16(q2.Z, q2.W, emulate);
            return;
        }
        tile.Cast<Words4>()[(o + Swizzled(p, col1)) >> 2] = new Words4
        {
            X = PackBf16(q1.X, q2.X, emulate), Y = PackBf16(q1.Y, q2.Y, emulate),
            Z = PackBf16(q1.Z, q2.Z, emulate), W = PackBf16(q1.W, q2.W, emulate),
        };
    }

    /// <summary>c0, c1 at row i, columns j, j + 1; c2, c3 at row i + 8.</summary>
    static void StoreFrag(ArrayView<float> c, ArrayView<float> bias, GemmShape s, int i, int j, Frag f)
    {
        if (i < s.M) { StoreGemm(c, bias, s, i, j, f.C0); StoreGemm(c, bias, s, i, j + 1, f.C1); }
        if (i + 8 < s.M) { StoreGemm(c, bias, s, i + 8, j, f.C2); StoreGemm(c, bias, s, i + 8, j + 1, f.C3); }
    }
}
