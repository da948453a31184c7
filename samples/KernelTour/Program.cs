// KernelTour: one GPT-2 transformer block, forward and backward, one kernel call at a time.
//
//     dotnet run --project samples/KernelTour -c Release -- --device cpu
//
// Read this file top to bottom. It builds a single pre-LayerNorm block
//
//     x ─┬─ ln_1 ─ c_attn ─ attention ─ attn.c_proj ─(+)─┬─ ln_2 ─ c_fc ─ gelu ─ mlp.c_proj ─(+)─ y
//        └──────────────────────────────────────────────┘  └───────────────────────────────────┘
//
// on a tiny input (B 1 sequence, T 4 tokens, C 8 channels, H 2 heads), runs it through the same Backend
// calls the real model makes, prints every op with its shapes and a few numbers for one token, turns
// the output into a scalar loss, runs the backward calls in reverse order, and finally checks one
// gradient against finite differences: the backward must agree with what the forward alone says.
using ArcherIlgpu.Kernels;

namespace KernelTour;

/// <summary>The tour. <see cref="Run"/> is the whole lesson; the tests call it on every backend.</summary>
public sealed class Tour : IDisposable
{
    // ------------------------------------------------------------------ 1. sizes
    public const int B = 1, T = 4, C = 8, H = 2;   // batch, time, channels, heads: head size D = C / H = 4
    const int N = B * T;                            // every op but attention sees the input as N rows of C
    const float Eps = 1e-5f;                        // LayerNorm's epsilon, as in GPT-2
    const int Shown = T - 1;                        // the token we follow: the last one attends to all four

    // ------------------------------------------------------------------ 2. parameters
    // One flat buffer carved into named views (the real model does the same), so zeroing the gradients
    // is one call and the gradients share the layout. Names follow Hugging Face's GPT-2. Our matmul
    // weights are [out, in] (out = in · Wᵀ + b).
    static readonly (string Name, int[] Shape)[] Layout =
    [
        ("ln_1.weight", [C]), ("ln_1.bias", [C]),
        ("attn.c_attn.weight", [3 * C, C]), ("attn.c_attn.bias", [3 * C]),   // x -> [q | k | v]
        ("attn.c_proj.weight", [C, C]), ("attn.c_proj.bias", [C]),
        ("ln_2.weight", [C]), ("ln_2.bias", [C]),
        ("mlp.c_fc.weight", [4 * C, C]), ("mlp.c_fc.bias", [4 * C]),         // the MLP is 4x wider
        ("mlp.c_proj.weight", [C, 4 * C]), ("mlp.c_proj.bias", [C]),
    ];

    /// <summary>The parameter whose gradient <see cref="CheckGradient"/> tests. ln_1 sits at the very
    /// bottom and feeds only the attention, so its gradient has travelled back through every op.</summary>
    public const string CheckedParameter = "ln_1.weight";

    readonly Backend backend;
    readonly TextWriter log;
    TextWriter say;                                 // log while touring, TextWriter.Null while re-running
    readonly List<IDisposable> owned = [];
    readonly Dictionary<string, int> offsets = [];
    readonly Buf<float> parameters, grads;

    /// <summary>A named activation (or its gradient) with its shape, for printing.</summary>
    sealed record Tensor(string Name, int[] Shape, Buf<float> Data)
    {
        public override string ToString() => $"{Name}[{string.Join(",", Shape)}]";
    }

    // ------------------------------------------------------------------ 3. activations
    // Allocated once; forward and backward only write into them (no op allocates).
    readonly Tensor x, ln1, qkv, att, attProj, res1, ln2, fc, gelu, fcProj, y;
    readonly Buf<float> ln1Mean, ln1Rstd, ln2Mean, ln2Rstd, logSumExp;   // saved for backward
    readonly Tensor dY, dX, dLn1, dQkv, dAtt, dAttProj, dRes1, dLn2, dFc, dGelu, dFcProj;
    readonly float[] lossWeights;                   // the fixed weights that turn y into a scalar

    public Tour(Backend backend, TextWriter log)
    {
        this.backend = backend; this.log = say = log;
        var rng = new Random(1234);                 // fixed seed: every run prints the same numbers
        float Uniform(double scale) => (float)((rng.NextDouble() * 2 - 1) * scale);

        int total = 0;
        foreach (var (name, shape) in Layout) { offsets[name] = total; total += shape.Aggregate(1, (a, b) => a * b); }
        parameters = Alloc(total); grads = Alloc(total);

        // Matmul weights ~ U(±1/sqrt(fan-in)) keep every activation O(1); LayerNorm weights near 1 and
        // small biases, not exactly 1 and 0, so that a wrong index in a backward cannot hide behind a 1.
        var init = new float[total];
        foreach (var (name, shape) in Layout)
            for (int i = 0; i < Size(shape); i++)
                init[offsets[name] + i] = name.StartsWith("ln") && name.EndsWith("weight") ? 1 + Uniform(0.2)
                    : name.EndsWith("bias") ? Uniform(0.1) : Uniform(1 / Math.Sqrt(shape[1]));
        backend.Upload(parameters, init);

        x = New("x", B, T, C); ln1 = New("ln1", B, T, C); qkv = New("qkv", B, T, 3 * C); att = New("att", B, T, C);
        attProj = New("attProj", B, T, C); res1 = New("res1", B, T, C); ln2 = New("ln2", B, T, C);
        fc = New("fc", B, T, 4 * C); gelu = New("gelu", B, T, 4 * C); fcProj = New("fcProj", B, T, C); y = New("y", B, T, C);
        ln1Mean = Alloc(N); ln1Rstd = Alloc(N); ln2Mean = Alloc(N); ln2Rstd = Alloc(N); logSumExp = Alloc(B * H * T);
        dY = New("dy", B, T, C); dX = New("dx", B, T, C); dLn1 = New("dln1", B, T, C); dQkv = New("dqkv", B, T, 3 * C);
        dAtt = New("datt", B, T, C); dAttProj = New("dattProj", B, T, C); dRes1 = New("dres1", B, T, C);
        dLn2 = New("dln2", B, T, C); dFc = New("dfc", B, T, 4 * C); dGelu = New("dgelu", B, T, 4 * C); dFcProj = New("dfcProj", B, T, C);

        var input = new float[N * C];
        for (int i = 0; i < input.Length; i++) input[i] = Uniform(1);   // stands in for token + position embeddings
        backend.Upload(x.Data, input);
        lossWeights = new float[N * C];
        for (int i = 0; i < lossWeights.Length; i++) lossWeights[i] = Uniform(1);
    }

    // ------------------------------------------------------------------ 4. forward
    /// <summary>The block, bottom to top. Each line is one kernel launch on the device.</summary>
    public void Forward()
    {
        say.WriteLine($"forward on {backend.Name}: B={B} T={T} C={C} H={H}; values shown are token t={Shown}, channels 0..3");
        var b = backend;
        b.LayerNormForward(x.Data, W("ln_1.weight"), W("ln_1.bias"), N, C, Eps, ln1.Data, ln1Mean, ln1Rstd);
        Show("LayerNormForward", [x], ln1);      // each row: subtract its mean, divide by its std, scale, shift
        b.MatMulForward(ln1.Data, W("attn.c_attn.weight"), W("attn.c_attn.bias"), N, C, 3 * C, qkv.Data);
        Show("MatMulForward", [ln1], qkv);       // one matmul makes the query, key and value of every token
        b.AttentionForward(qkv.Data, B, T, H, H, C / H, att.Data, logSumExp);
        Show("AttentionForward", [qkv], att);    // token t mixes the values of tokens 0..t (causal), per head
        b.MatMulForward(att.Data, W("attn.c_proj.weight"), W("attn.c_proj.bias"), N, C, C, attProj.Data);
        Show("MatMulForward", [att], attProj);   // mixes the heads back together
        b.ResidualForward(x.Data, attProj.Data, N * C, res1.Data);
        Show("ResidualForward", [x, attProj], res1);  // the residual stream: attention ADDS to x
        b.LayerNormForward(res1.Data, W("ln_2.weight"), W("ln_2.bias"), N, C, Eps, ln2.Data, ln2Mean, ln2Rstd);
        Show("LayerNormForward", [res1], ln2);
        b.MatMulForward(ln2.Data, W("mlp.c_fc.weight"), W("mlp.c_fc.bias"), N, C, 4 * C, fc.Data);
        Show("MatMulForward", [ln2], fc);        // the MLP works on each token alone, 4x wider
        b.GeluForward(fc.Data, N * 4 * C, gelu.Data);
        Show("GeluForward", [fc], gelu);         // a smooth ReLU: negatives shrink towards 0
        b.MatMulForward(gelu.Data, W("mlp.c_proj.weight"), W("mlp.c_proj.bias"), N, 4 * C, C, fcProj.Data);
        Show("MatMulForward", [gelu], fcProj);
        b.ResidualForward(res1.Data, fcProj.Data, N * C, y.Data);
        Show("ResidualForward", [res1, fcProj], y);
    }

    // ------------------------------------------------------------------ 5. loss
    /// <summary>L = sum over every output number of y · w, w fixed. Its gradient dL/dy is simply w.
    /// Summed on the host in double, so the loss adds no rounding of its own to the gradient check.</summary>
    public double Loss()
    {
        var output = backend.ToArray(y.Data);
        double loss = 0;
        for (int i = 0; i < output.Length; i++) loss += (double)output[i] * lossWeights[i];
        return loss;
    }

    // ------------------------------------------------------------------ 6. backward
    /// <summary>The same ops in reverse order. Each backward takes the gradient of its output and gives
    /// the gradients of its inputs (overwritten) and of its parameters (added to).</summary>
    public void Backward()
    {
        say.WriteLine($"backward: dL/dy = w, then every op in reverse; values shown are token t={Shown}, or the first of a parameter");
        var b = backend;
        b.Zero(grads);                                     // parameter gradients accumulate: start at 0
        foreach (var d in new[] { dX, dRes1, dAttProj, dFcProj }) b.Zero(d.Data);   // so does the residual stream
        b.Upload(dY.Data, lossWeights);

        b.ResidualBackward(dY.Data, N * C, dRes1.Data, dFcProj.Data);
        Show("ResidualBackward", [dY], dFcProj);           // an add passes its gradient to both branches
        b.MatMulBackward(dFcProj.Data, gelu.Data, W("mlp.c_proj.weight"), N, 4 * C, C, dGelu.Data, G("mlp.c_proj.weight"), G("mlp.c_proj.bias"));
        Show("MatMulBackward", [dFcProj], dGelu, "mlp.c_proj.weight");
        b.GeluBackward(dGelu.Data, fc.Data, N * 4 * C, dFc.Data);
        Show("GeluBackward", [dGelu], dFc);
        b.MatMulBackward(dFc.Data, ln2.Data, W("mlp.c_fc.weight"), N, C, 4 * C, dLn2.Data, G("mlp.c_fc.weight"), G("mlp.c_fc.bias"));
        Show("MatMulBackward", [dFc], dLn2, "mlp.c_fc.weight");
        b.LayerNormBackward(dLn2.Data, res1.Data, W("ln_2.weight"), ln2Mean, ln2Rstd, N, C, dRes1.Data, G("ln_2.weight"), G("ln_2.bias"));
        Show("LayerNormBackward", [dLn2], dRes1, "ln_2.weight");   // ADDS into dres1: the stream's two paths meet
        b.ResidualBackward(dRes1.Data, N * C, dX.Data, dAttProj.Data);
        Show("ResidualBackward", [dRes1], dAttProj);
        b.MatMulBackward(dAttProj.Data, att.Data, W("attn.c_proj.weight"), N, C, C, dAtt.Data, G("attn.c_proj.weight"), G("attn.c_proj.bias"));
        Show("MatMulBackward", [dAttProj], dAtt, "attn.c_proj.weight");
        b.AttentionBackward(dAtt.Data, qkv.Data, att.Data, logSumExp, B, T, H, H, C / H, dQkv.Data);
        Show("AttentionBackward", [dAtt], dQkv);           // rebuilds the softmax from the saved logsumexp
        b.MatMulBackward(dQkv.Data, ln1.Data, W("attn.c_attn.weight"), N, C, 3 * C, dLn1.Data, G("attn.c_attn.weight"), G("attn.c_attn.bias"));
        Show("MatMulBackward", [dQkv], dLn1, "attn.c_attn.weight");
        b.LayerNormBackward(dLn1.Data, x.Data, W("ln_1.weight"), ln1Mean, ln1Rstd, N, C, dX.Data, G("ln_1.weight"), G("ln_1.bias"));
        Show("LayerNormBackward", [dLn1], dX, "ln_1.weight");
    }

    // ------------------------------------------------------------------ 7. gradient check
    // Central differences: dL/dp ≈ (L(p + h) − L(p − h)) / 2h, with an error of order h² from the
    // curvature and of order δ/h from rounding, δ being the float32 noise in L. Float32 has a unit
    // roundoff of 6e-8; this forward does a few tens of roundings per number, so δ ≈ sqrt(30) · 6e-8 · |L|,
    // about 1e-6 for |L| ≈ 4. The two errors balance near h ≈ (3δ)^(1/3) ≈ 1e-2, which is what we use
    // (a float64 forward would allow h ≈ 1e-6; float32 cannot): both then stay near 1e-4 absolute, at
    // worst 4e-4 of the gradient we check (≈ 0.27). The tolerance, 1e-3 relative, sits above that
    // worst case; in practice the two forwards round almost alike and the error is ~1e-7. A real
    // backward bug (a missing term, a wrong index or sign) moves the gradient far more, and a test
    // holds that even a 1% error is caught.
    public const float Step = 1e-2f;
    public const double Tolerance = 1e-3;

    /// <summary>Perturbs the element of <see cref="CheckedParameter"/> with the largest gradient (large,
    /// so that rounding noise is small next to it), re-runs the forward twice, compares.</summary>
    public bool CheckGradient()
    {
        var all = backend.ToArray(parameters);
        var g = backend.ToArray(grads);
        int first = offsets[CheckedParameter], count = Size(Layout.First(l => l.Name == CheckedParameter).Shape);
        int index = Enumerable.Range(first, count).MaxBy(i => Math.Abs(g[i]));
        float original = all[index];

        double LossWith(float value)
        {
            all[index] = value;
            backend.Upload(parameters, all);
            say = TextWriter.Null;                          // re-running the forward quietly
            try { Forward(); return Loss(); } finally { say = log; }
        }
        float plus = original + Step, minus = original - Step;
        double lossPlus = LossWith(plus), lossMinus = LossWith(minus);
        LossWith(original);                                 // put the weight back as it was
        // Divide by the step float32 actually took, not by 2h: p ± h is rounded when stored.
        double numeric = (lossPlus - lossMinus) / ((double)plus - minus);
        double analytic = g[index];
        double relative = Math.Abs(numeric - analytic) / Math.Max(Math.Max(Math.Abs(numeric), Math.Abs(analytic)), 1e-12);
        bool ok = relative <= Tolerance;

        log.WriteLine($"gradient check on {CheckedParameter}[{index - first}], h = {Step}:");
        log.WriteLine($"  L(p+h) = {lossPlus:F8}   L(p-h) = {lossMinus:F8}");
        log.WriteLine($"  finite difference (L+ - L-)/2h = {numeric,12:F7}");
        log.WriteLine($"  backward                       = {analytic,12:F7}");
        log.WriteLine($"  relative error {relative:E2} (tolerance {Tolerance:E0}): {(ok ? "PASS" : "FAIL")}");
        return ok;
    }

    // ------------------------------------------------------------------ 8. the whole lesson
    /// <summary>Forward, loss, backward, gradient check; true when the check passes.</summary>
    public static bool Run(Backend backend, TextWriter log)
    {
        using var tour = new Tour(backend, log);
        tour.Forward();
        double loss = tour.Loss();
        log.WriteLine($"loss L = sum(y * w) = {loss:F6}");
        tour.Backward();
        return tour.CheckGradient();
    }

    public static int Main(string[] args)
    {
        string device = "cpu";
        for (int i = 0; i < args.Length; i++)
        {
            if (args[i] == "--device" && i + 1 < args.Length) device = args[++i];
            else if (args[i].StartsWith("--device=", StringComparison.Ordinal)) device = args[i]["--device=".Length..];
            else { Console.Error.WriteLine($"unknown argument '{args[i]}'; usage: KernelTour [--device cpu|ilgpu-cpu|cuda|opencl]"); return 2; }
        }
        Backend backend;
        try { backend = Devices.Create(device); }
        catch (DeviceNotFoundException e) { Console.Error.WriteLine(e.Message); return 2; }
        using (backend) return Run(backend, Console.Out) ? 0 : 1;
    }

    // ------------------------------------------------------------------ helpers
    /// <summary>Prints one op: inputs -> output, the followed token's first values, and for a backward
    /// the first values of the parameter gradient it added to. Downloading waits for the device: fine
    /// for a tour, never done inside real training.</summary>
    void Show(string op, Tensor[] inputs, Tensor output, string? parameter = null)
    {
        if (say == TextWriter.Null) return;
        int row = output.Shape[^1];
        var shown = backend.ToArray(output.Data.Slice((long)Shown * row, 4));
        say.WriteLine($"  {op,-18} {string.Join(" + ", inputs.Select(t => t.ToString())),-28} -> {output,-16} {Values(shown)}");
        if (parameter is null) return;
        var shape = Layout.First(l => l.Name == parameter).Shape;
        say.WriteLine($"  {"",-18} {"",-28}    +> d{parameter}[{string.Join(",", shape)}] {Values(backend.ToArray(G(parameter).Slice(0, 4)))}");
    }

    static string Values(float[] v) => string.Join(" ", v.Select(f => f.ToString("+0.0000;-0.0000")));
    static int Size(int[] shape) => shape.Aggregate(1, (a, b) => a * b);
    Buf<float> W(string name) => parameters.Slice(offsets[name], Size(Layout.First(l => l.Name == name).Shape));
    Buf<float> G(string name) => grads.Slice(offsets[name], Size(Layout.First(l => l.Name == name).Shape));

    Buf<float> Alloc(int length)
    {
        var buffer = backend.Allocate<float>(length);
        owned.Add(buffer);
        return buffer.All;
    }

    Tensor New(string name, params int[] shape) => new(name, shape, Alloc(Size(shape)));

    /// <summary>For tests: scales the gradient that <see cref="CheckGradient"/> will look at, to show the
    /// check catches a backward that is slightly wrong.</summary>
    public void SpoilCheckedGradient(float factor)
    {
        var g = backend.ToArray(G(CheckedParameter));
        for (int i = 0; i < g.Length; i++) g[i] *= factor;
        backend.Upload(G(CheckedParameter), g);
    }

    public void Dispose() { foreach (var o in owned) o.Dispose(); }
}
