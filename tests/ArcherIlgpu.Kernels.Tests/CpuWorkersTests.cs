namespace ArcherIlgpu.Kernels.Tests;

/// <summary>
/// The cpu backend's own parallel loop (it replaced Parallel.For so that a loop allocates nothing):
/// every item exactly once, exceptions, loops inside loops, two threads at once, and no garbage.
/// </summary>
public class CpuWorkersTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(7)]
    [InlineData(1000)]
    public void For_RunsEveryItemExactlyOnce(int n)
    {
        var runs = new int[n];
        CpuWorkers.For(n, i => Interlocked.Increment(ref runs[i]));
        Assert.All(runs, r => Assert.Equal(1, r));
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(10, 3)]
    [InlineData(1000, 7)]
    [InlineData(1000, 1000)]
    public void ForRanges_CoversEveryIndexExactlyOnce_InRangesOfTheChunkSize(int n, int chunk)
    {
        var runs = new int[n];
        var badRanges = 0;
        CpuWorkers.ForRanges(n, chunk, (start, end) =>
        {
            if (start % chunk != 0 || end - start > chunk || (end - start < chunk && end != n)) Interlocked.Increment(ref badRanges);
            for (int i = start; i < end; i++) Interlocked.Increment(ref runs[i]);
        });
        Assert.Equal(0, badRanges);
        Assert.All(runs, r => Assert.Equal(1, r));
    }

    [Fact]
    public void ItemException_IsRethrownUnwrapped_AndTheWorkersStillRunTheNextLoop()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() =>
            CpuWorkers.For(100, i => { if (i == 37) throw new ArgumentOutOfRangeException("token", "bad token 37"); }));
        Assert.Contains("bad token 37", e.Message);

        var runs = new int[100];
        CpuWorkers.For(100, i => Interlocked.Increment(ref runs[i]));
        Assert.All(runs, r => Assert.Equal(1, r));
    }

    [Fact]
    public void LoopInsideALoop_RunsEveryInnerItem()
    {
        const int outer = 16, inner = 50;
        var runs = new int[outer * inner];
        CpuWorkers.For(outer, o => CpuWorkers.For(inner, i => Interlocked.Increment(ref runs[o * inner + i])));
        Assert.All(runs, r => Assert.Equal(1, r));
    }

    /// <summary>While one thread owns the workers, another thread's loop goes through the thread pool: both must finish, correctly.</summary>
    [Fact]
    public void TwoThreadsAtOnce_BothGetEveryItem()
    {
        const int n = 2000, rounds = 50;
        var a = new long[n]; var b = new long[n];
        void Work(long[] runs)
        {
            for (int r = 0; r < rounds; r++)
                CpuWorkers.For(n, i => { Interlocked.Increment(ref runs[i]); Thread.SpinWait(20); });
        }
        var other = new Thread(() => Work(b));
        other.Start();
        Work(a);
        other.Join();
        Assert.All(a, r => Assert.Equal(rounds, r));
        Assert.All(b, r => Assert.Equal(rounds, r));
    }

    /// <summary>
    /// The point of the pool: a loop with a cached delegate allocates nothing, however many items. Parallel.For
    /// allocated about 2 KB per call plus about 40 bytes per short item (1000 items: 41 KB, measured).
    /// Test parallelisation is off in this assembly, so nothing else allocates meanwhile.
    /// </summary>
    [Fact]
    public void Loops_AllocateNothing()
    {
        var sink = new int[1000];
        Action<int> item = i => sink[i]++;
        Action<int, int> range = (s, e) => { for (int i = s; i < e; i++) sink[i]++; };
        CpuWorkers.For(1000, item);
        CpuWorkers.ForRanges(1000, 10, range);
        // The calling thread's count: Parallel.For (the old loop, and the fallback when the workers are busy)
        // allocates its tasks and loop state here, while the process-wide count also picks up whatever the
        // runtime's own threads allocate meanwhile (CI once saw 44 KB of that under load).
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int r = 0; r < 100; r++)
        {
            CpuWorkers.For(1000, item);
            CpuWorkers.ForRanges(1000, 10, range);
        }
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        // A few hundred bytes of slack for anything the runtime itself allocates meanwhile; 200 Parallel.For
        // loops of this size would be about 8 MB.
        Assert.True(allocated < 1024, $"200 loops allocated {allocated} bytes");
    }
}
