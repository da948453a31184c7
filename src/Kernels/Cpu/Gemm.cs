using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

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
/// Goto/BLIS style: for each KC-deep slice of K the caller's thread-owned buffers receive A as
/// MR-row panels and B as NR-column panels (both zero-padded, so the micro-kernel never branches on
/// edges), then the C tiles are computed in parallel by an MR×NR register-blocked FMA micro-kernel.
/// Vector512 (8×32, 16 zmm accumulators) where AVX-512 is fast, Vector256 (6×16, 12 ymm) otherwise.
/// </summary>
internal static unsafe class Gemm
{
    /// <summary>
    /// Which micro-kernel runs: Vector512 where the hardware has it. Tests switch it off to hold the
    /// Vector256 kernel to the reference on this AVX-512 machine too.
    /// </summary>
    internal static bool UseVector512 { get; set; } = Vector512.IsHardwareAccelerated;
    /// <summary>Depth of one packed slice: an MR×KC A panel (8 KiB) stays in L1 while B streams from L2.</summary>
    internal const int KC = 256;
    const int MaxMicroTile = 8 * 32;

    /// <summary>Below this many multiply-adds the Parallel.For hand-off costs more than it saves.</summary>
    const long SerialWork = 1L << 18;

    /// <summary>C = A·B (+ bias) when <paramref name="accumulate"/> is false, C += A·B (+ bias) otherwise.</summary>
    public static void Multiply(int M, int N, int K, StridedMatrix A, StridedMatrix B,
        float* C, int ldc, float* bias, bool accumulate)
    {
        if (M <= 0 || N <= 0) return;
        if (K <= 0) { InitialiseWithoutProduct(M, N, C, ldc, bias, accumulate); return; }
        var job = GemmJob.ForThisThread();
        job.Setup(M, N, K, A, B, C, ldc, bias, accumulate);
        job.Run();
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
        bool accumulate;

        // Per K slice.
        int pc, kc;
        bool firstSlice;

        // Partition.
        int mPanels, nPanels, packChunk, packTasks;
        int tileRows, tileCols, tilesAcrossN, tileTasks;

        float[]? packABuffer, packBBuffer;
        float* packA, packB;

        readonly Action<int> packBody, computeBody;

        GemmJob()
        {
            packBody = PackChunk;
            computeBody = ComputeTile;
        }

        public void Setup(int m, int n, int k, StridedMatrix a, StridedMatrix b, float* c, int ldc, float* bias, bool accumulate)
        {
            wide = UseVector512;
            MR = wide ? 8 : 6; NR = wide ? 32 : 16;
            M = m; N = n; K = k; A = a; B = b; C = c; this.ldc = ldc; this.bias = bias; this.accumulate = accumulate;
            mPanels = (m + MR - 1) / MR;
            nPanels = (n + NR - 1) / NR;
            packA = EnsureAligned(ref packABuffer, (long)mPanels * MR * KC);
            packB = EnsureAligned(ref packBBuffer, (long)nPanels * NR * KC);
            ChoosePartition();
        }

        /// <summary>
        /// C tiles of up to 128 rows × 512 columns (the B part a tile reads, KC×512 floats, fits in L2),
        /// halved until there are about three tiles per core so that 2 to 64 cores all stay busy.
        /// </summary>
        void ChoosePartition()
        {
            int cores = Environment.ProcessorCount;
            int wantTasks = cores == 1 ? 1 : 3 * cores;
            int rowPanels = Math.Min(mPanels, Math.Max(1, 128 / MR));
            int colPanels = Math.Min(nPanels, Math.Max(1, 512 / NR));
            while (Tiles(rowPanels, colPanels) < wantTasks && (rowPanels > 1 || colPanels > 2))
            {
                if (colPanels > 2 && (colPanels * NR >= rowPanels * MR || rowPanels == 1)) colPanels = (colPanels + 1) / 2;
                else rowPanels = (rowPanels + 1) / 2;
            }
            tileRows = rowPanels; tileCols = colPanels;
            tilesAcrossN = (nPanels + colPanels - 1) / colPanels;
            tileTasks = Tiles(rowPanels, colPanels);

            int packItems = mPanels + nPanels;
            packTasks = Math.Min(packItems, Math.Max(1, 4 * cores));
            packChunk = (packItems + packTasks - 1) / packTasks;
            packTasks = (packItems + packChunk - 1) / packChunk;
        }

        int Tiles(int rowPanels, int colPanels)
            => ((mPanels + rowPanels - 1) / rowPanels) * ((nPanels + colPanels - 1) / colPanels);

        public void Run()
        {
            bool serial = (long)M * N * K < SerialWork || Environment.ProcessorCount == 1;
            for (pc = 0; pc < K; pc += KC)
            {
                kc = Math.Min(KC, K - pc);
                firstSlice = pc == 0;
                For(packTasks, packBody, serial);
                For(tileTasks, computeBody, serial);
            }
        }

        static void For(int n, Action<int> body, bool serial)
        {
            if (serial || n == 1) { for (int i = 0; i < n; i++) body(i); }
            else Parallel.For(0, n, body);
        }

        void PackChunk(int task)
        {
            int end = Math.Min(mPanels + nPanels, (task + 1) * packChunk);
            for (int item = task * packChunk; item < end; item++)
            {
                if (item < mPanels) PackAPanel(item);
                else PackBPanel(item - mPanels);
            }
        }

        /// <summary>Rows i0..i0+MR of the slice as dst[p * MR + r]: one broadcast per row per k step.</summary>
        void PackAPanel(int panel)
        {
            int mr = MR, i0 = panel * mr, rows = Math.Min(mr, M - i0);
            float* dst = packA + (long)panel * mr * kc;
            if (A.ColStride == 1)
            {
                // Row-major A: read each row contiguously, write with stride MR (the panel is in L1).
                for (int r = 0; r < rows; r++)
                {
                    float* src = A.Ptr + (long)(i0 + r) * A.RowStride + pc;
                    for (int p = 0; p < kc; p++) dst[p * mr + r] = src[p];
                }
                for (int r = rows; r < mr; r++)
                    for (int p = 0; p < kc; p++) dst[p * mr + r] = 0f;
            }
            else
            {
                for (int p = 0; p < kc; p++)
                {
                    float* src = A.Ptr + (long)(pc + p) * A.ColStride + (long)i0 * A.RowStride;
                    float* d = dst + p * mr;
                    int r = 0;
                    for (; r < rows; r++) d[r] = src[(long)r * A.RowStride];
                    for (; r < mr; r++) d[r] = 0f;
                }
            }
        }

        /// <summary>Columns j0..j0+NR of the slice as dst[p * NR + c]: two aligned vector loads per k step.</summary>
        void PackBPanel(int panel)
        {
            int nr = NR, j0 = panel * nr, cols = Math.Min(nr, N - j0);
            float* dst = packB + (long)panel * nr * kc;
            if (B.ColStride == 1)
            {
                for (int p = 0; p < kc; p++)
                {
                    float* src = B.Ptr + (long)(pc + p) * B.RowStride + j0;
                    float* d = dst + p * nr;
                    if (cols == nr) CopyRow(src, d, nr);
                    else
                    {
                        int c = 0;
                        for (; c < cols; c++) d[c] = src[c];
                        for (; c < nr; c++) d[c] = 0f;
                    }
                }
            }
            else
            {
                // Bᵀ row-major (the forward's weight [OC, K]): read each column contiguously.
                for (int c = 0; c < cols; c++)
                {
                    float* src = B.Ptr + (long)(j0 + c) * B.ColStride + (long)pc * B.RowStride;
                    if (B.RowStride == 1) for (int p = 0; p < kc; p++) dst[p * nr + c] = src[p];
                    else for (int p = 0; p < kc; p++) dst[p * nr + c] = src[(long)p * B.RowStride];
                }
                for (int c = cols; c < nr; c++)
                    for (int p = 0; p < kc; p++) dst[p * nr + c] = 0f;
            }
        }

        static void CopyRow(float* src, float* dst, int n)
        {
            if (Vector512.IsHardwareAccelerated && n % 16 == 0)
                for (int c = 0; c < n; c += 16) Vector512.Store(Vector512.Load(src + c), dst + c);
            else
                for (int c = 0; c < n; c += 8) Vector256.Store(Vector256.Load(src + c), dst + c);
        }

        void ComputeTile(int task)
        {
            int mr = MR, nr = NR;
            int tileI = task / tilesAcrossN, tileJ = task % tilesAcrossN;
            int panelI0 = tileI * tileRows, panelI1 = Math.Min(mPanels, panelI0 + tileRows);
            int panelJ0 = tileJ * tileCols, panelJ1 = Math.Min(nPanels, panelJ0 + tileCols);
            bool loadC = accumulate || !firstSlice;
            float* sliceBias = firstSlice ? bias : null;
            float* edge = stackalloc float[MaxMicroTile];

            for (int pi = panelI0; pi < panelI1; pi++)
            {
                int i0 = pi * mr, rows = Math.Min(mr, M - i0);
                float* a = packA + (long)pi * mr * kc;
                for (int pj = panelJ0; pj < panelJ1; pj++)
                {
                    int j0 = pj * nr, cols = Math.Min(nr, N - j0);
                    float* b = packB + (long)pj * nr * kc;
                    float* c = C + (long)i0 * ldc + j0;
                    float* tileBias = sliceBias == null ? null : sliceBias + j0;
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

    static float* EnsureAligned(ref float[]? buffer, long floats)
    {
        // 16 spare floats let the start move up to a 64-byte boundary: vector loads never split a line.
        long need = floats + 16;
        if (buffer is null || buffer.LongLength < need)
            buffer = GC.AllocateUninitializedArray<float>(checked((int)need), pinned: true);
        float* p = (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(buffer));
        return (float*)(((nint)p + 63) & ~(nint)63);
    }


    /// <summary>
    /// C[8, 32] (+)= A panel · B panel over kc steps: 16 zmm accumulators, per step two B loads, eight
    /// broadcasts and sixteen FMAs, enough independent chains to cover the FMA latency.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Kernel8x32(int kc, float* a, float* b, float* c, int ldc, bool loadC, float* bias)
    {
        Vector512<float> init0 = Vector512<float>.Zero, init1 = Vector512<float>.Zero;
        if (bias != null) { init0 = Vector512.Load(bias); init1 = Vector512.Load(bias + 16); }
        Vector512<float> c00 = init0, c01 = init1, c10 = init0, c11 = init1, c20 = init0, c21 = init1, c30 = init0, c31 = init1;
        Vector512<float> c40 = init0, c41 = init1, c50 = init0, c51 = init1, c60 = init0, c61 = init1, c70 = init0, c71 = init1;
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
        Vector256<float> init0 = Vector256<float>.Zero, init1 = Vector256<float>.Zero;
        if (bias != null) { init0 = Vector256.Load(bias); init1 = Vector256.Load(bias + 8); }
        Vector256<float> c00 = init0, c01 = init1, c10 = init0, c11 = init1, c20 = init0, c21 = init1;
        Vector256<float> c30 = init0, c31 = init1, c40 = init0, c41 = init1, c50 = init0, c51 = init1;
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
        float* o = c;
        Vector256.Store(c00, o); Vector256.Store(c01, o + 8); o += ldc;
        Vector256.Store(c10, o); Vector256.Store(c11, o + 8); o += ldc;
        Vector256.Store(c20, o); Vector256.Store(c21, o + 8); o += ldc;
        Vector256.Store(c30, o); Vector256.Store(c31, o + 8); o += ldc;
        Vector256.Store(c40, o); Vector256.Store(c41, o + 8); o += ldc;
        Vector256.Store(c50, o); Vector256.Store(c51, o + 8);
    }
}
