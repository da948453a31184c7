using ArcherIlgpu.Kernels;

namespace ArcherIlgpu.Model.Gpt2;

/// <summary>What one transformer block keeps from its forward pass for the backward pass. N = B*T.</summary>
public sealed class LayerActivations
{
    public required Buf<float> Ln1, Ln1Mean, Ln1Rstd;   // [N, C], [N], [N]
    public required Buf<float> Qkv;                     // [N, 3C]
    public required Buf<float> Att, AttLogSumExp;       // [N, C], [B, H, T]
    public required Buf<float> AttProj, Residual2;      // [N, C], [N, C]
    public required Buf<float> Ln2, Ln2Mean, Ln2Rstd;   // [N, C], [N], [N]
    public required Buf<float> Fc, FcGelu;              // [N, 4C], [N, 4C]
    public required Buf<float> FcProj, Residual3;       // [N, C], [N, C]
}

/// <summary>
/// Every buffer one forward and backward at a given (B, T) needs, allocated once and reused by every
/// step of that shape (allocating inside the step would stall GPU backends and churn the GC).
/// Inputs live here too, so a step uploads its tokens into buffers that already exist.
/// </summary>
public sealed class Gpt2Activations : IDisposable
{
    public int B { get; }
    public int T { get; }
    public int N => B * T;
    public bool HasGradients { get; }

    // inputs, [N] each
    public Buf<int> Tokens, Targets, Positions;
    public Buf<float> Weights, Losses, LogProbs, Entropies, DLogProbs;

    public Buf<float> Encoded;                    // [N, C]
    public LayerActivations[] Layers;
    public Buf<float> LnF, LnFMean, LnFRstd;      // [N, C], [N], [N]
    /// <summary>[N, V]; after a backward-producing head op it holds dLogits (computed in place).</summary>
    public Buf<float> Logits;

    // gradient scratch shared by all layers; DResidual is the residual stream's gradient [N, C]
    public Buf<float> DResidual, DLn, DQkv, DAtt, DFc, DFcGelu;

    internal readonly float[] HostWeights;        // [N] scratch for scaling loss weights without allocating
    internal readonly float[] HostLosses;         // [N]
    readonly List<IDisposable> owned = [];

    public Gpt2Activations(Backend backend, Gpt2Config config, int B, int T, bool withGradients)
    {
        if (B < 1) throw new ArgumentOutOfRangeException(nameof(B), $"batch size must be at least 1, got {B}");
        if (T < 1 || T > config.MaxT) throw new ArgumentOutOfRangeException(nameof(T), $"sequence length must be in [1, {config.MaxT}] (the context length), got {T}");
        this.B = B; this.T = T; HasGradients = withGradients;
        int N = B * T, C = config.Channels, H = config.Heads, V = config.VocabSize;

        Buf<float> F(long n) { var d = backend.Allocate<float>(n); owned.Add(d); return d.All; }
        Buf<int> I(long n) { var d = backend.Allocate<int>(n); owned.Add(d); return d.All; }

        Tokens = I(N); Targets = I(N); Positions = I(N);
        Weights = F(N); Losses = F(N); LogProbs = F(N); Entropies = F(N); DLogProbs = F(N);
        Encoded = F((long)N * C);
        Layers = new LayerActivations[config.Layers];
        for (int l = 0; l < config.Layers; l++)
            Layers[l] = new LayerActivations
            {
                Ln1 = F((long)N * C), Ln1Mean = F(N), Ln1Rstd = F(N),
                Qkv = F(3L * N * C),
                Att = F((long)N * C), AttLogSumExp = F((long)B * H * T),
                AttProj = F((long)N * C), Residual2 = F((long)N * C),
                Ln2 = F((long)N * C), Ln2Mean = F(N), Ln2Rstd = F(N),
                Fc = F(4L * N * C), FcGelu = F(4L * N * C),
                FcProj = F((long)N * C), Residual3 = F((long)N * C),
            };
        LnF = F((long)N * C); LnFMean = F(N); LnFRstd = F(N);
        Logits = F((long)N * V);
        if (withGradients)
        {
            DResidual = F((long)N * C); DLn = F((long)N * C); DQkv = F(3L * N * C);
            DAtt = F((long)N * C); DFc = F(4L * N * C); DFcGelu = F(4L * N * C);
        }

        // Each row's positions are 0..T-1; they never change for this shape, so upload them once.
        var positions = new int[N];
        for (int n = 0; n < N; n++) positions[n] = n % T;
        backend.Upload(Positions, positions);
        HostWeights = new float[N];
        HostLosses = new float[N];
    }

    /// <summary>The output of the last block (input of ln_f), [N, C].</summary>
    public Buf<float> LastResidual => Layers[^1].Residual3;

    public void Dispose()
    {
        foreach (var d in owned) d.Dispose();
        owned.Clear();
    }
}
