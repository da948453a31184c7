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

/// <summary>GPT-2's activations: the shared ones plus every block's and ln_f's statistics.</summary>
public sealed class Gpt2Activations : Activations
{
    public Buf<float> Encoded;                    // [N, C]
    public LayerActivations[] Layers;
    public Buf<float> LnFMean, LnFRstd;           // [N], [N] (ln_f's output is FinalNorm)

    // gradient scratch shared by all layers; DResidual is the residual stream's gradient [N, C]
    public Buf<float> DResidual, DLn, DQkv, DAtt, DFc, DFcGelu;

    public Gpt2Activations(Backend backend, Gpt2Config config, int B, int T, bool withGradients, ActivationArena? arena = null)
        : base(backend, B, T, config.MaxT, config.Channels, config.VocabSize, withGradients, arena)
    {
        int N = B * T, C = config.Channels, H = config.Heads;
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
        LnFMean = F(N); LnFRstd = F(N);
        if (withGradients)
        {
            DResidual = F((long)N * C); DLn = F((long)N * C); DQkv = F(3L * N * C);
            DAtt = F((long)N * C); DFc = F(4L * N * C); DFcGelu = F(4L * N * C);
        }
    }

    /// <summary>The output of the last block (input of ln_f), [N, C].</summary>
    public Buf<float> LastResidual => Layers[^1].Residual3;
}
