using ArcherIlgpu.Kernels;

namespace ArcherIlgpu.Model;

/// <summary>
/// Every buffer one forward and backward at a given (B, T) needs, allocated once and reused by every
/// step of that shape (allocating inside the step would stall GPU backends and churn the GC). This
/// base holds what every model family shares (inputs, the final norm's output, logits, per-token
/// results); each family adds its layers' buffers. Inputs live here too, so a step uploads its tokens
/// into buffers that already exist.
/// </summary>
public abstract class Activations : IDisposable
{
    public int B { get; }
    public int T { get; }
    public int N => B * T;
    public bool HasGradients { get; }
    /// <summary>Forwards and log-prob backwards run over these buffers so far (what a <see cref="LogProbPass"/> is checked against).</summary>
    public long ForwardCount { get; internal set; }

    // inputs and per-token results, [N] each
    public Buf<int> Tokens, Targets, Positions;
    public Buf<float> Weights, Losses, LogProbs, Entropies, DLogProbs;

    /// <summary>[N, C]: the final norm's output, the head's input.</summary>
    public Buf<float> FinalNorm;
    /// <summary>[N, V]; after a backward-producing head op it holds dLogits (computed in place).</summary>
    public Buf<float> Logits;

    internal readonly float[] HostWeights;        // [N] scratch for scaling loss weights without allocating
    internal readonly float[] HostLosses;         // [N]
    readonly List<IDisposable> owned = [];
    protected readonly Backend backend;

    readonly ActivationArena? arena;

    protected Activations(Backend backend, int B, int T, int maxT, int C, int V, bool withGradients, ActivationArena? arena = null)
    {
        this.arena = arena;
        if (B < 1) throw new ArgumentOutOfRangeException(nameof(B), $"batch size must be at least 1, got {B}");
        if (T < 1 || T > maxT) throw new ArgumentOutOfRangeException(nameof(T), $"sequence length must be in [1, {maxT}] (the context length), got {T}");
        this.backend = backend;
        this.B = B; this.T = T; HasGradients = withGradients;
        int N = B * T;
        Tokens = I(N); Targets = I(N); Positions = I(N);
        Weights = F(N); Losses = F(N); LogProbs = F(N); Entropies = F(N); DLogProbs = F(N);
        FinalNorm = F((long)N * C);
        Logits = F((long)N * V);

        // Each row's positions are 0..T-1; they never change for this shape, so upload them once.
        var positions = new int[N];
        for (int n = 0; n < N; n++) positions[n] = n % T;
        backend.Upload(Positions, positions);
        HostWeights = new float[N];
        HostLosses = new float[N];
    }

    /// <summary>A float buffer of these activations: carved from the arena when it has room (contents left from an
    /// earlier shape: every op writes its outputs before reading them), else a zeroed buffer owned (and disposed) here.</summary>
    protected Buf<float> F(long n)
    {
        if (arena is not null && arena.TryTake(n, out Buf<float> b)) return b;
        var d = backend.Allocate<float>(n); owned.Add(d); return d.All;
    }

    protected Buf<int> I(long n)
    {
        if (arena is not null && arena.TryTake(n, out Buf<int> b)) return b;
        var d = backend.Allocate<int>(n); owned.Add(d); return d.All;
    }

    public void Dispose()
    {
        ForwardCount++;   // a LogProbPass over these buffers is stale (an arena hands them to the next shape)
        foreach (var d in owned) d.Dispose();
        owned.Clear();
    }
}

/// <summary>
/// One float and one int device buffer that activations of changing shapes carve their buffers from, so that a
/// new (B, T) costs no device allocation unless it needs more than any shape before: the RL response length
/// changes every step, and reallocating the activations each time churns memory (and stalls GPU backends).
/// One arena serves one set of activations at a time. Not thread-safe.
/// </summary>
public sealed class ActivationArena(Backend backend) : IDisposable
{
    DeviceBuffer<float>? floats;
    DeviceBuffer<int>? ints;
    long floatsUsed, intsUsed;

    /// <summary>Starts carving a new set of activations from the beginning.</summary>
    public void Begin() { floatsUsed = 0; intsUsed = 0; }

    /// <summary>Whether everything carved since <see cref="Begin"/> came from the arena.</summary>
    public bool Fits => floatsUsed <= (floats?.Length ?? 0) && intsUsed <= (ints?.Length ?? 0);

    /// <summary>Grows the buffers to what was asked since <see cref="Begin"/> (the activations carved from them must be disposed first).</summary>
    public void Grow()
    {
        if (floatsUsed > (floats?.Length ?? 0)) { floats?.Dispose(); floats = backend.Allocate<float>(floatsUsed); }
        if (intsUsed > (ints?.Length ?? 0)) { ints?.Dispose(); ints = backend.Allocate<int>(intsUsed); }
    }

    internal bool TryTake(long n, out Buf<float> b) => Take(floats, ref floatsUsed, n, out b);
    internal bool TryTake(long n, out Buf<int> b) => Take(ints, ref intsUsed, n, out b);

    static bool Take<T>(DeviceBuffer<T>? buffer, ref long used, long n, out Buf<T> b) where T : unmanaged
    {
        long start = used;
        used += n;   // counted even when it does not fit, so that Grow knows the whole size
        b = buffer is not null && used <= buffer.Length ? buffer.All.Slice(start, n) : default;
        return !b.IsEmpty;
    }

    public void Dispose()
    {
        floats?.Dispose();
        ints?.Dispose();
    }
}
