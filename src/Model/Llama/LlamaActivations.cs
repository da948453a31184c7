using ArcherIlgpu.Kernels;

namespace ArcherIlgpu.Model.Llama;

/// <summary>What one Llama block keeps from its forward pass for the backward pass. N = B*T, W = (H + 2Hkv)·D.</summary>
public sealed class LlamaLayerActivations
{
    public required Buf<float> Ln1, Ln1Rstd;            // [N, C], [N]
    public required Buf<float> QkvRaw, QkRstd;          // [N, W], [N, H + Hkv] (Qwen3's q/k norm only; else empty)
    public required Buf<float> Qkv;                     // [N, W] after the q/k norm and RoPE: attention's input
    public required Buf<float> Att, AttLogSumExp;       // [N, H·D], [B, H, T]
    public required Buf<float> AttProj, Residual2;      // [N, C], [N, C]
    public required Buf<float> Ln2, Ln2Rstd;            // [N, C], [N]
    public required Buf<float> GateUp, Act;             // [N, 2I], [N, I]
    public required Buf<float> Down, Residual3;         // [N, C], [N, C]
}

/// <summary>The Llama family's activations: the shared ones plus every block's.</summary>
public sealed class LlamaActivations : Activations
{
    public Buf<float> Embedded;                   // [N, C]
    public LlamaLayerActivations[] Layers;
    public Buf<float> FinalRstd;                  // [N] (the final norm's output is FinalNorm)

    // gradient scratch shared by all layers; DResidual is the residual stream's gradient [N, C]
    public Buf<float> DResidual, DLn, DQkv, DQkvRaw, DAtt, DGateUp, DAct;

    public LlamaActivations(Backend backend, LlamaConfig c, int B, int T, bool withGradients, ActivationArena? arena = null)
        : base(backend, B, T, c.MaxT, c.Channels, c.VocabSize, withGradients, arena)
    {
        long N = (long)B * T, C = c.Channels, W = c.QkvWidth, HD = (long)c.Heads * c.HeadSize, I = c.Intermediate;
        Embedded = F(N * C);
        Layers = new LlamaLayerActivations[c.Layers];
        for (int l = 0; l < c.Layers; l++)
        {
            var qkv = F(N * W);
            Layers[l] = new LlamaLayerActivations
            {
                Ln1 = F(N * C), Ln1Rstd = F(N),
                QkvRaw = c.QkNorm ? F(N * W) : qkv, QkRstd = c.QkNorm ? F(N * (c.Heads + c.KvHeads)) : default,
                Qkv = qkv,
                Att = F(N * HD), AttLogSumExp = F((long)B * c.Heads * T),
                AttProj = F(N * C), Residual2 = F(N * C),
                Ln2 = F(N * C), Ln2Rstd = F(N),
                GateUp = F(N * 2 * I), Act = F(N * I),
                Down = F(N * C), Residual3 = F(N * C),
            };
        }
        FinalRstd = F(N);
        if (withGradients)
        {
            DResidual = F(N * C); DLn = F(N * C); DQkv = F(N * W);
            DQkvRaw = c.QkNorm ? F(N * W) : DQkv;
            DAtt = F(N * HD); DGateUp = F(N * 2 * I); DAct = F(N * I);
        }
    }

    /// <summary>The output of the last block (input of the final norm), [N, C].</summary>
    public Buf<float> LastResidual => Layers[^1].Residual3;
}
