using ArcherIlgpu.Model;
using ArcherIlgpu.Model.Training;

namespace ArcherIlgpu.Distributed;

/// <summary>
/// This process's place in a data-parallel job. Under mpirun (OpenMPI sets OMPI_COMM_WORLD_SIZE, other
/// launchers PMI_SIZE / PMIX_RANK) <see cref="Join"/> loads libmpi and initialises MPI; otherwise it is a
/// single process of size 1 and MPI is never loaded.
/// </summary>
public sealed class World : IStepReduction
{
    /// <summary>Elements gathered per MPI call: bounds the receive buffer to Size × this many floats.</summary>
    const int ChunkElements = 1 << 22;

    readonly Mpi? mpi;
    float[] hostGradients = [];
    float[] gathered = [];

    public int Rank { get; }
    public int Size { get; }
    public bool IsDistributed => Size > 1;
    /// <summary>Rank 0 alone writes the run folder, checkpoints and logs.</summary>
    public bool IsWriter => Rank == 0;

    World(Mpi? mpi)
    {
        this.mpi = mpi;
        Rank = mpi?.Rank ?? 0;
        Size = mpi?.Size ?? 1;
    }

    /// <summary>A single process: no MPI.</summary>
    public static World Single { get; } = new(null);

    /// <summary>Whether a launcher started this process as one rank of several (read from the environment only).</summary>
    public static bool LaunchedUnderMpi()
    {
        string? size = Environment.GetEnvironmentVariable("OMPI_COMM_WORLD_SIZE") ?? Environment.GetEnvironmentVariable("PMI_SIZE")
                       ?? Environment.GetEnvironmentVariable("PMIX_SIZE");
        return size is not null || Environment.GetEnvironmentVariable("PMIX_RANK") is not null;
    }

    /// <summary>Joins the MPI job this process was launched in, or returns <see cref="Single"/> when it was not.</summary>
    public static World Join() => LaunchedUnderMpi() ? new World(Mpi.Open()) : Single;

    /// <summary>
    /// The sum over ranks, added in rank order on every rank. MPI_Allreduce's order is the
    /// implementation's choice (and may differ between ranks' results), so the values are gathered and
    /// added here instead: every rank gets the same bits, and the same bits on every run.
    /// </summary>
    public double Sum(double local)
    {
        if (mpi is null) return local;
        var all = new double[Size];
        mpi.Allgather([local], all);
        double sum = all[0];
        for (int r = 1; r < Size; r++) sum += all[r];
        return sum;
    }

    /// <summary>Every rank's <paramref name="local"/> laid end to end in rank order (MPI_Allgather), on every rank.</summary>
    public double[] Gather(ReadOnlySpan<double> local)
    {
        if (mpi is null) return local.ToArray();
        var all = new double[local.Length * Size];
        mpi.Allgather(local, all);
        return all;
    }

    /// <summary>The model's flat gradient buffer summed over ranks in rank order (see <see cref="SumInRankOrder"/>), written back.</summary>
    public void SumGradients(CausalLm model)
    {
        if (mpi is null) return;
        int length = checked((int)model.Gradients.Length);
        if (hostGradients.Length != length) hostGradients = new float[length];
        model.Backend.Download(model.Gradients.All, hostGradients);
        SumInRankOrder(hostGradients);
        model.Backend.Upload(model.Gradients.All, hostGradients);
    }

    /// <summary>
    /// Replaces <paramref name="values"/> by their elementwise sum over ranks, ((v₀ + v₁) + v₂) + …, in
    /// chunks so the gather buffer stays at Size × <see cref="ChunkElements"/> floats. This moves
    /// (Size − 1) × 4 bytes per element into each rank, twice a ring all-reduce's 2·(Size − 1)/Size × 4:
    /// the price of a fixed order, small next to a step at the sizes this machine trains.
    /// </summary>
    public void SumInRankOrder(Span<float> values)
    {
        if (mpi is null) return;
        int chunk = Math.Min(ChunkElements, Math.Max(1, values.Length));
        if (gathered.Length != chunk * Size) gathered = new float[chunk * Size];
        for (int start = 0; start < values.Length; start += chunk)
        {
            int n = Math.Min(chunk, values.Length - start);
            var part = values.Slice(start, n);
            var all = gathered.AsSpan(0, n * Size);
            mpi.Allgather(part, all);
            all[..n].CopyTo(part);
            for (int r = 1; r < Size; r++)
            {
                var other = all.Slice(r * n, n);
                for (int i = 0; i < n; i++) part[i] += other[i];
            }
        }
    }

    /// <summary>Waits for every rank.</summary>
    public void Barrier() => mpi?.Barrier();

    /// <summary>Ends the whole job with <paramref name="code"/>: the other ranks must not wait forever for this one.</summary>
    public void Abort(int code) => mpi?.Abort(code);

    /// <summary>Closes MPI at the end of a successful run (every rank must call it).</summary>
    public void Finish() => mpi?.Close();
}
