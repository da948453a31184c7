using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace ArcherIlgpu.Kernels;

/// <summary>
/// A matrix operand seen through strides: element (row, col) lives at Ptr[row * RowStride + col * ColStride].
/// One GEMM then serves in·Wᵀ, dOut·W and dOutᵀ·in; only the packing routines look at the strides.
/// </summary>
internal readonly unsafe struct StridedMatrix(float* ptr, int rowStride, int colStride)
{
    public readonly float* Ptr = ptr;
    public readonly int RowStride = rowStride;
    public readonly int ColStride = colStride;
}

/// <summary>
/// Single-precision GEMM, C[M, N] = A[M, K] · B[K, N] (+ C) (+ bias[N] broadcast over rows), in the
/// Goto/BLIS style. For each NC-wide column block of C and each KC-deep slice of K, B is packed once
/// into NR-column panels (shared, packed in parallel); then each task packs a row block of A into MR-row panels in its own buffer
/// (which stays in its core's L2) and sweeps the B panels past it with an MR×NR register-blocked FMA
/// micro-kernel. Panels are zero-padded, so the micro-kernel never branches on edges. Strided
/// operands are packed with 8×8 register transposes or contiguous vector copies, never gathers.
/// Vector512 (8×32, 16 zmm accumulators) where AVX-512 is fast, Vector256 (6×16, 12 ymm) otherwise.
/// </summary>
internal static unsafe class Gemm
{
    /// <summary>
    /// Which micro-kernel runs: Vector512 where the hardware has it. Tests switch it off to hold the
    /// Vector256 kernel to the reference on this AVX-512 machine too.
    /// </summary>
    internal static bool UseVector512 { get; set; } = Vector512.IsHardwareAccelerated;
    /// <summary>
    /// Depth of one packed slice. 384 measured best of 256/384/512 here: a 128-row packed A block
    /// (192 KiB) stays in L2, a B micro-panel (48 KiB) streams through L1, and K = 768 is two slices.
    /// </summary>
    internal const int KC = 384;
    /// <summary>
    /// Columns of C per packed B block. Without this bound the packed B of the classifier head
    /// (N = V = 151936) was V·KC floats, 233 MB, allocated on the first step and kept by the calling
    /// thread; now it is at most NC·KC floats (6 MiB, which 2 to 64 cores' L3 hold). A multiple of both NR.
    /// </summary>
    internal const int NC = 4096;
    const int MaxMicroTile = 8 * 32;
    /// <summary>Rows of A packed per task: 128×KC floats (192 KiB) stay in L2.</summary>
    const int BlockRows = 128;

    /// <summary>Below this many multiply-adds the Parallel.For hand-off costs more than it saves.</summary>
    const long SerialWork = 1L << 18;

    /// <summary>C = A·B (+ bias) when <paramref name="accumulate"/> is false, C += A·B (+ bias) otherwise.</summary>
    /// <param name="serial">run on the calling thread only (callers that are already one of many parallel work items).</param>
    public static void Multiply(int M, int N, int K, StridedMatrix A, StridedMatrix B,
        float* C, int ldc, float* bias, bool accumulate, bool serial = false)
    {
        if (M <= 0 || N <= 0) return;
        if (K <= 0) { InitialiseWithoutProduct(M, N, C, ldc, bias, accumulate); return; }
        var job = GemmJob.ForThisThread();
        job.Setup(M, N, K, A, B, C, ldc, bias, accumulate);
        job.Run(serial);
    }

    static void InitialiseWithoutProduct(int M, int N, float* C, int ldc, float* bias, bool accumulate)
    {
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++)
                C[(long)i * ldc + j] = (accumulate ? C[(long)i * ldc + j] : 0f) + (bias != null ? bias[j] : 0f);
    }

    /// <summary>
    /// The state of one multiplication, owned by the calling thread: its packing buffers grow to the
    /// largest problem seen and are then reused, and its delegates are bound once, so a call allocates
    /// nothing of its own.
    /// </summary>
    sealed class GemmJob
    {
        [ThreadStatic] static GemmJob? current;
        public static GemmJob ForThisThread() => current ??= new GemmJob();

        bool wide;
        /// <summary>Rows (MR) and columns (NR) of C per micro-tile: 8×32 on Vector512, 6×16 on Vector256.</summary>
        int MR, NR;
        int M, N, K, ldc;
        StridedMatrix A, B;
        float* C, bias;
        /// <summary>The whole problem's N, B, C and bias; N, B, C and bias above are the current NC-wide column block.</summary>
        int fullN;
        StridedMatrix fullB;
        float* fullC, fullBias;
        bool accumulate;

        // Per K slice.
        int pc, kc;
        bool firstSlice;

        // Partition: C is cut into row blocks of blockPanels A panels times column parts of partPanels B panels.
        int mPanels, nPanels, blockPanels, rowBlocks, partPanels, columnParts, packChunk, packTasks;

        float[]? packBBuffer;
        float* packB;
        /// <summary>Each worker packs its row block of A into its own buffer, which then stays in its L2.</summary>
        [ThreadStatic] static float[]? packABuffer;

        readonly Action<int> packBody, computeBody;

        GemmJob()
        {
            packBody = PackBChunk;
            computeBody = ComputeBlock;
        }

        public void Setup(int m, int n, int k, StridedMatrix a, StridedMatrix b, float* c, int ldc, float* bias, bool accumulate)
        {
            wide = UseVector512;
            MR = wide ? 8 : 6; NR = wide ? 32 : 16;
            M = m; K = k; A = a; this.ldc = ldc; this.accumulate = accumulate;
            fullN = n; fullB = b; fullC = c; fullBias = bias;
            mPanels = (m + MR - 1) / MR;
            packB = EnsureAligned(ref packBBuffer, (long)CeilDiv(Math.Min(n, NC), NR) * NR * KC);
        }

        /// <summary>Points N, B, C and bias at columns [j0, j0 + width) of the whole problem.</summary>
        void SelectColumnBlock(int j0, int width)
        {
            N = width;
            B = new StridedMatrix(fullB.Ptr + (long)j0 * fullB.ColStride, fullB.RowStride, fullB.ColStride);
            C = fullC + j0;
            bias = fullBias == null ? null : fullBias + j0;
            nPanels = (width + NR - 1) / NR;
            ChoosePartition();
        }

        /// <summary>
        /// Row blocks of up to 128 rows (a packed block, 128×KC floats = 192 KiB, stays in L2 while every
        /// B panel streams past it), halved down to 32 rows until there are about three blocks per core;
        /// only then are the columns split too, so A is packed once wherever the rows alone keep 2 to 64
        /// cores busy.
        /// </summary>
        void ChoosePartition()
        {
            int cores = Environment.ProcessorCount;
            int wantTasks = cores == 1 ? 1 : 3 * cores;
            blockPanels = Math.Min(mPanels, Math.Max(1, BlockRows / MR));
            while (CeilDiv(mPanels, blockPanels) < wantTasks && blockPanels * MR > 32) blockPanels = CeilDiv(blockPanels, 2);
            rowBlocks = CeilDiv(mPanels, blockPanels);
            columnParts = Math.Min(CeilDiv(wantTasks, rowBlocks), CeilDiv(nPanels, 2));
            partPanels = CeilDiv(nPanels, columnParts);
            columnParts = CeilDiv(nPanels, partPanels);

            packTasks = Math.Min(nPanels, Math.Max(1, 4 * cores));
            packChunk = CeilDiv(nPanels, packTasks);
            packTasks = CeilDiv(nPanels, packChunk);
        }

        static int CeilDiv(int a, int b) => (a + b - 1) / b;

        public void Run(bool serialOnly)
        {
            bool serial = serialOnly || (long)M * fullN * K < SerialWork || Environment.ProcessorCount == 1;
            for (int jc = 0; jc < fullN; jc += NC)
            {
                SelectColumnBlock(jc, Math.Min(NC, fullN - jc));
                for (pc = 0; pc < K; pc += KC)
                {
                    kc = Math.Min(KC, K - pc);
                    firstSlice = pc == 0;
                    For(packTasks, packBody, serial);
                    For(rowBlocks * columnParts, computeBody, serial);
                }
            }
        }

        static void For(int n, Action<int> body, bool serial)
        {
            if (serial || n == 1) { for (int i = 0; i < n; i++) body(i); }
            else CpuWorkers.For(n, body);
        }

        /// <summary>
        /// A panels [panel0, panel1) of the slice, panel q at dst + q * MR * kc as [p][r]: the
        /// micro-kernel broadcasts one element per row per k step.
        /// </summary>
        void PackARange(int panel0, int panel1, float* dst)
        {
            int mr = MR;
            if (A.RowStride == 1)
            {
                // Aᵀ row-major (dWeight's dOut): row p of the slice is contiguous across all panels.
                for (int p = 0; p < kc; p++)
                {
                    float* src = A.Ptr + (long)(pc + p) * A.ColStride;
                    for (int q = panel0; q < panel1; q++)
                        CopyPadded(src + q * mr, dst + (long)(q - panel0) * mr * kc + p * mr, Math.Min(mr, M - q * mr), mr);
                }
                return;
            }
            for (int q = panel0; q < panel1; q++)
            {
                int i0 = q * mr, rows = Math.Min(mr, M - i0);
                float* d = dst + (long)(q - panel0) * mr * kc;
                float* src = A.Ptr + (long)i0 * A.RowStride + (long)pc * A.ColStride;
                int p = 0;
                if (A.ColStride == 1 && rows == 8 && mr == 8 && Avx.IsSupported)
                    for (; p + 8 <= kc; p += 8) Transpose8x8(src + p, A.RowStride, d + p * 8, 8);
                for (; p < kc; p++)
                {
                    int r = 0;
                    for (; r < rows; r++) d[p * mr + r] = src[(long)r * A.RowStride + (long)p * A.ColStride];
                    for (; r < mr; r++) d[p * mr + r] = 0f;
                }
            }
        }

        void PackBChunk(int task)
        {
            int panel0 = task * packChunk, panel1 = Math.Min(nPanels, panel0 + packChunk);
            int nr = NR;
            if (B.ColStride == 1)
            {
                // B row-major (W for dInput, in for dWeight): read row p of the slice contiguously across the chunk.
                for (int p = 0; p < kc; p++)
                {
                    float* src = B.Ptr + (long)(pc + p) * B.RowStride;
                    for (int q = panel0; q < panel1; q++)
                        CopyPadded(src + q * nr, packB + (long)q * nr * kc + p * nr, Math.Min(nr, N - q * nr), nr);
                }
                return;
            }
            for (int q = panel0; q < panel1; q++) PackTransposedBPanel(q);
        }

        /// <summary>Bᵀ row-major (the forward's weight [OC, K]): 8×8 register transposes of W.</summary>
        void PackTransposedBPanel(int panel)
        {
            int nr = NR, j0 = panel * nr, cols = Math.Min(nr, N - j0);
            float* dst = packB + (long)panel * nr * kc;
            float* src = B.Ptr + (long)j0 * B.ColStride + (long)pc * B.RowStride;
            int c0 = 0;
            if (B.RowStride == 1 && Avx.IsSupported)
                for (; c0 + 8 <= cols; c0 += 8)
                {
                    int p = 0;
                    for (; p + 8 <= kc; p += 8) Transpose8x8(src + (long)c0 * B.ColStride + p, B.ColStride, dst + p * nr + c0, nr);
                    for (; p < kc; p++)
                        for (int c = c0; c < c0 + 8; c++) dst[p * nr + c] = src[(long)c * B.ColStride + p];
                }
            for (int p = 0; p < kc; p++)
            {
                int c = c0;
                for (; c < cols; c++) dst[p * nr + c] = src[(long)c * B.ColStride + (long)p * B.RowStride];
                for (; c < nr; c++) dst[p * nr + c] = 0f;
            }
        }

        /// <summary>
        /// One row block × column part of C for the current K slice: pack the block's A panels, then
        /// sweep the B panels (outer) past them (inner), so a B panel is read from L1/L2 for every A
        /// panel and the packed block never leaves L2.
        /// </summary>
        void ComputeBlock(int task)
        {
            int mr = MR, nr = NR;
            int block = task / columnParts, part = task % columnParts;
            int panelI0 = block * blockPanels, panelI1 = Math.Min(mPanels, panelI0 + blockPanels);
            int panelJ0 = part * partPanels, panelJ1 = Math.Min(nPanels, panelJ0 + partPanels);

            float* packA = EnsureAligned(ref packABuffer, (long)BlockRows * KC);
            PackARange(panelI0, panelI1, packA);

            bool loadC = accumulate || !firstSlice;
            float* sliceBias = firstSlice ? bias : null;
            float* edge = stackalloc float[MaxMicroTile];
            for (int pj = panelJ0; pj < panelJ1; pj++)
            {
                int j0 = pj * nr, cols = Math.Min(nr, N - j0);
                float* b = packB + (long)pj * nr * kc;
                float* tileBias = sliceBias == null ? null : sliceBias + j0;
                for (int pi = panelI0; pi < panelI1; pi++)
                {
                    int i0 = pi * mr, rows = Math.Min(mr, M - i0);
                    float* a = packA + (long)(pi - panelI0) * mr * kc;
                    float* c = C + (long)i0 * ldc + j0;
                    if (rows == mr && cols == nr) MicroKernel(kc, a, b, c, ldc, loadC, tileBias);
                    else EdgeTile(a, b, c, rows, cols, loadC, tileBias, edge);
                }
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        void MicroKernel(int kc, float* a, float* b, float* c, int ldc, bool loadC, float* bias)
        {
            if (wide) Kernel8x32(kc, a, b, c, ldc, loadC, bias);
            else Kernel6x16(kc, a, b, c, ldc, loadC, bias);
        }

        /// <summary>
        /// A partial micro-tile runs the full kernel on a scratch tile seeded with the valid part of C
        /// (and bias), then copies the valid part back: the padding computes zeros and is dropped.
        /// </summary>
        void EdgeTile(float* a, float* b, float* c, int rows, int cols, bool loadC, float* tileBias, float* scratch)
        {
            int mr = MR, nr = NR;
            for (int r = 0; r < mr; r++)
                for (int j = 0; j < nr; j++)
                {
                    float v = 0f;
                    if (r < rows && j < cols)
                    {
                        if (loadC) v = c[(long)r * ldc + j];
                        if (tileBias != null) v += tileBias[j];
                    }
                    scratch[r * nr + j] = v;
                }
            MicroKernel(kc, a, b, scratch, nr, true, null);
            for (int r = 0; r < rows; r++)
                for (int j = 0; j < cols; j++) c[(long)r * ldc + j] = scratch[r * nr + j];
        }
    }

    /// <summary>Copies n floats and zero-fills up to width (8, 16 or 32): one or two vector moves when full.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void CopyPadded(float* src, float* dst, int n, int width)
    {
        if (n == width && Vector256.IsHardwareAccelerated && (width & 7) == 0)
        {
            if (width == 32 && Vector512.IsHardwareAccelerated)
            {
                Vector512.Store(Vector512.Load(src), dst);
                Vector512.Store(Vector512.Load(src + 16), dst + 16);
            }
            else for (int c = 0; c < width; c += 8) Vector256.Store(Vector256.Load(src + c), dst + c);
            return;
        }
        int i = 0;
        for (; i < n; i++) dst[i] = src[i];
        for (; i < width; i++) dst[i] = 0f;
    }

    /// <summary>dst[c * dstStride + r] = src[r * srcStride + c] for an 8×8 block, in registers.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Transpose8x8(float* src, long srcStride, float* dst, long dstStride)
    {
        var r0 = Avx.LoadVector256(src); var r1 = Avx.LoadVector256(src + srcStride);
        var r2 = Avx.LoadVector256(src + 2 * srcStride); var r3 = Avx.LoadVector256(src + 3 * srcStride);
        var r4 = Avx.LoadVector256(src + 4 * srcStride); var r5 = Avx.LoadVector256(src + 5 * srcStride);
        var r6 = Avx.LoadVector256(src + 6 * srcStride); var r7 = Avx.LoadVector256(src + 7 * srcStride);
        // Interleave pairs of rows, then pairs of pairs, then swap 128-bit halves.
        var t0 = Avx.UnpackLow(r0, r1); var t1 = Avx.UnpackHigh(r0, r1);
        var t2 = Avx.UnpackLow(r2, r3); var t3 = Avx.UnpackHigh(r2, r3);
        var t4 = Avx.UnpackLow(r4, r5); var t5 = Avx.UnpackHigh(r4, r5);
        var t6 = Avx.UnpackLow(r6, r7); var t7 = Avx.UnpackHigh(r6, r7);
        var s0 = Avx.Shuffle(t0, t2, 0x44); var s1 = Avx.Shuffle(t0, t2, 0xEE);
        var s2 = Avx.Shuffle(t1, t3, 0x44); var s3 = Avx.Shuffle(t1, t3, 0xEE);
        var s4 = Avx.Shuffle(t4, t6, 0x44); var s5 = Avx.Shuffle(t4, t6, 0xEE);
        var s6 = Avx.Shuffle(t5, t7, 0x44); var s7 = Avx.Shuffle(t5, t7, 0xEE);
        Avx.Store(dst, Avx.Permute2x128(s0, s4, 0x20));
        Avx.Store(dst + dstStride, Avx.Permute2x128(s1, s5, 0x20));
        Avx.Store(dst + 2 * dstStride, Avx.Permute2x128(s2, s6, 0x20));
        Avx.Store(dst + 3 * dstStride, Avx.Permute2x128(s3, s7, 0x20));
        Avx.Store(dst + 4 * dstStride, Avx.Permute2x128(s0, s4, 0x31));
        Avx.Store(dst + 5 * dstStride, Avx.Permute2x128(s1, s5, 0x31));
        Avx.Store(dst + 6 * dstStride, Avx.Permute2x128(s2, s6, 0x31));
        Avx.Store(dst + 7 * dstStride, Avx.Permute2x128(s3, s7, 0x31));
    }

    static float* EnsureAligned(ref float[]? buffer, long floats)
    {
        // 16 spare floats let the start move up to a 64-byte boundary: vector loads never split a line.
        long need = floats + 16;
        if (buffer is null || buffer.LongLength < need)
            buffer = GC.AllocateUninitializedArray<float>(checked((int)need), pinned: true);
        float* p = (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(buffer));
        return (float*)(((nint)p + 63) & ~(nint)63);
    }


    /// <summary>Asks for the micro-tile's rows of C (each <paramref name="lines"/> cache lines long) ahead of use.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void PrefetchTile(float* c, int ldc, int rows, int lines)
    {
        if (!Sse.IsSupported) return;
        for (int r = 0; r < rows; r++)
            for (int l = 0; l < lines; l++) Sse.Prefetch0(c + (long)r * ldc + 16 * l);
    }

    /// <summary>
    /// C[8, 32] (+)= A panel · B panel over kc steps: 16 zmm accumulators, per step two B loads, eight
    /// broadcasts and sixteen FMAs, enough independent chains to cover the FMA latency.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Kernel8x32(int kc, float* a, float* b, float* c, int ldc, bool loadC, float* bias)
    {
        // C is added after the loop, not before: its prefetch then overlaps the whole kc loop instead
        // of stalling the first FMAs on cache misses.
        if (loadC) PrefetchTile(c, ldc, 8, 2);
        Vector512<float> init0 = Vector512<float>.Zero, init1 = Vector512<float>.Zero;
        if (bias != null) { init0 = Vector512.Load(bias); init1 = Vector512.Load(bias + 16); }
        Vector512<float> c00 = init0, c01 = init1, c10 = init0, c11 = init1, c20 = init0, c21 = init1, c30 = init0, c31 = init1;
        Vector512<float> c40 = init0, c41 = init1, c50 = init0, c51 = init1, c60 = init0, c61 = init1, c70 = init0, c71 = init1;
        for (int p = 0; p < kc; p++)
        {
            var b0 = Vector512.LoadAligned(b);
            var b1 = Vector512.LoadAligned(b + 16);
            var a0 = Vector512.Create(a[0]);
            c00 = Vector512.FusedMultiplyAdd(a0, b0, c00); c01 = Vector512.FusedMultiplyAdd(a0, b1, c01);
            var a1 = Vector512.Create(a[1]);
            c10 = Vector512.FusedMultiplyAdd(a1, b0, c10); c11 = Vector512.FusedMultiplyAdd(a1, b1, c11);
            var a2 = Vector512.Create(a[2]);
            c20 = Vector512.FusedMultiplyAdd(a2, b0, c20); c21 = Vector512.FusedMultiplyAdd(a2, b1, c21);
            var a3 = Vector512.Create(a[3]);
            c30 = Vector512.FusedMultiplyAdd(a3, b0, c30); c31 = Vector512.FusedMultiplyAdd(a3, b1, c31);
            var a4 = Vector512.Create(a[4]);
            c40 = Vector512.FusedMultiplyAdd(a4, b0, c40); c41 = Vector512.FusedMultiplyAdd(a4, b1, c41);
            var a5 = Vector512.Create(a[5]);
            c50 = Vector512.FusedMultiplyAdd(a5, b0, c50); c51 = Vector512.FusedMultiplyAdd(a5, b1, c51);
            var a6 = Vector512.Create(a[6]);
            c60 = Vector512.FusedMultiplyAdd(a6, b0, c60); c61 = Vector512.FusedMultiplyAdd(a6, b1, c61);
            var a7 = Vector512.Create(a[7]);
            c70 = Vector512.FusedMultiplyAdd(a7, b0, c70); c71 = Vector512.FusedMultiplyAdd(a7, b1, c71);
            a += 8; b += 32;
        }
        if (loadC)
        {
            float* r = c;
            c00 += Vector512.Load(r); c01 += Vector512.Load(r + 16); r += ldc;
            c10 += Vector512.Load(r); c11 += Vector512.Load(r + 16); r += ldc;
            c20 += Vector512.Load(r); c21 += Vector512.Load(r + 16); r += ldc;
            c30 += Vector512.Load(r); c31 += Vector512.Load(r + 16); r += ldc;
            c40 += Vector512.Load(r); c41 += Vector512.Load(r + 16); r += ldc;
            c50 += Vector512.Load(r); c51 += Vector512.Load(r + 16); r += ldc;
            c60 += Vector512.Load(r); c61 += Vector512.Load(r + 16); r += ldc;
            c70 += Vector512.Load(r); c71 += Vector512.Load(r + 16);
        }
        float* o = c;
        Vector512.Store(c00, o); Vector512.Store(c01, o + 16); o += ldc;
        Vector512.Store(c10, o); Vector512.Store(c11, o + 16); o += ldc;
        Vector512.Store(c20, o); Vector512.Store(c21, o + 16); o += ldc;
        Vector512.Store(c30, o); Vector512.Store(c31, o + 16); o += ldc;
        Vector512.Store(c40, o); Vector512.Store(c41, o + 16); o += ldc;
        Vector512.Store(c50, o); Vector512.Store(c51, o + 16); o += ldc;
        Vector512.Store(c60, o); Vector512.Store(c61, o + 16); o += ldc;
        Vector512.Store(c70, o); Vector512.Store(c71, o + 16);
    }

    /// <summary>C[6, 16] (+)= A panel · B panel: 12 ymm accumulators, fits the 16 registers of AVX2.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Kernel6x16(int kc, float* a, float* b, float* c, int ldc, bool loadC, float* bias)
    {
        if (loadC) PrefetchTile(c, ldc, 6, 1);
        Vector256<float> init0 = Vector256<float>.Zero, init1 = Vector256<float>.Zero;
        if (bias != null) { init0 = Vector256.Load(bias); init1 = Vector256.Load(bias + 8); }
        Vector256<float> c00 = init0, c01 = init1, c10 = init0, c11 = init1, c20 = init0, c21 = init1;
        Vector256<float> c30 = init0, c31 = init1, c40 = init0, c41 = init1, c50 = init0, c51 = init1;
        for (int p = 0; p < kc; p++)
        {
            var b0 = Vector256.LoadAligned(b);
            var b1 = Vector256.LoadAligned(b + 8);
            var a0 = Vector256.Create(a[0]);
            c00 = Vector256.FusedMultiplyAdd(a0, b0, c00); c01 = Vector256.FusedMultiplyAdd(a0, b1, c01);
            var a1 = Vector256.Create(a[1]);
            c10 = Vector256.FusedMultiplyAdd(a1, b0, c10); c11 = Vector256.FusedMultiplyAdd(a1, b1, c11);
            var a2 = Vector256.Create(a[2]);
            c20 = Vector256.FusedMultiplyAdd(a2, b0, c20); c21 = Vector256.FusedMultiplyAdd(a2, b1, c21);
            var a3 = Vector256.Create(a[3]);
            c30 = Vector256.FusedMultiplyAdd(a3, b0, c30); c31 = Vector256.FusedMultiplyAdd(a3, b1, c31);
            var a4 = Vector256.Create(a[4]);
            c40 = Vector256.FusedMultiplyAdd(a4, b0, c40); c41 = Vector256.FusedMultiplyAdd(a4, b1, c41);
            var a5 = Vector256.Create(a[5]);
            c50 = Vector256.FusedMultiplyAdd(a5, b0, c50); c51 = Vector256.FusedMultiplyAdd(a5, b1, c51);
            a += 6; b += 16;
        }
        if (loadC)
        {
            float* r = c;
            c00 += Vector256.Load(r); c01 += Vector256.Load(r + 8); r += ldc;
            c10 += Vector256.Load(r); c11 += Vector256.Load(r + 8); r += ldc;
            c20 += Vector256.Load(r); c21 += Vector256.Load(r + 8); r += ldc;
            c30 += Vector256.Load(r); c31 += Vector256.Load(r + 8); r += ldc;
            c40 += Vector256.Load(r); c41 += Vector256.Load(r + 8); r += ldc;
            c50 += Vector256.Load(r); c51 += Vector256.Load(r + 8);
        }
        float* o = c;
        Vector256.Store(c00, o); Vector256.Store(c01, o + 8); o += ldc;
        Vector256.Store(c10, o); Vector256.Store(c11, o + 8); o += ldc;
        Vector256.Store(c20, o); Vector256.Store(c21, o + 8); o += ldc;
        Vector256.Store(c30, o); Vector256.Store(c31, o + 8); o += ldc;
        Vector256.Store(c40, o); Vector256.Store(c41, o + 8); o += ldc;
        Vector256.Store(c50, o); Vector256.Store(c51, o + 8);
    }
}
