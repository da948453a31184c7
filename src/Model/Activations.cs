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

    protected Activations(Backend backend, int B, int T, int maxT, int C, int V, bool withGradients)
    {
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

    /// <summary>A zeroed float buffer owned (and disposed) by these activations.</summary>
    protected Buf<float> F(long n) { var d = backend.Allocate<float>(n); owned.Add(d); return d.All; }
    protected Buf<int> I(long n) { var d = backend.Allocate<int>(n); owned.Add(d); return d.All; }

    public void Dispose()
    {
        foreach (var d in owned) d.Dispose();
        owned.Clear();
    }
}
