using ArcherIlgpu.Rl.Tasks;

namespace ArcherIlgpu.Rl.Training;

/// <summary>
/// The order in which a run draws training problems. A procedural task (Count null) is read in index
/// order from the stream chosen by <see cref="Seed"/>; a fixed dataset is read in a fresh seeded
/// permutation per epoch, so (Seed, Position) alone fixes every example that comes next and a resumed
/// run only needs those two numbers.
/// </summary>
public sealed class DataCursor
{
    readonly ITask task;
    long[]? permutation;
    long permutationEpoch = -1;

    public DataCursor(ITask task, long seed, long position = 0)
    {
        this.task = task;
        Seed = seed;
        if (position < 0) throw new ArgumentOutOfRangeException(nameof(position), position, "the data cursor must be >= 0");
        Position = position;
        if (task.Count is long n && n <= 0) throw new TaskDataException($"task \"{task.Name}\" has no examples");
    }

    public long Seed { get; }
    /// <summary>Examples drawn so far.</summary>
    public long Position { get; set; }

    /// <summary>The next example and its stream index (the index a sample record names).</summary>
    public (long Index, TaskExample Example) Next()
    {
        long index = IndexAt(Position++);
        return (index, task.Generate(Seed, index));
    }

    long IndexAt(long position)
    {
        if (task.Count is not long n) return position;
        long epoch = position / n;
        if (permutationEpoch != epoch)
        {
            if (n > int.MaxValue) throw new TaskDataException($"task \"{task.Name}\" has {n} examples; at most {int.MaxValue} can be shuffled");
            permutation = new long[n];
            for (long i = 0; i < n; i++) permutation[i] = i;
            TaskRandom.For(Seed, epoch).Shuffle(permutation);
            permutationEpoch = epoch;
        }
        return permutation![position % n];
    }
}
