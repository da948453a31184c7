namespace ArcherIlgpu.Model.Tests.Gpt2.Reference;

/// <summary>
/// A float64 GPT-2 written as plain loops over one position at a time, independent of the model code
/// and of every backend op. Parameters are keyed by Hugging Face name with matmul weights in the
/// [out, in] orientation ("W[o, k]"). Computes the weighted cross-entropy
/// loss = sum_n w_n * (-log softmax(z_n / temperature)[target_n]) and the gradient of every parameter.
/// <paramref name="operand"/>, when given, rounds every operand of the linear layers' products (input,
/// weight and output gradient, forward and backward) as a reduced-precision matmul would, and nothing
/// else: the model of a backend whose matmuls take bf16 or tf32 operands and accumulate in float32.
/// </summary>
public sealed class Gpt2Reference(int V, int maxT, int L, int H, int C, double eps, IReadOnlyDictionary<string, double[]> p,
    Func<double, double>? operand = null)
{
    double Op(double v) => operand is null ? v : operand(v);

    int D => C / H;

    sealed class Layer
    {
        public double[] X = [], Ln1 = [], Mean1 = [], Rstd1 = [], Qkv = [], Prob = [], Att = [], X2 = [],
            Ln2 = [], Mean2 = [], Rstd2 = [], Fc = [], Gelu = [];
    }

    sealed class Trace
    {
        public int B, T;
        public int[] Inputs = [];
        public Layer[] Layers = [];
        public double[] XL = [], LnF = [], MeanF = [], RstdF = [], Logits = [];
    }

    double[] P(string name) => p[name];

    /// <summary>Logits [B*T, V] (before temperature).</summary>
    public double[] Logits(int B, int T, int[] inputs) => Forward(B, T, inputs).Logits;

    /// <summary>Per position: log softmax(z/temperature)[target] and the entropy of softmax(z/temperature).</summary>
    public (double[] LogProbs, double[] Entropies) TokenLogProbs(int B, int T, int[] inputs, int[] targets, double temperature)
    {
        var z = Forward(B, T, inputs).Logits;
        int N = B * T;
        var lp = new double[N]; var ent = new double[N];
        for (int n = 0; n < N; n++)
        {
            var logp = LogSoftmax(z, n * V, temperature);
            lp[n] = logp[targets[n]];
            for (int v = 0; v < V; v++) ent[n] -= Math.Exp(logp[v]) * logp[v];
        }
        return (lp, ent);
    }

    public double Loss(int B, int T, int[] inputs, int[] targets, double[] weights, double temperature = 1)
        => LossAndGradients(B, T, inputs, targets, weights, temperature, wantGradients: false).Loss;

    public (double Loss, Dictionary<string, double[]> Grads) LossAndGradients(int B, int T, int[] inputs, int[] targets,
        double[] weights, double temperature = 1, bool wantGradients = true)
    {
        var tr = Forward(B, T, inputs);
        int N = B * T;
        double loss = 0;
        var dLogits = new double[N * V];
        for (int n = 0; n < N; n++)
        {
            if (weights[n] == 0) continue;
            var logp = LogSoftmax(tr.Logits, n * V, temperature);
            loss -= weights[n] * logp[targets[n]];
            // d/dz of -w log softmax(z/temp)[y] = w (p - onehot(y)) / temp
            for (int v = 0; v < V; v++)
                dLogits[n * V + v] = weights[n] * (Math.Exp(logp[v]) - (v == targets[n] ? 1 : 0)) / temperature;
        }
        if (!wantGradients) return (loss, []);
        return (loss, Backward(tr, dLogits));
    }

    double[] LogSoftmax(double[] z, int offset, double temperature)
    {
        double max = double.NegativeInfinity;
        for (int v = 0; v < V; v++) max = Math.Max(max, z[offset + v] / temperature);
        double sum = 0;
        for (int v = 0; v < V; v++) sum += Math.Exp(z[offset + v] / temperature - max);
        double lse = max + Math.Log(sum);
        var r = new double[V];
        for (int v = 0; v < V; v++) r[v] = z[offset + v] / temperature - lse;
        return r;
    }

    // ------------------------------------------------------------------ forward

    Trace Forward(int B, int T, int[] inputs)
    {
        if (T > maxT) throw new ArgumentException("T > maxT");
        int N = B * T;
        var tr = new Trace { B = B, T = T, Inputs = inputs, Layers = new Layer[L] };
        var x = new double[N * C];
        var wte = P("wte.weight"); var wpe = P("wpe.weight");
        for (int n = 0; n < N; n++)
            for (int c = 0; c < C; c++) x[n * C + c] = wte[inputs[n] * C + c] + wpe[(n % T) * C + c];
        for (int l = 0; l < L; l++)
        {
            string h = $"h.{l}.";
            var s = tr.Layers[l] = new Layer { X = x };
            (s.Ln1, s.Mean1, s.Rstd1) = LayerNorm(x, N, P(h + "ln_1.weight"), P(h + "ln_1.bias"));
            s.Qkv = Linear(s.Ln1, N, C, P(h + "attn.c_attn.weight"), P(h + "attn.c_attn.bias"), 3 * C);
            (s.Att, s.Prob) = Attention(s.Qkv, B, T);
            var proj = Linear(s.Att, N, C, P(h + "attn.c_proj.weight"), P(h + "attn.c_proj.bias"), C);
            s.X2 = Add(x, proj);
            (s.Ln2, s.Mean2, s.Rstd2) = LayerNorm(s.X2, N, P(h + "ln_2.weight"), P(h + "ln_2.bias"));
            s.Fc = Linear(s.Ln2, N, C, P(h + "mlp.c_fc.weight"), P(h + "mlp.c_fc.bias"), 4 * C);
            s.Gelu = Array.ConvertAll(s.Fc, Gelu);
            var mlp = Linear(s.Gelu, N, 4 * C, P(h + "mlp.c_proj.weight"), P(h + "mlp.c_proj.bias"), C);
            x = Add(s.X2, mlp);
        }
        tr.XL = x;
        (tr.LnF, tr.MeanF, tr.RstdF) = LayerNorm(x, N, P("ln_f.weight"), P("ln_f.bias"));
        tr.Logits = Linear(tr.LnF, N, C, wte, null, V);
        return tr;
    }

    static double[] Add(double[] a, double[] b)
    {
        var r = new double[a.Length];
        for (int i = 0; i < a.Length; i++) r[i] = a[i] + b[i];
        return r;
    }

    /// <summary>y[n, o] = sum_k x[n, k] W[o, k] + b[o].</summary>
    double[] Linear(double[] x, int N, int K, double[] W, double[]? b, int OC)
    {
        var y = new double[N * OC];
        for (int n = 0; n < N; n++)
            for (int o = 0; o < OC; o++)
            {
                double acc = b?[o] ?? 0;
                for (int k = 0; k < K; k++) acc += Op(x[n * K + k]) * Op(W[o * K + k]);
                y[n * OC + o] = acc;
            }
        return y;
    }

    void LinearBackward(double[] dy, double[] x, int N, int K, double[] W, int OC, double[] dx, double[] dW, double[]? db)
    {
        for (int n = 0; n < N; n++)
            for (int o = 0; o < OC; o++)
            {
                double g = dy[n * OC + o], gOp = Op(g);
                if (db is not null) db[o] += g;   // a column sum, not a product: full precision
                for (int k = 0; k < K; k++)
                {
                    dx[n * K + k] += gOp * Op(W[o * K + k]);
                    dW[o * K + k] += gOp * Op(x[n * K + k]);
                }
            }
    }

    (double[] Y, double[] Mean, double[] Rstd) LayerNorm(double[] x, int N, double[] w, double[] b)
    {
        var y = new double[N * C]; var mean = new double[N]; var rstd = new double[N];
        for (int n = 0; n < N; n++)
        {
            double m = 0;
            for (int c = 0; c < C; c++) m += x[n * C + c];
            m /= C;
            double var = 0;
            for (int c = 0; c < C; c++) var += (x[n * C + c] - m) * (x[n * C + c] - m);
            var /= C;
            double r = 1 / Math.Sqrt(var + eps);
            mean[n] = m; rstd[n] = r;
            for (int c = 0; c < C; c++) y[n * C + c] = (x[n * C + c] - m) * r * w[c] + b[c];
        }
        return (y, mean, rstd);
    }

    void LayerNormBackward(double[] dy, double[] x, double[] mean, double[] rstd, int N, double[] w, double[] dx, double[] dw, double[] db)
    {
        for (int n = 0; n < N; n++)
        {
            var xhat = new double[C]; var dxhat = new double[C];
            double meanD = 0, meanDX = 0;
            for (int c = 0; c < C; c++)
            {
                xhat[c] = (x[n * C + c] - mean[n]) * rstd[n];
                dxhat[c] = dy[n * C + c] * w[c];
                meanD += dxhat[c]; meanDX += dxhat[c] * xhat[c];
                dw[c] += dy[n * C + c] * xhat[c];
                db[c] += dy[n * C + c];
            }
            meanD /= C; meanDX /= C;
            for (int c = 0; c < C; c++) dx[n * C + c] += rstd[n] * (dxhat[c] - meanD - xhat[c] * meanDX);
        }
    }

    static readonly double GeluS = Math.Sqrt(2 / Math.PI);
    static double Gelu(double x) => 0.5 * x * (1 + Math.Tanh(GeluS * (x + 0.044715 * x * x * x)));
    static double GeluDerivative(double x)
    {
        double th = Math.Tanh(GeluS * (x + 0.044715 * x * x * x));
        return 0.5 * (1 + th) + 0.5 * x * (1 - th * th) * GeluS * (1 + 3 * 0.044715 * x * x);
    }

    /// <summary>Causal attention; Prob [B, H, T, T] (zero above the diagonal).</summary>
    (double[] Out, double[] Prob) Attention(double[] qkv, int B, int T)
    {
        var output = new double[B * T * C];
        var prob = new double[B * H * T * T];
        double scale = 1 / Math.Sqrt(D);
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++)
                for (int t = 0; t < T; t++)
                {
                    var scores = new double[t + 1];
                    double max = double.NegativeInfinity;
                    for (int s = 0; s <= t; s++)
                    {
                        double dot = 0;
                        for (int d = 0; d < D; d++) dot += Q(qkv, b, T, t, h, d) * K(qkv, b, T, s, h, d);
                        scores[s] = dot * scale;
                        max = Math.Max(max, scores[s]);
                    }
                    double sum = 0;
                    for (int s = 0; s <= t; s++) { scores[s] = Math.Exp(scores[s] - max); sum += scores[s]; }
                    for (int s = 0; s <= t; s++)
                    {
                        double pr = scores[s] / sum;
                        prob[((b * H + h) * T + t) * T + s] = pr;
                        for (int d = 0; d < D; d++) output[(b * T + t) * C + h * D + d] += pr * Vv(qkv, b, T, s, h, d);
                    }
                }
        return (output, prob);
    }

    int QIndex(int b, int T, int t, int part, int h, int d) => (b * T + t) * 3 * C + part * C + h * D + d;
    double Q(double[] qkv, int b, int T, int t, int h, int d) => qkv[QIndex(b, T, t, 0, h, d)];
    double K(double[] qkv, int b, int T, int t, int h, int d) => qkv[QIndex(b, T, t, 1, h, d)];
    double Vv(double[] qkv, int b, int T, int t, int h, int d) => qkv[QIndex(b, T, t, 2, h, d)];

    double[] AttentionBackward(double[] dOut, double[] qkv, double[] prob, int B, int T)
    {
        var dQkv = new double[qkv.Length];
        double scale = 1 / Math.Sqrt(D);
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++)
                for (int t = 0; t < T; t++)
                {
                    var dp = new double[t + 1];
                    double dot = 0;
                    for (int s = 0; s <= t; s++)
                    {
                        double pr = prob[((b * H + h) * T + t) * T + s];
                        for (int d = 0; d < D; d++)
                        {
                            double g = dOut[(b * T + t) * C + h * D + d];
                            dp[s] += g * Vv(qkv, b, T, s, h, d);
                            dQkv[QIndex(b, T, s, 2, h, d)] += pr * g;
                        }
                        dot += pr * dp[s];
                    }
                    for (int s = 0; s <= t; s++)
                    {
                        double pr = prob[((b * H + h) * T + t) * T + s];
                        double dScore = pr * (dp[s] - dot) * scale;
                        for (int d = 0; d < D; d++)
                        {
                            dQkv[QIndex(b, T, t, 0, h, d)] += dScore * K(qkv, b, T, s, h, d);
                            dQkv[QIndex(b, T, s, 1, h, d)] += dScore * Q(qkv, b, T, t, h, d);
                        }
                    }
                }
        return dQkv;
    }

    // ------------------------------------------------------------------ backward

    Dictionary<string, double[]> Backward(Trace tr, double[] dLogits)
    {
        int B = tr.B, T = tr.T, N = B * T;
        var g = p.ToDictionary(kv => kv.Key, kv => new double[kv.Value.Length]);
        var dLnF = new double[N * C];
        LinearBackward(dLogits, tr.LnF, N, C, P("wte.weight"), V, dLnF, g["wte.weight"], null);
        var dx = new double[N * C];
        LayerNormBackward(dLnF, tr.XL, tr.MeanF, tr.RstdF, N, P("ln_f.weight"), dx, g["ln_f.weight"], g["ln_f.bias"]);
        for (int l = L - 1; l >= 0; l--)
        {
            string h = $"h.{l}.";
            var s = tr.Layers[l];
            // x3 = x2 + mlp(ln2(x2)): dx flows to x2 directly and through the MLP
            var dGelu = new double[N * 4 * C];
            LinearBackward(dx, s.Gelu, N, 4 * C, P(h + "mlp.c_proj.weight"), C, dGelu, g[h + "mlp.c_proj.weight"], g[h + "mlp.c_proj.bias"]);
            var dFc = new double[N * 4 * C];
            for (int i = 0; i < dFc.Length; i++) dFc[i] = dGelu[i] * GeluDerivative(s.Fc[i]);
            var dLn2 = new double[N * C];
            LinearBackward(dFc, s.Ln2, N, C, P(h + "mlp.c_fc.weight"), 4 * C, dLn2, g[h + "mlp.c_fc.weight"], g[h + "mlp.c_fc.bias"]);
            var dx2 = (double[])dx.Clone();
            LayerNormBackward(dLn2, s.X2, s.Mean2, s.Rstd2, N, P(h + "ln_2.weight"), dx2, g[h + "ln_2.weight"], g[h + "ln_2.bias"]);
            // x2 = x + proj(attn(ln1(x)))
            var dAtt = new double[N * C];
            LinearBackward(dx2, s.Att, N, C, P(h + "attn.c_proj.weight"), C, dAtt, g[h + "attn.c_proj.weight"], g[h + "attn.c_proj.bias"]);
            var dQkv = AttentionBackward(dAtt, s.Qkv, s.Prob, B, T);
            var dLn1 = new double[N * C];
            LinearBackward(dQkv, s.Ln1, N, C, P(h + "attn.c_attn.weight"), 3 * C, dLn1, g[h + "attn.c_attn.weight"], g[h + "attn.c_attn.bias"]);
            var dxIn = (double[])dx2.Clone();
            LayerNormBackward(dLn1, s.X, s.Mean1, s.Rstd1, N, P(h + "ln_1.weight"), dxIn, g[h + "ln_1.weight"], g[h + "ln_1.bias"]);
            dx = dxIn;
        }
        for (int n = 0; n < N; n++)
            for (int c = 0; c < C; c++)
            {
                g["wte.weight"][tr.Inputs[n] * C + c] += dx[n * C + c];
                g["wpe.weight"][(n % T) * C + c] += dx[n * C + c];
            }
        return g;
    }
}
