using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace ArcherIlgpu.Kernels;

public sealed partial class IlgpuBackend
{
    // Rows of ids staged in shared memory per step of the backward scan; the group size never exceeds it.
    const int EmbeddingIdTile = 256;

    Action<KernelConfig, ArrayView<int>, ArrayView<int>, ArrayView<float>, ArrayView<float>, int, int, ArrayView<float>>? embeddingForwardKernel;
    Action<KernelConfig, ArrayView<float>, ArrayView<int>, int, int, int, ArrayView<float>>? embeddingScatterKernel;
    Action<KernelConfig, ArrayView<int>, ArrayView<float>, int, int, ArrayView<float>>? tokenEmbeddingForwardKernel;

    protected override void EmbeddingForwardCore(Buf<int> tokens, Buf<int> positions, Buf<float> wte, Buf<float> wpe,
        int N, int C, Buf<float> output)
    {
        if (N == 0 || C == 0) return;
        embeddingForwardKernel ??= Accelerator.LoadStreamKernel<ArrayView<int>, ArrayView<int>, ArrayView<float>, ArrayView<float>,
            int, int, ArrayView<float>>(EmbeddingForwardKernel);
        embeddingForwardKernel(Linear((long)N * C), tokens.View, positions.View, wte.View, wpe.View, N, C, output.View);
    }

    /// <summary>
    /// Deterministic scatter without atomics or a sort: the group of the FIRST row holding an id owns
    /// that id's table row; it scans the later rows in order and adds every match, so each table
    /// element is written by one thread, always summing in row order.
    /// </summary>
    protected override void EmbeddingBackwardCore(Buf<float> dOutput, Buf<int> tokens, Buf<int> positions,
        int N, int C, Buf<float> dWte, Buf<float> dWpe)
    {
        if (N == 0 || C == 0) return;
        ScatterRows(dOutput, tokens, N, C, dWte);
        ScatterRows(dOutput, positions, N, C, dWpe);
    }

    protected override void TokenEmbeddingForwardCore(Buf<int> tokens, Buf<float> wte, int N, int C, Buf<float> output)
    {
        if (N == 0 || C == 0) return;
        tokenEmbeddingForwardKernel ??= Accelerator.LoadStreamKernel<ArrayView<int>, ArrayView<float>, int, int, ArrayView<float>>(
            TokenEmbeddingForwardKernel);
        tokenEmbeddingForwardKernel(Linear((long)N * C), tokens.View, wte.View, N, C, output.View);
    }

    /// <summary>The GPT-2 token scatter alone: deterministic, repeated tokens summed in row order.</summary>
    protected override void TokenEmbeddingBackwardCore(Buf<float> dOutput, Buf<int> tokens, int N, int C, Buf<float> dWte)
    {
        if (N == 0 || C == 0) return;
        ScatterRows(dOutput, tokens, N, C, dWte);
    }

    /// <summary>table[ids[n], :] += dOutput[n, :] through <see cref="EmbeddingScatterKernel"/>.</summary>
    void ScatterRows(Buf<float> dOutput, Buf<int> ids, int N, int C, Buf<float> table)
    {
        embeddingScatterKernel ??= Accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<int>, int, int, int, ArrayView<float>>(
            EmbeddingScatterKernel);
        int group = RowGroupSize(C);
        int columnBlocks = (C + group - 1) / group;
        embeddingScatterKernel(new KernelConfig(N * columnBlocks, group), dOutput.View, ids.View, N, C, columnBlocks, table.View);
    }

    /// <summary>One thread per output element. An id outside its table writes NaN instead of reading out of bounds.</summary>
    static void EmbeddingForwardKernel(ArrayView<int> tokens, ArrayView<int> positions, ArrayView<float> wte, ArrayView<float> wpe,
        int N, int C, ArrayView<float> output)
    {
        long i = Grid.GlobalIndex.X;
        if (i >= (long)N * C) return;
        int n = (int)(i / C), c = (int)(i - (long)n * C);
        int t = tokens[n], p = positions[n];
        if ((ulong)((long)t * C + C) > (ulong)wte.Length || (ulong)((long)p * C + C) > (ulong)wpe.Length || t < 0 || p < 0)
        {
            output[i] = float.NaN;
            return;
        }
        output[i] = wte[(long)t * C + c] + wpe[(long)p * C + c];
    }

    /// <summary>One thread per output element; a token outside the table writes NaN, as in the GPT-2 forward.</summary>
    static void TokenEmbeddingForwardKernel(ArrayView<int> tokens, ArrayView<float> wte, int N, int C, ArrayView<float> output)
    {
        long i = Grid.GlobalIndex.X;
        if (i >= (long)N * C) return;
        int n = (int)(i / C), c = (int)(i - (long)n * C);
        int t = tokens[n];
        output[i] = t < 0 || (long)t * C + C > wte.Length ? float.NaN : wte[(long)t * C + c];
    }

    /// <summary>
    /// Group (row, column block). Steps: (1) give up unless no earlier row has this row's id;
    /// (2) scan rows row..N-1 a tile of ids at a time, skipping tiles without a match after one
    /// group vote, summing dOutput of matching rows in order; (3) add the sum into the table once.
    /// </summary>
    static void EmbeddingScatterKernel(ArrayView<float> dOutput, ArrayView<int> ids, int N, int C, int columnBlocks,
        ArrayView<float> table)
    {
        var tile = SharedMemory.Allocate<int>(EmbeddingIdTile);
        int row = Grid.IdxX / columnBlocks, block = Grid.IdxX - row * columnBlocks;
        int tid = Group.IdxX, size = Group.DimX;
        int id = ids[row];
        bool invalid = id < 0 || (long)id * C + C > table.Length;

        bool seenEarlier = false;
        for (int m = tid; m < row; m += size)
            if (ids[m] == id) seenEarlier = true;
        if (invalid || Group.BarrierOr(seenEarlier)) return;   // uniform: the whole group leaves together

        int c = block * size + tid;
        float sum = 0f;
        for (int start = row; start < N; start += size)
        {
            int m = start + tid;
            int other = m < N ? ids[m] : -1;
            tile[tid] = other;
            if (Group.BarrierOr(other == id))
            {
                int count = XMath.Min(size, N - start);
                for (int j = 0; j < count; j++)
                    if (tile[j] == id && c < C) sum += dOutput[(long)(start + j) * C + c];
            }
            Group.Barrier();   // the tile is rewritten next step
        }
        if (c < C) table[(long)id * C + c] += sum;
    }
}
