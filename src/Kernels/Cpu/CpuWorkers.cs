using System.Runtime.ExceptionServices;

namespace ArcherIlgpu.Kernels;

/// <summary>
/// The CPU backend's parallel loop: one background thread per extra core, started once, that run the
/// items of one loop at a time together with the calling thread. Parallel.For allocates its replica
/// tasks and loop state on every call (about 2 KB, plus about 40 bytes per item when items are short);
/// at hundreds of calls per training step (the GEMM alone makes two per 384-deep K slice, so the head's
/// dInput with K = 151936 makes 792) that was megabytes of garbage per step. A loop here allocates
/// nothing. The workers are dedicated threads, so the GEMM's per-thread packing buffers also stay put
/// instead of being re-allocated whenever the thread pool retires a thread.
/// </summary>
internal static class CpuWorkers
{
    static readonly int WorkerCount = Math.Max(0, Environment.ProcessorCount - 1);

    static readonly SemaphoreSlim wake = new(0);
    static readonly ManualResetEventSlim finished = new(false);
    static readonly object startLock = new();
    static bool started;

    /// <summary>1 while a loop owns the workers; another thread's loop goes to Parallel.For instead of waiting.</summary>
    static int owned;

    // The loop being run: either items (itemBody(i)) or ranges (rangeBody(i·chunk, min(total, (i+1)·chunk))).
    // Written only while no worker is inside a loop (see Run).
    static Action<int>? itemBody;
    static Action<int, int>? rangeBody;
    static int chunk, total;
    static int count;
    static int nextItem;
    static int itemsLeft;
    static int open;
    static int workersInside;
    static Exception? failure;

    /// <summary>True on a worker, and on the calling thread while it runs items: a loop inside a loop runs inline.</summary>
    [ThreadStatic] static bool insideLoop;

    /// <summary>body(i) for every i in [0, n) on all cores; returns when every item has run.</summary>
    /// <remarks>
    /// The first exception an item throws is rethrown as itself (not wrapped in an AggregateException)
    /// once the items already started have finished; items not yet started are skipped.
    /// </remarks>
    public static void For(int n, Action<int> body)
    {
        if (n <= 0) return;
        if (n == 1 || WorkerCount == 0 || insideLoop)
        {
            for (int i = 0; i < n; i++) body(i);
            return;
        }
        if (!TryOwn())
        {
            ParallelForUnwrapped(n, body);
            return;
        }
        itemBody = body; rangeBody = null;
        RunOwned(n);
    }

    /// <summary>body(start, end) over [0, n) cut into ranges of <paramref name="chunkSize"/> items (the last one shorter).</summary>
    public static void ForRanges(int n, int chunkSize, Action<int, int> body)
    {
        if (n <= 0) return;
        int chunks = (n + chunkSize - 1) / chunkSize;
        if (chunks == 1 || WorkerCount == 0 || insideLoop)
        {
            for (int i = 0; i < chunks; i++) body(i * chunkSize, Math.Min(n, (i + 1) * chunkSize));
            return;
        }
        if (!TryOwn())
        {
            ParallelRangesUnwrapped(n, chunkSize, chunks, body);
            return;
        }
        itemBody = null; rangeBody = body; chunk = chunkSize; total = n;
        RunOwned(chunks);
    }

    static bool TryOwn() => Interlocked.CompareExchange(ref owned, 1, 0) == 0;

    /// <summary>
    /// Another thread (a second backend, a test running in parallel) is using the workers: share the
    /// cores through the thread pool rather than queue behind it, with the same exceptions as here.
    /// </summary>
    static void ParallelForUnwrapped(int n, Action<int> body)
    {
        try { Parallel.For(0, n, body); }
        catch (AggregateException e) when (e.InnerExceptions.Count > 0) { ExceptionDispatchInfo.Throw(e.InnerExceptions[0]); }
    }

    // A method of its own: a lambda over ForRanges' parameters would allocate its closure on every call.
    static void ParallelRangesUnwrapped(int n, int chunkSize, int chunks, Action<int, int> body)
        => ParallelForUnwrapped(chunks, i => body(i * chunkSize, Math.Min(n, (i + 1) * chunkSize)));

    static void RunOwned(int n)
    {
        try
        {
            EnsureStarted();
            count = n; nextItem = 0; itemsLeft = n; failure = null;
            finished.Reset();
            // A volatile write: a worker that reads open == 1 also sees every field written above.
            Volatile.Write(ref open, 1);
            wake.Release(Math.Min(WorkerCount, n - 1));

            insideLoop = true;
            try { RunItems(); }
            finally { insideLoop = false; }
            finished.Wait();

            // Close the loop, then wait until no worker is inside before the fields are reused. The
            // exchange is a full fence and a worker increments workersInside before it reads open, so a
            // worker either is counted below or sees the loop closed.
            Interlocked.Exchange(ref open, 0);
            var spin = new SpinWait();
            while (Volatile.Read(ref workersInside) != 0) spin.SpinOnce();
            itemBody = null; rangeBody = null;

            var error = failure;
            failure = null;
            if (error is not null) ExceptionDispatchInfo.Throw(error);
        }
        finally { Volatile.Write(ref owned, 0); }
    }

    /// <summary>Claims items until none is left; the thread that finishes the last one wakes the caller.</summary>
    static void RunItems()
    {
        var items = itemBody; var ranges = rangeBody;
        int n = count, size = chunk, end = total;
        while (true)
        {
            int i = Interlocked.Increment(ref nextItem) - 1;
            if (i >= n) return;
            if (Volatile.Read(ref failure) is null)
            {
                try
                {
                    if (ranges is not null) ranges(i * size, Math.Min(end, (i + 1) * size));
                    else items!(i);
                }
                catch (Exception e) { Interlocked.CompareExchange(ref failure, e, null); }
            }
            if (Interlocked.Decrement(ref itemsLeft) == 0) finished.Set();
        }
    }

    static void EnsureStarted()
    {
        if (Volatile.Read(ref started)) return;
        lock (startLock)
        {
            if (started) return;
            for (int w = 0; w < WorkerCount; w++)
                new Thread(WorkerLoop) { IsBackground = true, Name = $"archer-cpu-{w + 1}" }.Start();
            Volatile.Write(ref started, true);
        }
    }

    static void WorkerLoop()
    {
        insideLoop = true;
        while (true)
        {
            wake.Wait();
            // A wake-up may come late, after its loop has closed: then the worker finds open == 0 and
            // sleeps again, or finds a newer loop open and helps with that one.
            Interlocked.Increment(ref workersInside);
            if (Volatile.Read(ref open) != 0) RunItems();
            Interlocked.Decrement(ref workersInside);
        }
    }
}
