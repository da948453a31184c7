using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Runtime;

// ILGPU's CPU accelerator builds launchers in a dynamic assembly of this name; they must see the
// internal GemmShape kernel parameter.
[assembly: System.Runtime.CompilerServices.InternalsVisibleTo("ILGPURuntime")]

namespace ArcherIlgpu.Kernels;

// out = in · Wᵀ + b and its backward. Every product is one GEMM whose operand layouts arrive as
// strides: a 64×64-tile kernel here for thin products, the 128×128 kernel (MatMulTiled.cs) for the
// rest, the tensor-core kernel (MatMulTensor.cs) when MatMulPrecision asks for it; plus a column
// reduction for dBias.
public sealed partial class IlgpuBackend
{
    /// <summary>
    /// C[M, N] (+)= A[M, K] · B[K, N] (+ bias[N]), with A(i, p) = a[i * ARow + p * ACol] and
    /// B(p, j) = b[p * BRow + j * BCol]; C is row-major with row stride Ldc.
    /// </summary>
    internal struct GemmShape
    {
        public int M, N, K, ARow, ACol, BRow, BCol, Ldc, Flags;
    }

    const int GemmAccumulate = 1, GemmHasBias = 2;
    /// <summary>Each group computes a 64×64 tile of C with 256 threads, each a 4×4 register micro-tile.</summary>
    const int GemmTile = 64, GemmDepth = 16, GemmThreads = 256;
    /// <summary>Shared rows padded by one float so transposing stores hit different banks.</summary>
    const int GemmPitch = GemmTile + 1;
    const int GemmShared = GemmDepth * GemmPitch;
    /// <summary>Column-sum groups: 32 adjacent columns (coalesced) × 8 row strides.</summary>
    const int SumColumns = 32, SumRows = 8;

    Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmShape>? gemmKernel;
    Action<KernelConfig, ArrayView<float>, int, int, int, ArrayView<float>, int>? columnSumKernel;
    MemoryBuffer1D<float, Stride1D.Dense>? columnSumWorkspace;

    protected override void MatMulForwardCore(Buf<float> input, Buf<float> weight, Buf<float> bias,
        int N, int K, int OC, Buf<float> output)
    {
        // A = in [N, K] row-major; B(k, o) = W[o, k].
        LaunchGemm(input.View, weight.View, output.View, bias.IsEmpty ? output.View : bias.View, new GemmShape
        {
            M = N, N = OC, K = K, ARow = K, ACol = 1, BRow = 1, BCol = K, Ldc = OC,
            Flags = bias.IsEmpty ? 0 : GemmHasBias,
        });
    }

    protected override void MatMulBackwardCore(Buf<float> dOutput, Buf<float> input, Buf<float> weight,
        int N, int K, int OC, Buf<float> dInput, Buf<float> dWeight, Buf<float> dBias)
    {
        // dOut as the products read it: rows of stride ld ≥ OC (padded for vector loads, see PaddedRows).
        var (dOut, ld) = PaddedRows(dOutput.View, N, K, OC);
        if (!dInput.IsEmpty)
        {
            // dIn [N, K] = dOut [N, OC] · W [OC, K]
            LaunchGemm(dOut, weight.View, dInput.View, dInput.View, new GemmShape
            {
                M = N, N = K, K = OC, ARow = ld, ACol = 1, BRow = K, BCol = 1, Ldc = K, Flags = 0,
            });
        }
        // dW [OC, K] += dOutᵀ · in: A(o, n) = dOut[n, o].
        LaunchGemm(dOut, input.View, dWeight.View, dWeight.View, new GemmShape
        {
            M = OC, N = K, K = N, ARow = 1, ACol = ld, BRow = K, BCol = 1, Ldc = K, Flags = GemmAccumulate,
        });
        if (!dBias.IsEmpty && OC > 0) ColumnSum(dOutput.View, N, OC, dBias.View);
    }

    /// <summary>
    /// One GEMM on the stream, through the kernel <see cref="ChooseGemm"/> picks (the tensor-core one
    /// when <see cref="MatMulPrecision"/> asks for it).
    /// </summary>
    internal void LaunchGemm(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, ArrayView<float> bias, GemmShape shape)
    {
        if (shape.M == 0 || shape.N == 0) return;
        if (MaxGroupSize < GemmThreads)
            throw new NotSupportedException($"{Name}: the matmul kernels need groups of {GemmThreads} threads, the device allows {MaxGroupSize}");
        var precision = EffectiveMatMulPrecision;
        if (precision != MatMulPrecision.Float32) { LaunchTensorGemm(a, b, c, bias, shape, precision); return; }
        var choice = ChooseGemm(a, b, shape);
        if (choice.Slices > 1) LaunchSplitGemm(a, b, c, bias, shape, choice);
        else if (choice.Big) LaunchTiledGemm(a, b, c, bias, shape, choice.Quads);
        else LaunchSmallGemm(a, b, c, bias, shape);
    }

    /// <summary>
    /// The 128×128 kernel pays off only when its groups fill the device: below 64 rows or columns its
    /// tiles are mostly padding (decoding), and with fewer than two groups per multiprocessor (the
    /// small presets, and dWeight's OC×K output) most multiprocessors idle. Measured on an H100: the
    /// 128×128 kernel alone made bench-s 43% slower while speeding up the gpt2 B16×T1024 step by 17%.
    /// </summary>
    bool UseSmallGemm(GemmShape shape)
    {
        if (ForceTiledGemm) return false;
        if (shape.M <= GemmTile || shape.N <= GemmTile) return true;
        long bigTiles = (long)((shape.M + 127) / 128) * ((shape.N + 127) / 128);
        return bigTiles < 2L * Accelerator.NumMultiprocessors;
    }

    /// <summary>Tests set this to run every size through the 128×128 kernel.</summary>
    internal bool ForceTiledGemm { get; set; }

    void LaunchSmallGemm(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, ArrayView<float> bias, GemmShape shape)
    {
        gemmKernel ??= Accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmShape>(GemmKernel);
        var grid = new Index2D((shape.N + GemmTile - 1) / GemmTile, (shape.M + GemmTile - 1) / GemmTile);
        gemmKernel(new KernelConfig(grid, new Index2D(GemmThreads, 1)), a, b, c, bias, shape);
    }

    /// <summary>
    /// One group per 64×64 tile of C. Per 16-deep slice of K, the 256 threads stage a 64×16 tile of A
    /// and a 16×64 tile of B in shared memory, reading along whichever dimension is contiguous in
    /// global memory (coalesced for every operand layout), then each thread accumulates its 4×4
    /// micro-tile: rows ty + 16r and columns tx + 16c, so a warp's B reads are 16 consecutive floats
    /// and its A reads are broadcasts. Out-of-range elements load as zero; stores are bounds-checked.
    /// </summary>
    static void GemmKernel(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, ArrayView<float> bias, GemmShape s) =>
        SmallGemm(a, b, c, bias, s, 0);

    /// <summary>The 64×64 GEMM over depths [kBegin, s.K): all of them, or one split-K slice.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void SmallGemm(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, ArrayView<float> bias, GemmShape s, int kBegin)
    {
        var tileA = SharedMemory.Allocate<float>(GemmShared);   // [p][i], pitch 65
        var tileB = SharedMemory.Allocate<float>(GemmShared);   // [p][j], pitch 65
        int t = Group.IdxX;
        int tx = t % 16, ty = t / 16;
        int m0 = Grid.IdxY * GemmTile, n0 = Grid.IdxX * GemmTile;

        float c00 = 0, c01 = 0, c02 = 0, c03 = 0, c10 = 0, c11 = 0, c12 = 0, c13 = 0;
        float c20 = 0, c21 = 0, c22 = 0, c23 = 0, c30 = 0, c31 = 0, c32 = 0, c33 = 0;

        for (int k0 = kBegin; k0 < s.K; k0 += GemmDepth)
        {
            for (int q = 0; q < GemmTile * GemmDepth / GemmThreads; q++)
            {
                int e = t + q * GemmThreads;
                // A tile element (i, p): consecutive threads walk the contiguous dimension.
                int ai = s.ACol == 1 ? e / GemmDepth : e % GemmTile;
                int ap = s.ACol == 1 ? e % GemmDepth : e / GemmTile;
                int gi = m0 + ai, gp = k0 + ap;
                tileA[ap * GemmPitch + ai] = gi < s.M && gp < s.K ? a[(long)gi * s.ARow + (long)gp * s.ACol] : 0f;
                // B tile element (p, j).
                int bj = s.BCol == 1 ? e % GemmTile : e / GemmDepth;
                int bp = s.BCol == 1 ? e / GemmTile : e % GemmDepth;
                int gj = n0 + bj, gq = k0 + bp;
                tileB[bp * GemmPitch + bj] = gj < s.N && gq < s.K ? b[(long)gq * s.BRow + (long)gj * s.BCol] : 0f;
            }
            Group.Barrier();
            for (int p = 0; p < GemmDepth; p++)
            {
                int row = p * GemmPitch;
                float a0 = tileA[row + ty], a1 = tileA[row + ty + 16], a2 = tileA[row + ty + 32], a3 = tileA[row + ty + 48];
                float b0 = tileB[row + tx], b1 = tileB[row + tx + 16], b2 = tileB[row + tx + 32], b3 = tileB[row + tx + 48];
                c00 += a0 * b0; c01 += a0 * b1; c02 += a0 * b2; c03 += a0 * b3;
                c10 += a1 * b0; c11 += a1 * b1; c12 += a1 * b2; c13 += a1 * b3;
                c20 += a2 * b0; c21 += a2 * b1; c22 += a2 * b2; c23 += a2 * b3;
                c30 += a3 * b0; c31 += a3 * b1; c32 += a3 * b2; c33 += a3 * b3;
            }
            Group.Barrier();
        }

        int i0 = m0 + ty, j0 = n0 + tx;
        StoreGemmRow(c, bias, s, i0, j0, c00, c01, c02, c03);
        StoreGemmRow(c, bias, s, i0 + 16, j0, c10, c11, c12, c13);
        StoreGemmRow(c, bias, s, i0 + 32, j0, c20, c21, c22, c23);
        StoreGemmRow(c, bias, s, i0 + 48, j0, c30, c31, c32, c33);
    }

    static void StoreGemmRow(ArrayView<float> c, ArrayView<float> bias, GemmShape s, int i, int j,
        float v0, float v1, float v2, float v3)
    {
        if (i >= s.M) return;
        StoreGemm(c, bias, s, i, j, v0);
        StoreGemm(c, bias, s, i, j + 16, v1);
        StoreGemm(c, bias, s, i, j + 32, v2);
        StoreGemm(c, bias, s, i, j + 48, v3);
    }

    static void StoreGemm(ArrayView<float> c, ArrayView<float> bias, GemmShape s, int i, int j, float v)
    {
        if (j >= s.N) return;
        long index = (long)i * s.Ldc + j;
        if ((s.Flags & GemmHasBias) != 0) v += bias[j];
        if ((s.Flags & GemmAccumulate) != 0) v += c[index];
        c[index] = v;
    }

    /// <summary>
    /// dBias[o] += Σ_n dOut[n, o]. One group per 32 columns alone is 24 groups for OC = 768, each
    /// walking all 16,384 rows: the H200 profile showed ~0.8 ms per bias (about 11% of the gpt2 bf16
    /// step) for 50 MB of reads. So the rows are cut into chunks, enough to give the device about 8 groups
    /// per SM, each chunk's column sums go to a partial row, and a second pass sums the partial rows in
    /// order: deterministic, like split-K.
    /// </summary>
    void ColumnSum(ArrayView<float> dOut, int N, int OC, ArrayView<float> dBias)
    {
        columnSumKernel ??= Accelerator.LoadStreamKernel<ArrayView<float>, int, int, int, ArrayView<float>, int>(ColumnSumKernel);
        int blocks = (OC + SumColumns - 1) / SumColumns;
        int chunks = ColumnSumChunks(N, OC, Accelerator.NumMultiprocessors);
        if (chunks == 1)
        {
            columnSumKernel(new KernelConfig(new Index2D(blocks, 1), new Index2D(SumColumns * SumRows, 1)), dOut, N, OC, N, dBias, 1);
            return;
        }
        int rows = (N + chunks - 1) / chunks;
        var partials = Workspace(ref columnSumWorkspace, (long)chunks * OC);
        columnSumKernel(new KernelConfig(new Index2D(blocks, chunks), new Index2D(SumColumns * SumRows, 1)), dOut, N, OC, rows, partials, 0);
        columnSumKernel(new KernelConfig(new Index2D(blocks, 1), new Index2D(SumColumns * SumRows, 1)), partials, chunks, OC, chunks, dBias, 1);
    }

    /// <summary>Row chunks of a column sum: about 8 groups per SM, at least 64 rows (8 per thread) each.</summary>
    internal static int ColumnSumChunks(int N, int OC, int multiprocessors)
    {
        int blocks = (OC + SumColumns - 1) / SumColumns;
        int wanted = (8 * multiprocessors + blocks - 1) / blocks;
        return Math.Max(1, Math.Min(wanted, N / 64));
    }

    /// <summary>
    /// Group (x, y) sums rows [y·rows, (y+1)·rows) of the 32 adjacent columns x·32.. (each warp reads
    /// 32 consecutive floats of a row), 8 threads per column striding over the rows, then a shared-memory
    /// sum of the 8, into row y of dest (accumulate = 0) or added to dest (accumulate = 1, one chunk).
    /// </summary>
    static void ColumnSumKernel(ArrayView<float> src, int N, int OC, int rows, ArrayView<float> dest, int accumulate)
    {
        var partial = SharedMemory.Allocate<float>(SumColumns * SumRows);
        int tx = Group.IdxX % SumColumns, ty = Group.IdxX / SumColumns;
        int j = Grid.IdxX * SumColumns + tx;
        int first = Grid.IdxY * rows, end = Math.Min(N, first + rows);
        float sum = 0;
        if (j < OC)
            for (int n = first + ty; n < end; n += SumRows) sum += src[(long)n * OC + j];
        partial[Group.IdxX] = sum;
        Group.Barrier();
        if (ty == 0 && j < OC)
        {
            float total = 0;
            for (int r = 0; r < SumRows; r++) total += partial[r * SumColumns + tx];
            long at = (long)Grid.IdxY * OC + j;
            dest[at] = accumulate != 0 ? dest[at] + total : total;
        }
    }
}
