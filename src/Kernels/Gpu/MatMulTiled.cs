using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Runtime;

namespace ArcherIlgpu.Kernels;

// The float32 GEMM for everything but thin products: a 128×128 tile of C per group of 256 threads,
// each thread an 8×8 block of it in registers, fed from double-buffered shared-memory slices of
// A and B that are read as 128-bit vectors.
public sealed partial class IlgpuBackend
{
    /// <summary>Output tile edge, K slice depth and one thread's block edge of the 128×128 kernel.</summary>
    const int BigTile = 128, BigDepth = 8, BigBlock = 8;
    /// <summary>
    /// Shared rows hold 128 values plus 4 of padding: 16-byte aligned for vector reads, and the
    /// transposing stores of a K-contiguous operand (8 depths × 4 rows per warp) land on 32 banks.
    /// </summary>
    const int BigPitch = BigTile + 4;
    /// <summary>Two buffers (compute one, fill the other) of one K slice.</summary>
    const int BigShared = 2 * BigDepth * BigPitch;
    /// <summary>Tile elements each thread moves from global to shared memory per slice and operand.</summary>
    const int BigLoads = BigTile * BigDepth / GemmThreads;

    Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmShape>? tiledGemmKernel;

    Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmShape>? tiledGemmVec4Kernel;

    void LaunchTiledGemm(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, ArrayView<float> bias, GemmShape shape, bool vec4)
    {
        var kernel = vec4
            ? tiledGemmVec4Kernel ??= Accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmShape>(TiledGemmVec4Kernel)
            : tiledGemmKernel ??= Accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmShape>(TiledGemmKernel);
        kernel(new KernelConfig(BigGrid(shape), new Index2D(GemmThreads, 1)), a, b, c, bias, shape);
    }

    static Index2D BigGrid(GemmShape s) => new((s.N + BigTile - 1) / BigTile, (s.M + BigTile - 1) / BigTile);

    /// <summary>Four floats read from shared memory as one 128-bit load (ld.shared.v4.f32 on PTX).</summary>
    internal struct Vec4
    {
        public float X, Y, Z, W;
    }

    /// <summary>One row of a thread's 8×8 block: columns tx*4 + 0..3 and 64 + tx*4 + 0..3.</summary>
    internal struct Row8
    {
        public Vec4 Lo, Hi;

        // Plain a * b + c: ptxas contracts it to FFMA. MathF.FusedMultiplyAdd would compile to a call of an
        // unresolved extern function in ILGPU 1.5.3's PTX.
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Add(float a, Vec4 bLo, Vec4 bHi)
        {
            Lo.X += a * bLo.X; Lo.Y += a * bLo.Y;
            Lo.Z += a * bLo.Z; Lo.W += a * bLo.W;
            Hi.X += a * bHi.X; Hi.Y += a * bHi.Y;
            Hi.Z += a * bHi.Z; Hi.W += a * bHi.W;
        }
    }

    /// <summary>The values one thread carries from global to shared memory for one slice (prefetch).</summary>
    internal struct Staged4
    {
        public float A0, A1, A2, A3, B0, B1, B2, B3;
    }

    /// <summary>
    /// One group per 128×128 tile of C; thread (tx, ty) = (t % 16, t / 16) owns rows ty*4 + 0..3 and
    /// 64 + ty*4 + 0..3 and the same pattern of columns with tx. Shared memory holds each K slice
    /// depth-major (tileA[p][i], tileB[p][j]), so at every depth a thread reads its 8 A values and 8 B
    /// values as four 16-byte vectors: a warp's B reads are 16 consecutive vectors (conflict-free per
    /// quarter-warp) and its A reads two broadcast addresses. The next slice is loaded from global
    /// memory into registers before the current one is multiplied, and stored into the other buffer
    /// after, so one barrier per slice suffices. Elements outside A or B load as zero.
    /// </summary>
    static void TiledGemmKernel(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, ArrayView<float> bias, GemmShape s) =>
        TiledGemm(a, b, c, bias, s, 0, false);

    /// <summary>
    /// The same kernel, but each thread moves 4 adjacent elements of each operand per slice with one
    /// 128-bit global load (ld.global.v4.f32) instead of 4 scalar ones. Only launched when both
    /// operands are contiguous along their tile dimension with the other stride and the view offset
    /// multiples of 4 (<see cref="CanLoadQuads"/>); a quad that crosses the edge of A or B loads
    /// its elements one by one.
    /// </summary>
    static void TiledGemmVec4Kernel(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, ArrayView<float> bias, GemmShape s) =>
        TiledGemm(a, b, c, bias, s, 0, true);

    /// <summary>
    /// The 128×128 GEMM over depths [kBegin, s.K): the whole product when kBegin is 0, one split-K
    /// slice otherwise (MatMulVariants.cs). <paramref name="quads"/> picks the global load pattern:
    /// thread t moves elements t + 256u (scalar) or 4t + u (one vector), u = 0..3. Both are
    /// compile-time constants in every kernel, so each kernel compiles to one straight path.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void TiledGemm(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, ArrayView<float> bias, GemmShape s,
        int kBegin, bool quads)
    {
        var tileA = SharedMemory.Allocate<float>(BigShared);
        var tileB = SharedMemory.Allocate<float>(BigShared);
        var vecA = tileA.Cast<Vec4>();
        var vecB = tileB.Cast<Vec4>();
        int t = Group.IdxX;
        int tx = t % 16, ty = t / 16;
        int m0 = Grid.IdxY * BigTile, n0 = Grid.IdxX * BigTile;
        int slices = (s.K - kBegin + BigDepth - 1) / BigDepth;
        int e = quads ? 4 * t : t, step = quads ? 1 : GemmThreads;

        var staged = quads ? LoadBigQuads(a, b, s, m0, n0, kBegin, e) : LoadBigSlice(a, b, s, m0, n0, kBegin, e, step);
        if (quads) StoreBigQuads(tileA, tileB, s, staged, 0, e);
        else StoreBigSlice(tileA, tileB, s, staged, 0, e, step);
        Group.Barrier();

        Row8 r0 = default, r1 = default, r2 = default, r3 = default, r4 = default, r5 = default, r6 = default, r7 = default;
        const int vecPitch = BigPitch / 4;
        for (int slice = 0; slice < slices; slice++)
        {
            int buffer = slice & 1;
            bool more = slice + 1 < slices;
            int kNext = kBegin + (slice + 1) * BigDepth;
            if (more) staged = quads ? LoadBigQuads(a, b, s, m0, n0, kNext, e) : LoadBigSlice(a, b, s, m0, n0, kNext, e, step);
            int rowBase = buffer * BigDepth * vecPitch;
            for (int p = 0; p < BigDepth; p++)
            {
                int row = rowBase + p * vecPitch;
                Vec4 aLo = vecA[row + ty], aHi = vecA[row + 16 + ty];
                Vec4 bLo = vecB[row + tx], bHi = vecB[row + 16 + tx];
                r0.Add(aLo.X, bLo, bHi); r1.Add(aLo.Y, bLo, bHi); r2.Add(aLo.Z, bLo, bHi); r3.Add(aLo.W, bLo, bHi);
                r4.Add(aHi.X, bLo, bHi); r5.Add(aHi.Y, bLo, bHi); r6.Add(aHi.Z, bLo, bHi); r7.Add(aHi.W, bLo, bHi);
            }
            if (more)
            {
                if (quads) StoreBigQuads(tileA, tileB, s, staged, buffer ^ 1, e);
                else StoreBigSlice(tileA, tileB, s, staged, buffer ^ 1, e, step);
            }
            Group.Barrier();
        }

        int i = m0 + ty * 4, j = n0 + tx * 4;
        StoreRow8(c, bias, s, i, j, r0); StoreRow8(c, bias, s, i + 1, j, r1);
        StoreRow8(c, bias, s, i + 2, j, r2); StoreRow8(c, bias, s, i + 3, j, r3);
        StoreRow8(c, bias, s, i + 64, j, r4); StoreRow8(c, bias, s, i + 65, j, r5);
        StoreRow8(c, bias, s, i + 66, j, r6); StoreRow8(c, bias, s, i + 67, j, r7);
    }

    /// <summary>Elements e, e + step, e + 2·step, e + 3·step of this slice's A and B tiles.</summary>
    static Staged4 LoadBigSlice(ArrayView<float> a, ArrayView<float> b, GemmShape s, int m0, int n0, int k0, int e, int step) => new()
    {
        A0 = LoadTileA(a, s, m0, k0, e, BigTile, BigDepth),
        A1 = LoadTileA(a, s, m0, k0, e + step, BigTile, BigDepth),
        A2 = LoadTileA(a, s, m0, k0, e + 2 * step, BigTile, BigDepth),
        A3 = LoadTileA(a, s, m0, k0, e + 3 * step, BigTile, BigDepth),
        B0 = LoadTileB(b, s, n0, k0, e, BigTile, BigDepth),
        B1 = LoadTileB(b, s, n0, k0, e + step, BigTile, BigDepth),
        B2 = LoadTileB(b, s, n0, k0, e + 2 * step, BigTile, BigDepth),
        B3 = LoadTileB(b, s, n0, k0, e + 3 * step, BigTile, BigDepth),
    };

    static void StoreBigSlice(ArrayView<float> tileA, ArrayView<float> tileB, GemmShape s, Staged4 v, int buffer, int e, int step)
    {
        int offset = buffer * BigDepth * BigPitch;
        tileA[offset + TileOffsetA(s, e, BigTile, BigDepth, BigPitch)] = v.A0;
        tileA[offset + TileOffsetA(s, e + step, BigTile, BigDepth, BigPitch)] = v.A1;
        tileA[offset + TileOffsetA(s, e + 2 * step, BigTile, BigDepth, BigPitch)] = v.A2;
        tileA[offset + TileOffsetA(s, e + 3 * step, BigTile, BigDepth, BigPitch)] = v.A3;
        tileB[offset + TileOffsetB(s, e, BigTile, BigDepth, BigPitch)] = v.B0;
        tileB[offset + TileOffsetB(s, e + step, BigTile, BigDepth, BigPitch)] = v.B1;
        tileB[offset + TileOffsetB(s, e + 2 * step, BigTile, BigDepth, BigPitch)] = v.B2;
        tileB[offset + TileOffsetB(s, e + 3 * step, BigTile, BigDepth, BigPitch)] = v.B3;
    }

    /// <summary>
    /// Elements e..e+3 (e a multiple of 4) of each tile: consecutive elements are consecutive in
    /// global memory (the tile walks the contiguous dimension), so each quad is one 16-byte load.
    /// </summary>
    static Staged4 LoadBigQuads(ArrayView<float> a, ArrayView<float> b, GemmShape s, int m0, int n0, int k0, int e)
    {
        var qa = LoadQuadA(a, s, m0, k0, e, BigDepth);
        var qb = LoadQuadB(b, s, n0, k0, e, BigDepth);
        return new Staged4 { A0 = qa.X, A1 = qa.Y, A2 = qa.Z, A3 = qa.W, B0 = qb.X, B1 = qb.Y, B2 = qb.Z, B3 = qb.W };
    }

    /// <summary>Elements e..e+3 of a 128-wide, <paramref name="depth"/>-deep slice.</summary>
    static Vec4 LoadQuadA(ArrayView<float> a, GemmShape s, int m0, int k0, int e, int depth)
    {
        int i = m0 + TileRowA(s, e, BigTile, depth), p = k0 + TileDepthA(s, e, BigTile, depth);
        // The quad runs along depth when A is K-contiguous, along rows otherwise (then ARow is 1).
        bool inside = s.ACol == 1 ? i < s.M && p + 3 < s.K : i + 3 < s.M && p < s.K;
        if (inside) return a.Cast<Vec4>()[((long)i * s.ARow + (long)p * s.ACol) >> 2];
        return ElementsA(a, s, m0, k0, e, depth);
    }

    /// <summary>Elements e..e+3 of A's slice one by one (zero outside the matrix).</summary>
    static Vec4 ElementsA(ArrayView<float> a, GemmShape s, int m0, int k0, int e, int depth) => new()
    {
        X = LoadTileA(a, s, m0, k0, e, BigTile, depth), Y = LoadTileA(a, s, m0, k0, e + 1, BigTile, depth),
        Z = LoadTileA(a, s, m0, k0, e + 2, BigTile, depth), W = LoadTileA(a, s, m0, k0, e + 3, BigTile, depth),
    };

    /// <summary>Elements e..e+3 of a 128-wide, <paramref name="depth"/>-deep slice.</summary>
    static Vec4 LoadQuadB(ArrayView<float> b, GemmShape s, int n0, int k0, int e, int depth)
    {
        int j = n0 + TileColB(s, e, BigTile, depth), p = k0 + TileDepthB(s, e, BigTile, depth);
        // Along columns when B is N-contiguous, along depth otherwise (then BRow is 1).
        bool inside = s.BCol == 1 ? j + 3 < s.N && p < s.K : j < s.N && p + 3 < s.K;
        if (inside) return b.Cast<Vec4>()[((long)p * s.BRow + (long)j * s.BCol) >> 2];
        return ElementsB(b, s, n0, k0, e, depth);
    }

    /// <summary>Elements e..e+3 of B's slice one by one (zero outside the matrix).</summary>
    static Vec4 ElementsB(ArrayView<float> b, GemmShape s, int n0, int k0, int e, int depth) => new()
    {
        X = LoadTileB(b, s, n0, k0, e, BigTile, depth), Y = LoadTileB(b, s, n0, k0, e + 1, BigTile, depth),
        Z = LoadTileB(b, s, n0, k0, e + 2, BigTile, depth), W = LoadTileB(b, s, n0, k0, e + 3, BigTile, depth),
    };

    /// <summary>
    /// A quad that lies along the tile dimension (A M-contiguous, B N-contiguous) is 4 adjacent
    /// floats of one shared row: one 128-bit store, conflict-free per quarter-warp, where 4 scalar
    /// stores would hit each bank 4 times. A quad along depth goes to 4 rows: scalar stores, whose
    /// banks (16·(t%2) + 4u + t/2 with pitch 132) are 32 distinct per warp.
    /// </summary>
    static void StoreBigQuads(ArrayView<float> tileA, ArrayView<float> tileB, GemmShape s, Staged4 v, int buffer, int e) =>
        StoreQuads(tileA, tileB, s, new Vec4 { X = v.A0, Y = v.A1, Z = v.A2, W = v.A3 }, new Vec4 { X = v.B0, Y = v.B1, Z = v.B2, W = v.B3 },
            buffer * BigDepth * BigPitch, e, BigDepth, BigPitch);

    /// <summary>Quads qa, qb (elements e..e+3 of a 128-wide, depth-deep slice) into the buffer at offset.</summary>
    static void StoreQuads(ArrayView<float> tileA, ArrayView<float> tileB, GemmShape s, Vec4 qa, Vec4 qb, int offset, int e, int depth, int pitch)
    {
        int at = offset + TileOffsetA(s, e, BigTile, depth, pitch);
        if (s.ACol == 1)
        {
            tileA[at] = qa.X; tileA[at + pitch] = qa.Y; tileA[at + 2 * pitch] = qa.Z; tileA[at + 3 * pitch] = qa.W;
        }
        else tileA.Cast<Vec4>()[at >> 2] = qa;
        int bt = offset + TileOffsetB(s, e, BigTile, depth, pitch);
        if (s.BCol == 1) tileB.Cast<Vec4>()[bt >> 2] = qb;
        else
        {
            tileB[bt] = qb.X; tileB[bt + pitch] = qb.Y; tileB[bt + 2 * pitch] = qb.Z; tileB[bt + 3 * pitch] = qb.W;
        }
    }

    // Element e of a tile × depth slice: consecutive e walk whichever dimension of the operand is
    // contiguous in global memory, so every warp's loads are coalesced whatever the layout.

    static int TileRowA(GemmShape s, int e, int tile, int depth) => s.ACol == 1 ? e / depth : e % tile;
    static int TileDepthA(GemmShape s, int e, int tile, int depth) => s.ACol == 1 ? e % depth : e / tile;
    static int TileColB(GemmShape s, int e, int tile, int depth) => s.BCol == 1 ? e % tile : e / depth;
    static int TileDepthB(GemmShape s, int e, int tile, int depth) => s.BCol == 1 ? e / tile : e % depth;

    static float LoadTileA(ArrayView<float> a, GemmShape s, int m0, int k0, int e, int tile, int depth)
    {
        int i = m0 + TileRowA(s, e, tile, depth), p = k0 + TileDepthA(s, e, tile, depth);
        return i < s.M && p < s.K ? a[(long)i * s.ARow + (long)p * s.ACol] : 0f;
    }

    static float LoadTileB(ArrayView<float> b, GemmShape s, int n0, int k0, int e, int tile, int depth)
    {
        int j = n0 + TileColB(s, e, tile, depth), p = k0 + TileDepthB(s, e, tile, depth);
        return j < s.N && p < s.K ? b[(long)p * s.BRow + (long)j * s.BCol] : 0f;
    }

    /// <summary>Shared-memory offset of element e: depth-major, rows of <paramref name="pitch"/>.</summary>
    static int TileOffsetA(GemmShape s, int e, int tile, int depth, int pitch) =>
        TileDepthA(s, e, tile, depth) * pitch + TileRowA(s, e, tile, depth);

    static int TileOffsetB(GemmShape s, int e, int tile, int depth, int pitch) =>
        TileDepthB(s, e, tile, depth) * pitch + TileColB(s, e, tile, depth);

    static void StoreRow8(ArrayView<float> c, ArrayView<float> bias, GemmShape s, int i, int j, Row8 r)
    {
        if (i >= s.M) return;
        StoreGemm(c, bias, s, i, j, r.Lo.X); StoreGemm(c, bias, s, i, j + 1, r.Lo.Y);
        StoreGemm(c, bias, s, i, j + 2, r.Lo.Z); StoreGemm(c, bias, s, i, j + 3, r.Lo.W);
        StoreGemm(c, bias, s, i, j + 64, r.Hi.X); StoreGemm(c, bias, s, i, j + 65, r.Hi.Y);
        StoreGemm(c, bias, s, i, j + 66, r.Hi.Z); StoreGemm(c, bias, s, i, j + 67, r.Hi.W);
    }
}
