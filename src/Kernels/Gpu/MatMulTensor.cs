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
// from shared memory itself (ILGPU gives no shared-memory address, so no ldmatrix).
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
    /// Shared row pitches (floats) that make a warp's fragment reads conflict-free. TF32 fragments read
    /// rows k = tig (+4) at column groupID: banks tig·pitch + groupID are 32 distinct when pitch ≡ 8
    /// (mod 32). BF16 fragments read rows k = 2·tig (+1, +8): banks 2·tig·pitch + groupID need
    /// 2·pitch ≡ 8 (mod 32), i.e. pitch ≡ 4 (mod 16). Both keep rows 16-byte aligned.
    /// </summary>
    const int Tf32Pitch = BigTile + 8, Bf16Pitch = BigTile + 4;
    const int TcShared = 2 * TcDepth * Tf32Pitch;

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

    internal struct Staged8
    {
        public float A0, A1, A2, A3, A4, A5, A6, A7, B0, B1, B2, B3, B4, B5, B6, B7;
    }

    /// <summary>
    /// One group per 128×128 tile of C, 8 warps as 2 (rows) × 4 (columns), each warp 64×32. Operands are
    /// rounded to the precision as they are staged, so shared memory holds exact TF32/BF16 values
    /// as floats (depth-major like the float32 kernel) and fragments are plain bit moves. The next
    /// slice is prefetched into registers while the current one is multiplied. <paramref name="quads"/>
    /// picks the global load pattern as in the float32 kernel: thread t stages elements t + 256u
    /// (scalar) or 4t + u and 1024 + 4t + u (two 128-bit loads per operand), u = 0..3; every
    /// kernel reads fragments at constant offsets from a per-lane base (below).
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
        int pitch = precision == (int)MatMulPrecision.Tf32 ? Tf32Pitch : Bf16Pitch;
        var tileA = SharedMemory.Allocate<float>(TcShared);
        var tileB = SharedMemory.Allocate<float>(TcShared);
        int t = Group.IdxX, lane = t % 32, warp = t / 32;
        int groupId = lane >> 2, tig = lane & 3;   // the PTX ISA's groupID and threadID_in_group
        int wm = (warp & 1) * 64, wn = (warp >> 1) * 32;
        int m0 = Grid.IdxY * BigTile, n0 = Grid.IdxX * BigTile;
        int slices = (s.K - kBegin + TcDepth - 1) / TcDepth;

        var staged = LoadTcSlice(a, b, s, m0, n0, kBegin, t, precision, quads);
        StoreTcSlice(tileA, tileB, s, staged, 0, pitch, t, quads);
        Group.Barrier();

        MmaAcc acc = default;
        for (int slice = 0; slice < slices; slice++)
        {
            int buffer = slice & 1;
            bool more = slice + 1 < slices;
            if (more) staged = LoadTcSlice(a, b, s, m0, n0, kBegin + (slice + 1) * TcDepth, t, precision, quads);
            int offset = buffer * TcDepth * pitch;
            // This lane's fragment base (slice, depth row and column of its first element) folded
            // into the views once per slice, so every fragment read below is at a constant offset
            // from it: ptxas can fold those into the ld.shared immediate, where the general form
            // costs a 32-bit add, a widening multiply and a 64-bit add per read. (On an H200 it made
            // no difference to the scalar-load kernel, 16.3 -> 16.6 TFLOP/s: the global loads bound
            // that one; with 128-bit loads the kernel reaches 55-64.)
            int laneA = offset + (precision == (int)MatMulPrecision.Tf32 ? tig : 2 * tig) * pitch + groupId;
            var fragA = tileA.SubView(laneA + wm, TcShared - laneA - wm);
            var fragB = tileB.SubView(laneA + wn, TcShared - laneA - wn);
            if (precision == (int)MatMulPrecision.Tf32)
            {
                acc = Tf32Step(fragA, fragB, 0, pitch, acc, emulate, emulation);
                acc = Tf32Step(fragA, fragB, 8 * pitch, pitch, acc, emulate, emulation);
            }
            else acc = Bf16Step(fragA, fragB, 0, pitch, acc, emulate, emulation);
            if (more) StoreTcSlice(tileA, tileB, s, staged, buffer ^ 1, pitch, t, quads);
            Group.Barrier();
        }

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
    // Shared memory is depth-major: A(i, k) at tileA[off + k * pitch + i], B(k, j) at tileB[off + k * pitch + j].

    // The views start at this lane's first element (row or column groupID of the warp's sub-tile,
    // depth row tig or 2·tig of the slice), so every offset below is a constant.
    static MmaAcc Tf32Step(ArrayView<float> fragA, ArrayView<float> fragB, int off, int pitch, MmaAcc acc, bool emulate, ArrayView<uint> emulation)
    {
        var a0 = Tf32A(fragA, off, pitch, 0); var a1 = Tf32A(fragA, off, pitch, 16);
        var a2 = Tf32A(fragA, off, pitch, 32); var a3 = Tf32A(fragA, off, pitch, 48);
        var b0 = Tf32B(fragB, off, pitch, 0); var b1 = Tf32B(fragB, off, pitch, 8);
        var b2 = Tf32B(fragB, off, pitch, 16); var b3 = Tf32B(fragB, off, pitch, 24);
        return Mma16(acc, a0, a1, a2, a3, b0, b1, b2, b3, (int)MatMulPrecision.Tf32, emulate, emulation);
    }

    static MmaAcc Bf16Step(ArrayView<float> fragA, ArrayView<float> fragB, int off, int pitch, MmaAcc acc, bool emulate, ArrayView<uint> emulation)
    {
        var a0 = Bf16A(fragA, off, pitch, 0); var a1 = Bf16A(fragA, off, pitch, 16);
        var a2 = Bf16A(fragA, off, pitch, 32); var a3 = Bf16A(fragA, off, pitch, 48);
        var b0 = Bf16B(fragB, off, pitch, 0); var b1 = Bf16B(fragB, off, pitch, 8);
        var b2 = Bf16B(fragB, off, pitch, 16); var b3 = Bf16B(fragB, off, pitch, 24);
        return Mma16(acc, a0, a1, a2, a3, b0, b1, b2, b3, (int)MatMulPrecision.Bf16, emulate, emulation);
    }

    /// <summary>A fragment of rows row0..row0+15, k 0..7 of the slice at <paramref name="off"/>.</summary>
    static AFrag Tf32A(ArrayView<float> tile, int off, int pitch, int row0)
    {
        int top = off + row0, right = top + 4 * pitch;
        return new AFrag
        {
            R0 = Interop.FloatAsInt(tile[top]), R1 = Interop.FloatAsInt(tile[top + 8]),
            R2 = Interop.FloatAsInt(tile[right]), R3 = Interop.FloatAsInt(tile[right + 8]),
        };
    }

    static BFrag Tf32B(ArrayView<float> tile, int off, int pitch, int col0)
    {
        int top = off + col0;
        return new BFrag { R0 = Interop.FloatAsInt(tile[top]), R1 = Interop.FloatAsInt(tile[top + 4 * pitch]) };
    }

    static AFrag Bf16A(ArrayView<float> tile, int off, int pitch, int row0)
    {
        int k0 = off + row0, k8 = k0 + 8 * pitch;
        return new AFrag
        {
            R0 = PackBf16(tile[k0], tile[k0 + pitch]), R1 = PackBf16(tile[k0 + 8], tile[k0 + pitch + 8]),
            R2 = PackBf16(tile[k8], tile[k8 + pitch]), R3 = PackBf16(tile[k8 + 8], tile[k8 + pitch + 8]),
        };
    }

    static BFrag Bf16B(ArrayView<float> tile, int off, int pitch, int col0)
    {
        int k0 = off + col0, k8 = k0 + 8 * pitch;
        return new BFrag { R0 = PackBf16(tile[k0], tile[k0 + pitch]), R1 = PackBf16(tile[k8], tile[k8 + pitch]) };
    }

    /// <summary>Two floats already rounded to bf16 (low 16 bits zero) as a bf16x2 register, low first.</summary>
    static uint PackBf16(float low, float high) => (Interop.FloatAsInt(low) >> 16) | (Interop.FloatAsInt(high) & 0xFFFF0000u);

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

    static float Quantize(float v, int precision) => precision == (int)MatMulPrecision.Tf32 ? RoundToTf32(v) : RoundToBf16(v);

    static Staged8 LoadTcSlice(ArrayView<float> a, ArrayView<float> b, GemmShape s, int m0, int n0, int k0, int t, int p, bool quads) =>
        quads ? LoadTcQuads(a, b, s, m0, n0, k0, t, p) : LoadTcScalars(a, b, s, m0, n0, k0, t, p);

    static Staged8 LoadTcScalars(ArrayView<float> a, ArrayView<float> b, GemmShape s, int m0, int n0, int k0, int t, int p) => new()
    {
        A0 = Quantize(LoadTileA(a, s, m0, k0, t, BigTile, TcDepth), p),
        A1 = Quantize(LoadTileA(a, s, m0, k0, t + GemmThreads, BigTile, TcDepth), p),
        A2 = Quantize(LoadTileA(a, s, m0, k0, t + 2 * GemmThreads, BigTile, TcDepth), p),
        A3 = Quantize(LoadTileA(a, s, m0, k0, t + 3 * GemmThreads, BigTile, TcDepth), p),
        A4 = Quantize(LoadTileA(a, s, m0, k0, t + 4 * GemmThreads, BigTile, TcDepth), p),
        A5 = Quantize(LoadTileA(a, s, m0, k0, t + 5 * GemmThreads, BigTile, TcDepth), p),
        A6 = Quantize(LoadTileA(a, s, m0, k0, t + 6 * GemmThreads, BigTile, TcDepth), p),
        A7 = Quantize(LoadTileA(a, s, m0, k0, t + 7 * GemmThreads, BigTile, TcDepth), p),
        B0 = Quantize(LoadTileB(b, s, n0, k0, t, BigTile, TcDepth), p),
        B1 = Quantize(LoadTileB(b, s, n0, k0, t + GemmThreads, BigTile, TcDepth), p),
        B2 = Quantize(LoadTileB(b, s, n0, k0, t + 2 * GemmThreads, BigTile, TcDepth), p),
        B3 = Quantize(LoadTileB(b, s, n0, k0, t + 3 * GemmThreads, BigTile, TcDepth), p),
        B4 = Quantize(LoadTileB(b, s, n0, k0, t + 4 * GemmThreads, BigTile, TcDepth), p),
        B5 = Quantize(LoadTileB(b, s, n0, k0, t + 5 * GemmThreads, BigTile, TcDepth), p),
        B6 = Quantize(LoadTileB(b, s, n0, k0, t + 6 * GemmThreads, BigTile, TcDepth), p),
        B7 = Quantize(LoadTileB(b, s, n0, k0, t + 7 * GemmThreads, BigTile, TcDepth), p),
    };

    /// <summary>
    /// Elements 4t..4t+3 (A0..A3, B0..B3) and 1024+4t.. (A4..A7, B4..B7) of the slice: four 128-bit loads.
    /// </summary>
    static Staged8 LoadTcQuads(ArrayView<float> a, ArrayView<float> b, GemmShape s, int m0, int n0, int k0, int t, int p)
    {
        var a0 = LoadQuadA(a, s, m0, k0, 4 * t, TcDepth); var a1 = LoadQuadA(a, s, m0, k0, TcHalf + 4 * t, TcDepth);
        var b0 = LoadQuadB(b, s, n0, k0, 4 * t, TcDepth); var b1 = LoadQuadB(b, s, n0, k0, TcHalf + 4 * t, TcDepth);
        return new Staged8
        {
            A0 = Quantize(a0.X, p), A1 = Quantize(a0.Y, p), A2 = Quantize(a0.Z, p), A3 = Quantize(a0.W, p),
            A4 = Quantize(a1.X, p), A5 = Quantize(a1.Y, p), A6 = Quantize(a1.Z, p), A7 = Quantize(a1.W, p),
            B0 = Quantize(b0.X, p), B1 = Quantize(b0.Y, p), B2 = Quantize(b0.Z, p), B3 = Quantize(b0.W, p),
            B4 = Quantize(b1.X, p), B5 = Quantize(b1.Y, p), B6 = Quantize(b1.Z, p), B7 = Quantize(b1.W, p),
        };
    }

    /// <summary>Half of a 128×16 slice: where the second quad of each thread starts.</summary>
    const int TcHalf = BigTile * TcDepth / 2;

    static void StoreTcSlice(ArrayView<float> tileA, ArrayView<float> tileB, GemmShape s, Staged8 v, int buffer, int pitch, int t, bool quads)
    {
        int o = buffer * TcDepth * pitch;
        if (quads)
        {
            StoreQuads(tileA, tileB, s, new Vec4 { X = v.A0, Y = v.A1, Z = v.A2, W = v.A3 }, new Vec4 { X = v.B0, Y = v.B1, Z = v.B2, W = v.B3 },
                o, 4 * t, TcDepth, pitch);
            StoreQuads(tileA, tileB, s, new Vec4 { X = v.A4, Y = v.A5, Z = v.A6, W = v.A7 }, new Vec4 { X = v.B4, Y = v.B5, Z = v.B6, W = v.B7 },
                o, TcHalf + 4 * t, TcDepth, pitch);
            return;
        }
        tileA[o + TileOffsetA(s, t, BigTile, TcDepth, pitch)] = v.A0;
        tileA[o + TileOffsetA(s, t + GemmThreads, BigTile, TcDepth, pitch)] = v.A1;
        tileA[o + TileOffsetA(s, t + 2 * GemmThreads, BigTile, TcDepth, pitch)] = v.A2;
        tileA[o + TileOffsetA(s, t + 3 * GemmThreads, BigTile, TcDepth, pitch)] = v.A3;
        tileA[o + TileOffsetA(s, t + 4 * GemmThreads, BigTile, TcDepth, pitch)] = v.A4;
        tileA[o + TileOffsetA(s, t + 5 * GemmThreads, BigTile, TcDepth, pitch)] = v.A5;
        tileA[o + TileOffsetA(s, t + 6 * GemmThreads, BigTile, TcDepth, pitch)] = v.A6;
        tileA[o + TileOffsetA(s, t + 7 * GemmThreads, BigTile, TcDepth, pitch)] = v.A7;
        tileB[o + TileOffsetB(s, t, BigTile, TcDepth, pitch)] = v.B0;
        tileB[o + TileOffsetB(s, t + GemmThreads, BigTile, TcDepth, pitch)] = v.B1;
        tileB[o + TileOffsetB(s, t + 2 * GemmThreads, BigTile, TcDepth, pitch)] = v.B2;
        tileB[o + TileOffsetB(s, t + 3 * GemmThreads, BigTile, TcDepth, pitch)] = v.B3;
        tileB[o + TileOffsetB(s, t + 4 * GemmThreads, BigTile, TcDepth, pitch)] = v.B4;
        tileB[o + TileOffsetB(s, t + 5 * GemmThreads, BigTile, TcDepth, pitch)] = v.B5;
        tileB[o + TileOffsetB(s, t + 6 * GemmThreads, BigTile, TcDepth, pitch)] = v.B6;
        tileB[o + TileOffsetB(s, t + 7 * GemmThreads, BigTile, TcDepth, pitch)] = v.B7;
    }

    /// <summary>c0, c1 at row i, columns j, j + 1; c2, c3 at row i + 8.</summary>
    static void StoreFrag(ArrayView<float> c, ArrayView<float> bias, GemmShape s, int i, int j, Frag f)
    {
        if (i < s.M) { StoreGemm(c, bias, s, i, j, f.C0); StoreGemm(c, bias, s, i, j + 1, f.C1); }
        if (i + 8 < s.M) { StoreGemm(c, bias, s, i + 8, j, f.C2); StoreGemm(c, bias, s, i + 8, j + 1, f.C3); }
    }
}
