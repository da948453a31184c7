namespace ArcherIlgpu.Kernels;

/// <summary>
/// Runs every op forward and backward on a device and on the <c>cpu</c> backend with the same inputs
/// and compares the results. This is how a new GPU is verified where <c>dotnet test</c> cannot run
/// (<c>archer selfcheck --device cuda</c>). Sizes include 1 and values that are not multiples of any
/// tile, warp or vector width.
/// </summary>
public static class SelfCheck
{
    /// <summary>One compared output. Error = max |device - cpu| / max(1, max |cpu|).</summary>
    public sealed record Result(string Op, string Shape, string Output, double Error, double Tolerance)
    {
        public bool Passed => Error <= Tolerance;   // false for NaN too
    }

    /// <summary>
    /// Float32 results differ between backends only by summation order and fast-math intrinsics:
    /// a few ulp per term, growing like sqrt(K) over a K-term sum. 2e-4 of the output scale covers
    /// K up to a few thousand with a wide margin while still catching any indexing error.
    /// </summary>
    public const double DefaultTolerance = 2e-4;

    public static List<Result> Run(Backend device, Backend cpu, bool quick, Action<Result>? progress = null)
    {
        var results = new List<Result>();
        void Add(IEnumerable<Result> rs) { foreach (var r in rs) { results.Add(r); progress?.Invoke(r); } }

        int[][] matmulShapes = quick
            ? [[1, 1, 1], [7, 33, 5], [33, 17, 70]]
            : [[1, 1, 1], [7, 33, 5], [70, 65, 129], [127, 768, 257], [512, 768, 2304], [1000, 3072, 768]];
        // The plain float32 kernels first; the variants (the default on CUDA) and tensor cores after.
        foreach (var s in matmulShapes) Add(WithMatMulPrecision(device, MatMulPrecision.Float32, () => MatMul(device, cpu, s[0], s[1], s[2]), GemmVariants.None));
        Add(TensorCoreMatMuls(device, cpu, quick));
        Add(GemmVariantMatMuls(device, cpu, quick));

        // B, T, H, Hkv, D: GPT-2 shapes (Hkv = H), grouped-query ones (Qwen2.5-0.5B has H 14, Hkv 2, D 64),
        // the largest head size 128 and head sizes that are not powers of two.
        int[][] attentionShapes = quick
            ? [[1, 1, 2, 2, 2], [2, 7, 3, 3, 4], [1, 33, 2, 2, 8], [2, 9, 4, 2, 12], [1, 17, 3, 1, 128]]
            : [[1, 1, 2, 2, 2], [2, 7, 3, 3, 4], [3, 33, 4, 4, 16], [2, 127, 3, 3, 32], [2, 257, 4, 4, 64], [1, 300, 12, 12, 64],
               [2, 65, 4, 2, 128], [2, 100, 6, 2, 48], [1, 129, 14, 2, 64], [1, 70, 8, 1, 96], [2, 40, 3, 1, 12]];
        // The warp kernels, then the flash ones (the default on CUDA): each checked on every backend.
        foreach (var s in attentionShapes) Add(WithAttentionKernel(device, AttentionKernel.Warp, () => Attention(device, cpu, s[0], s[1], s[2], s[3], s[4])));
        Add(FlashAttentions(device, cpu, quick));

        int[][] ropeShapes = quick   // N, H, Hkv, D
            ? [[1, 1, 1, 2], [7, 3, 1, 12], [33, 4, 2, 128]]
            : [[1, 1, 1, 2], [7, 3, 1, 12], [33, 4, 2, 128], [1024, 14, 2, 64], [300, 16, 8, 128], [127, 12, 12, 64]];
        foreach (var s in ropeShapes) Add(Rope(device, cpu, s[0], s[1], s[2], s[3]));

        int[][] rowShapes = quick ? [[1, 1], [7, 33], [33, 70]] : [[1, 1], [7, 33], [127, 129], [1024, 768], [300, 3072]];
        foreach (var s in rowShapes)
        {
            Add(LayerNorm(device, cpu, s[0], s[1]));
            Add(Elementwise(device, cpu, s[0] * s[1]));
            Add(Embedding(device, cpu, s[0], s[1], vocab: 37, maxT: 50));
            Add(RmsNorm(device, cpu, s[0], s[1]));
            Add(SwiGlu(device, cpu, s[0], s[1]));
            Add(TokenEmbedding(device, cpu, s[0], s[1], vocab: 37));
        }

        int[][] qkShapes = quick   // N, H, Hkv, D
            ? [[1, 1, 1, 1], [3, 3, 1, 5], [33, 2, 2, 8]]
            : [[1, 1, 1, 1], [3, 3, 1, 5], [33, 2, 2, 8], [127, 6, 2, 33], [1024, 16, 8, 64], [300, 14, 2, 128]];
        foreach (var s in qkShapes) Add(QkNorm(device, cpu, s[0], s[1], s[2], s[3]));

        int[][] headShapes = quick ? [[1, 2], [7, 33], [5, 300]] : [[1, 2], [7, 33], [33, 1000], [64, 50257], [300, 8192]];
        foreach (var s in headShapes) Add(ClassifierHead(device, cpu, s[0], s[1]));
        foreach (var s in headShapes) Add(Sampling(device, cpu, s[0], s[1]));

        foreach (var n in quick ? new[] { 1, 1000 } : new[] { 1, 1000, 1 << 20 }) Add(Optimizer(device, cpu, n));

        int[][] rlShapes = quick ? [[1, 1], [7, 33], [5, 300]] : [[1, 1], [7, 33], [5, 300], [64, 1024], [16, 8192], [512, 256]];
        foreach (var s in rlShapes) Add(Classify(device, cpu, s[0], s[1]));
        foreach (var s in rlShapes) Add(PolicyLoss(device, cpu, s[0], s[1]));
        return results;
    }

    // ------------------------------------------------------------------ cases

    static IEnumerable<Result> MatMul(Backend dev, Backend cpu, int n, int k, int oc)
    {
        string shape = $"N{n} K{k} OC{oc}";
        var inp = Data(1, (long)n * k); var w = Data(2, (long)oc * k, 0.1); var b = Data(3, oc);
        var dOut = Data(4, (long)n * oc); var dW0 = Data(5, (long)oc * k); var dB0 = Data(6, oc);
        return Compare("matmul", shape, dev, cpu, be =>
        {
            var i = be.Upload<float>(inp); var W = be.Upload<float>(w); var B = be.Upload<float>(b);
            var o = be.Allocate<float>((long)n * oc).All;
            be.MatMulForward(i, W, B, n, k, oc, o);
            var dO = be.Upload<float>(dOut); var dI = be.Allocate<float>((long)n * k).All;
            var dW = be.Upload<float>(dW0); var dB = be.Upload<float>(dB0);
            be.MatMulBackward(dO, i, W, n, k, oc, dI, dW, dB);
            return [("out", be.ToArray(o)), ("dInput", be.ToArray(dI)), ("dWeight", be.ToArray(dW)), ("dBias", be.ToArray(dB))];
        });
    }

    // ------------------------------------------------- tensor-core matmul (CUDA)

    /// <summary>
    /// Tolerances for the tensor-core precisions against the cpu float32 result (Error is relative to
    /// the output scale). Rounding an operand to TF32 (10 fraction bits) errs by up to 2^-11 relative,
    /// a product by about 2^-11·√2 rms; summed with random signs over K terms the error and the output
    /// both grow like √K, so their ratio stays near 2^-11·√2 ≈ 7e-4 at any K: 4e-3 leaves room for the
    /// largest of a million outputs. BF16 keeps 7 fraction bits, 8× coarser: ≈ 5.5e-3, tolerance 3e-2.
    /// A misplaced fragment element is an O(1) error and fails either.
    /// </summary>
    public const double Tf32Tolerance = 4e-3, Bf16Tolerance = 3e-2;

    /// <summary>
    /// On CUDA, every matmul product with TF32 and with BF16 tensor cores; then again with vec4
    /// (128-bit global loads) at sizes whose strides allow it, rows ragged, and with split-K and vec4
    /// (the default) at the same sizes, cut into slices down to 16 deep.
    /// </summary>
    static IEnumerable<Result> TensorCoreMatMuls(Backend device, Backend cpu, bool quick)
    {
        if (device is not IlgpuBackend gpu || gpu.Accelerator.AcceleratorType != ILGPU.Runtime.AcceleratorType.Cuda) return [];
        int[][] shapes = quick ? [[33, 17, 70], [129, 70, 130]] : [[7, 33, 5], [70, 65, 129], [127, 768, 257], [512, 768, 2304], [1000, 3072, 768]];
        int[][] quadShapes = quick ? [[33, 20, 68], [129, 68, 131]] : [[7, 36, 12], [70, 68, 132], [127, 768, 257], [1000, 3072, 768]];
        var results = new List<Result>();
        foreach (var (precision, tolerance) in new[] { (MatMulPrecision.Tf32, Tf32Tolerance), (MatMulPrecision.Bf16, Bf16Tolerance) })
            foreach (var (variants, tag) in new[] { (GemmVariants.None, ""), (GemmVariants.Vec4Loads, "+vec4"), (GemmVariants.SplitK | GemmVariants.Vec4Loads, "+splitk+vec4") })
                foreach (var s in variants == GemmVariants.None ? shapes : quadShapes)
                    foreach (var r in WithMatMulPrecision(device, precision, () => MatMul(device, cpu, s[0], s[1], s[2]), variants))
                        results.Add(r with { Op = $"matmul {precision.ToString().ToLowerInvariant()}{tag}", Tolerance = tolerance });
        return results;
    }

    /// <summary>
    /// Runs the matmul cases with the device's precision and GEMM variants set, then restores them. With
    /// split-K the minimum slice depth is lowered to 16, so that even these sizes are cut into many
    /// slices with a ragged last one; with vec4, dOut rows of an odd length (OC 257) are padded at any
    /// size, as the LM head's are in training.
    /// </summary>
    static IEnumerable<Result> WithMatMulPrecision(Backend device, MatMulPrecision precision, Func<IEnumerable<Result>> run, GemmVariants variants)
    {
        if (device is not IlgpuBackend gpu) return run();
        var saved = (gpu.MatMulPrecision, gpu.GemmVariants, gpu.SplitKMinDepth, gpu.PadRowsMinElements);
        (gpu.MatMulPrecision, gpu.GemmVariants, gpu.PadRowsMinElements) = (precision, variants, 0);
        if ((variants & GemmVariants.SplitK) != 0) gpu.SplitKMinDepth = 16;
        try { return run().ToList(); }
        finally { (gpu.MatMulPrecision, gpu.GemmVariants, gpu.SplitKMinDepth, gpu.PadRowsMinElements) = saved; }
    }

    /// <summary>
    /// On ILGPU backends, the float32 matmul cases again with each GEMM strategy on (see
    /// <see cref="GemmVariants"/>; both are the default on CUDA); the
    /// 4096-row case is a dWeight with few tiles and a long reduction, as in training.
    /// </summary>
    static IEnumerable<Result> GemmVariantMatMuls(Backend device, Backend cpu, bool quick)
    {
        if (device is not IlgpuBackend gpu) return [];
        int[][] shapes = quick ? [[33, 100, 7], [70, 68, 132]] : [[7, 33, 5], [70, 65, 129], [127, 768, 257], [1000, 3072, 768], [4096, 768, 768]];
        var results = new List<Result>();
        foreach (var variants in new[] { GemmVariants.SplitK, GemmVariants.Vec4Loads, GemmVariants.SplitK | GemmVariants.Vec4Loads })
        {
            string tag = variants switch { GemmVariants.SplitK => "splitk", GemmVariants.Vec4Loads => "vec4", _ => "splitk+vec4" };
            foreach (var s in shapes)
                foreach (var r in WithMatMulPrecision(gpu, MatMulPrecision.Float32, () => MatMul(device, cpu, s[0], s[1], s[2]), variants))
                    results.Add(r with { Op = $"matmul {tag}" });
        }
        return results;
    }

    static IEnumerable<Result> Attention(Backend dev, Backend cpu, int B, int T, int H, int Hkv, int D)
    {
        string shape = $"B{B} T{T} H{H} Hkv{Hkv} D{D}";
        int W = (H + 2 * Hkv) * D, HD = H * D;
        var qkv = Data(7, (long)B * T * W); var dOut = Data(8, (long)B * T * HD);
        int maxT = T + 3;
        var positions = new int[B];
        for (int b = 0; b < B; b++) positions[b] = Math.Max(0, T - 1 - b);   // rows at different positions
        return Compare("attention", shape, dev, cpu, be =>
        {
            var q = be.Upload<float>(qkv); var o = be.Allocate<float>((long)B * T * HD).All;
            var lse = be.Allocate<float>((long)B * H * T).All;
            be.AttentionForward(q, B, T, H, Hkv, D, o, lse);
            var dO = be.Upload<float>(dOut); var dQ = be.Allocate<float>((long)B * T * W).All;
            be.AttentionBackward(dO, q, o, lse, B, T, H, Hkv, D, dQ);
            // Prefill all T positions, then decode one more token per row at its own position.
            var k = be.Allocate<float>((long)B * Hkv * maxT * D).All; var v = be.Allocate<float>((long)B * Hkv * maxT * D).All;
            be.KvCacheWrite(q, B, T, H, Hkv, D, maxT, k, v);
            var step = be.Upload<float>(Data(9, (long)B * W)); var pos = be.Upload<int>(positions);
            var dec = be.Allocate<float>((long)B * HD).All;
            be.AttentionDecode(step, pos, B, H, Hkv, D, maxT, k, v, dec);
            return [("out", be.ToArray(o)), ("logSumExp", be.ToArray(lse)), ("dQkv", be.ToArray(dQ)),
                    ("decode", be.ToArray(dec)), ("kCache", be.ToArray(k))];
        });
    }

    /// <summary>
    /// On ILGPU backends, the attention cases again with the flash kernels on (see
    /// <see cref="AttentionKernel"/>; the default on CUDA): T = 1, T not a multiple of the
    /// 64-row blocks, one and several blocks, grouped-query heads, D of 64 (narrow kernels) and above
    /// (the wide ones, up to 128), and the gpt2 layer shape. Small grouped-query shapes split the dK/dV
    /// work over query heads on a GPU (few groups); they run once more unsplit ("flash unsplit").
    /// </summary>
    static IEnumerable<Result> FlashAttentions(Backend device, Backend cpu, bool quick)
    {
        if (device is not IlgpuBackend gpu) return [];
        int[][] shapes = quick
            ? [[1, 1, 2, 2, 8], [2, 9, 4, 2, 13], [1, 65, 2, 2, 64], [1, 70, 3, 1, 128]]
            : [[1, 1, 2, 2, 64], [2, 7, 3, 3, 4], [2, 65, 4, 4, 64], [2, 127, 3, 3, 32], [1, 300, 12, 12, 64],
               [2, 129, 4, 2, 128], [2, 100, 6, 2, 48], [1, 257, 14, 2, 64], [1, 70, 8, 1, 96], [1, 1024, 12, 12, 64]];
        var results = new List<Result>();
        var saved = gpu.AttentionKernel;
        gpu.AttentionKernel = AttentionKernel.Flash;
        var savedSplit = gpu.FlashSplitBelow;
        try
        {
            foreach (var s in shapes)
                foreach (var r in Attention(device, cpu, s[0], s[1], s[2], s[3], s[4]))
                    results.Add(r with { Op = "attention flash" });
            gpu.FlashSplitBelow = 0;
            foreach (var s in shapes.Where(s => s[2] > s[3]))
                foreach (var r in Attention(device, cpu, s[0], s[1], s[2], s[3], s[4]))
                    results.Add(r with { Op = "attention flash unsplit" });
        }
        finally { (gpu.AttentionKernel, gpu.FlashSplitBelow) = (saved, savedSplit); }
        return results;
    }

    static IEnumerable<Result> WithAttentionKernel(Backend device, AttentionKernel kernel, Func<IEnumerable<Result>> run)
    {
        if (device is not IlgpuBackend gpu) return run();
        var saved = gpu.AttentionKernel;
        gpu.AttentionKernel = kernel;
        try { return run().ToList(); }
        finally { gpu.AttentionKernel = saved; }
    }

    static IEnumerable<Result> Rope(Backend dev, Backend cpu, int n, int H, int Hkv, int D)
    {
        const int maxT = 4096;
        long size = (long)n * (H + 2 * Hkv) * D;
        var x = Data(35, size, 2); var dOut = Data(36, size);
        var positions = Ints(37, n, maxT);
        var (cosTable, sinTable) = RopeTable.Create(maxT, D, 1e6);
        return Compare("rope", $"N{n} H{H} Hkv{Hkv} D{D}", dev, cpu, be =>
        {
            var X = be.Upload<float>(x); var dX = be.Upload<float>(dOut); var p = be.Upload<int>(positions);
            var c = be.Upload<float>(cosTable); var s = be.Upload<float>(sinTable);
            be.RopeForward(X, p, c, s, n, H, Hkv, D);
            be.RopeBackward(dX, p, c, s, n, H, Hkv, D);
            return [("out", be.ToArray(X)), ("dQkv", be.ToArray(dX))];
        });
    }

    static IEnumerable<Result> LayerNorm(Backend dev, Backend cpu, int n, int c)
    {
        string shape = $"N{n} C{c}";
        var x = Data(10, (long)n * c, 3); var w = Data(11, c); var bias = Data(12, c); var dOut = Data(13, (long)n * c);
        var dIn0 = Data(14, (long)n * c);
        return Compare("layernorm", shape, dev, cpu, be =>
        {
            var X = be.Upload<float>(x); var W = be.Upload<float>(w); var Bi = be.Upload<float>(bias);
            var o = be.Allocate<float>((long)n * c).All; var mean = be.Allocate<float>(n).All; var rstd = be.Allocate<float>(n).All;
            be.LayerNormForward(X, W, Bi, n, c, 1e-5f, o, mean, rstd);
            var dO = be.Upload<float>(dOut); var dI = be.Upload<float>(dIn0);
            var dW = be.Allocate<float>(c).All; var dB = be.Allocate<float>(c).All;
            be.LayerNormBackward(dO, X, W, mean, rstd, n, c, dI, dW, dB);
            return [("out", be.ToArray(o)), ("rstd", be.ToArray(rstd)), ("dInput", be.ToArray(dI)),
                    ("dWeight", be.ToArray(dW)), ("dBias", be.ToArray(dB))];
        });
    }

    static IEnumerable<Result> Elementwise(Backend dev, Backend cpu, int n)
    {
        var x = Data(15, n, 4); var y = Data(16, n); var dOut = Data(17, n);
        return Compare("gelu+residual", $"n{n}", dev, cpu, be =>
        {
            var X = be.Upload<float>(x); var Y = be.Upload<float>(y); var dO = be.Upload<float>(dOut);
            var g = be.Allocate<float>(n).All; var dX = be.Allocate<float>(n).All; var r = be.Allocate<float>(n).All;
            be.GeluForward(X, n, g);
            be.GeluBackward(dO, X, n, dX);
            be.ResidualForward(X, Y, n, r);
            be.ResidualBackward(dO, n, X, Y);
            return [("gelu", be.ToArray(g)), ("dGelu", be.ToArray(dX)), ("residual", be.ToArray(r)), ("dA", be.ToArray(X))];
        });
    }

    static IEnumerable<Result> Embedding(Backend dev, Backend cpu, int n, int c, int vocab, int maxT)
    {
        var tokens = Ints(18, n, vocab); var pos = Ints(19, n, maxT);
        var wte = Data(20, (long)vocab * c); var wpe = Data(21, (long)maxT * c); var dOut = Data(22, (long)n * c);
        return Compare("embedding", $"N{n} C{c} V{vocab}", dev, cpu, be =>
        {
            var t = be.Upload<int>(tokens); var p = be.Upload<int>(pos);
            var Wte = be.Upload<float>(wte); var Wpe = be.Upload<float>(wpe);
            var o = be.Allocate<float>((long)n * c).All;
            be.EmbeddingForward(t, p, Wte, Wpe, n, c, o);
            var dO = be.Upload<float>(dOut);
            be.EmbeddingBackward(dO, t, p, n, c, Wte, Wpe);   // accumulates onto the tables
            return [("out", be.ToArray(o)), ("dWte", be.ToArray(Wte)), ("dWpe", be.ToArray(Wpe))];
        });
    }

    static IEnumerable<Result> RmsNorm(Backend dev, Backend cpu, int n, int c)
    {
        var x = Data(40, (long)n * c, 3); var w = Data(41, c); var dOut = Data(42, (long)n * c); var dIn0 = Data(43, (long)n * c);
        return Compare("rmsnorm", $"N{n} C{c}", dev, cpu, be =>
        {
            var X = be.Upload<float>(x); var W = be.Upload<float>(w);
            var o = be.Allocate<float>((long)n * c).All; var rstd = be.Allocate<float>(n).All;
            be.RmsNormForward(X, W, n, c, 1e-6f, o, rstd);
            var dI = be.Upload<float>(dIn0); var dW = be.Upload<float>(w);   // both accumulate onto their start
            be.RmsNormBackward(be.Upload<float>(dOut), X, W, rstd, n, c, dI, dW);
            return [("out", be.ToArray(o)), ("rstd", be.ToArray(rstd)), ("dInput", be.ToArray(dI)), ("dWeight", be.ToArray(dW))];
        });
    }

    static IEnumerable<Result> QkNorm(Backend dev, Backend cpu, int n, int h, int hkv, int d)
    {
        long width = (long)(h + 2 * hkv) * d;
        var x = Data(44, n * width, 3); var qw = Data(45, d); var kw = Data(46, d); var dOut = Data(47, n * width);
        return Compare("qknorm", $"N{n} H{h} Hkv{hkv} D{d}", dev, cpu, be =>
        {
            var X = be.Upload<float>(x); var Qw = be.Upload<float>(qw); var Kw = be.Upload<float>(kw);
            var o = be.Allocate<float>(n * width).All; var rstd = be.Allocate<float>((long)n * (h + hkv)).All;
            be.QkNormForward(X, Qw, Kw, n, h, hkv, d, 1e-6f, o, rstd);
            var dX = be.Upload<float>(dOut);   // overwritten: stale values must not show
            var dQw = be.Upload<float>(qw); var dKw = be.Upload<float>(kw);
            be.QkNormBackward(be.Upload<float>(dOut), X, Qw, Kw, rstd, n, h, hkv, d, dX, dQw, dKw);
            return [("out", be.ToArray(o)), ("rstd", be.ToArray(rstd)), ("dQkv", be.ToArray(dX)),
                    ("dQWeight", be.ToArray(dQw)), ("dKWeight", be.ToArray(dKw))];
        });
    }

    static IEnumerable<Result> SwiGlu(Backend dev, Backend cpu, int n, int i)
    {
        var gu = Data(48, (long)n * 2 * i, 8); var dOut = Data(49, (long)n * i);
        return Compare("swiglu", $"N{n} I{i}", dev, cpu, be =>
        {
            var G = be.Upload<float>(gu); var o = be.Allocate<float>((long)n * i).All;
            be.SwiGluForward(G, n, i, o);
            var dG = be.Upload<float>(gu);   // overwritten
            be.SwiGluBackward(be.Upload<float>(dOut), G, n, i, dG);
            return [("out", be.ToArray(o)), ("dGateUp", be.ToArray(dG))];
        });
    }

    static IEnumerable<Result> TokenEmbedding(Backend dev, Backend cpu, int n, int c, int vocab)
    {
        var tokens = Ints(50, n, vocab); var wte = Data(51, (long)vocab * c); var dOut = Data(52, (long)n * c);
        return Compare("token-embedding", $"N{n} C{c} V{vocab}", dev, cpu, be =>
        {
            var t = be.Upload<int>(tokens); var Wte = be.Upload<float>(wte);
            var o = be.Allocate<float>((long)n * c).All;
            be.TokenEmbeddingForward(t, Wte, n, c, o);
            be.TokenEmbeddingBackward(be.Upload<float>(dOut), t, n, c, Wte);   // accumulates onto the table
            return [("out", be.ToArray(o)), ("dWte", be.ToArray(Wte))];
        });
    }

    static IEnumerable<Result> ClassifierHead(Backend dev, Backend cpu, int n, int v)
    {
        var logits = Data(23, (long)n * v, 5); var targets = Ints(24, n, v);
        var weights = Data(25, n); for (int i = 0; i < n; i += 3) weights[i] = 0;   // ignored positions
        var dLp = Data(26, n);
        return Compare("classifier-head", $"N{n} V{v}", dev, cpu, be =>
        {
            var z = be.Upload<float>(logits); var t = be.Upload<int>(targets); var w = be.Upload<float>(weights);
            var losses = be.Allocate<float>(n).All; var dz = be.Allocate<float>((long)n * v).All;
            be.CrossEntropyForwardBackward(z, t, w, n, v, losses, dz);
            var lp = be.Allocate<float>(n).All; var ent = be.Allocate<float>(n).All;
            be.TokenLogProbEntropy(z, t, n, v, 0.7f, lp, ent);
            var dzLp = be.Allocate<float>((long)n * v).All;
            be.TokenLogProbBackward(z, t, be.Upload<float>(dLp), n, v, 0.7f, dzLp);
            return [("losses", be.ToArray(losses)), ("dLogits", be.ToArray(dz)), ("logProbs", be.ToArray(lp)),
                    ("entropies", be.ToArray(ent)), ("dLogitsLogProb", be.ToArray(dzLp))];
        });
    }

    static IEnumerable<Result> Sampling(Backend dev, Backend cpu, int n, int v)
    {
        var logits = Data(27, (long)n * v, 3);
        var rows = new int[n]; var pos = new int[n];
        for (int i = 0; i < n; i++) { rows[i] = i; pos[i] = 5 + i % 3; }
        // Tokens are compared as floats: any different draw is an error of at least 1.
        return Compare("sampling", $"N{n} V{v}", dev, cpu, be =>
        {
            var z = be.Upload<float>(logits); var r = be.Upload<int>(rows); var p = be.Upload<int>(pos);
            var outputs = new List<(string, float[])>();
            foreach (var (temp, k, top) in new[] { (0f, 0, 1f), (1f, 0, 1f), (0.8f, 5, 1f), (1.2f, 0, 0.9f) })
            {
                var tok = be.Allocate<int>(n).All; var lp = be.Allocate<float>(n).All;
                be.Sample(z, r, p, n, v, temp, k, top, 1234UL, tok, lp);
                outputs.Add(($"tokens T{temp} k{k} p{top}", Array.ConvertAll(be.ToArray(tok), x => (float)x)));
                outputs.Add(($"logProbs T{temp} k{k} p{top}", be.ToArray(lp)));
            }
            return outputs.ToArray();
        });
    }

    static IEnumerable<Result> Optimizer(Backend dev, Backend cpu, int n)
    {
        var p0 = Data(28, n); var g = Data(29, n); var m0 = Data(30, n, 0.1); var v0 = Array.ConvertAll(Data(31, n, 0.01), x => x * x);
        return Compare("adamw", $"n{n}", dev, cpu, be =>
        {
            var P = be.Upload<float>(p0); var G = be.Upload<float>(g); var M = be.Upload<float>(m0); var V = be.Upload<float>(v0);
            var norm = be.Allocate<float>(1).All;
            be.SumOfSquares(G, norm);
            be.AdamW(P, G, M, V, norm, 1.0f, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 3);
            return [("normSquared", be.ToArray(norm)), ("params", be.ToArray(P)), ("m", be.ToArray(M)), ("v", be.ToArray(V))];
        });
    }

    /// <summary>Rows of random length (row 1 empty when there are several), entropies with ties from a coarse grid.</summary>
    static (float[] Entropies, float[] Mask) RlRows(int seed, int R, int T)
    {
        var rng = new Random(seed);
        var h = new float[(long)R * T]; var m = new float[(long)R * T];
        for (int i = 0; i < R; i++)
        {
            int len = R > 1 && i == 1 ? 0 : i == 0 ? T : 1 + rng.Next(T);
            for (int t = 0; t < T; t++)
            {
                long k = (long)i * T + t;
                h[k] = i % 2 == 0 ? rng.Next(16) / 4f : (float)(5 * rng.NextDouble());
                if (t < len) m[k] = 1f;
            }
        }
        return (h, m);
    }

    static IEnumerable<Result> Classify(Backend dev, Backend cpu, int R, int T)
    {
        var (h, m) = RlRows(32, R, T);
        // Classes are compared exactly; a row without tokens has τ = NaN, shown as −1 so that NaN = NaN passes.
        static float[] NoNaN(float[] x) => Array.ConvertAll(x, v => float.IsNaN(v) ? -1f : v);
        return Compare("classify", $"R{R} T{T}", dev, cpu, be =>
        {
            var H = be.Upload<float>(h); var M = be.Upload<float>(m);
            var tau = be.Allocate<float>(R).All; var cls = be.Allocate<int>((long)R * T).All;
            be.ClassifyTokensPerResponse(H, M, R, T, 0.8, true, tau, cls);
            var batchTau = be.Allocate<float>(1).All; var batchCls = be.Allocate<int>((long)R * T).All;
            be.ClassifyTokensBatch(H, M, R * T, 0.8, false, batchTau, batchCls);
            return [("thresholds", NoNaN(be.ToArray(tau))), ("classes per response", Array.ConvertAll(be.ToArray(cls), x => (float)x)),
                    ("batch threshold", NoNaN(be.ToArray(batchTau))), ("classes batch", Array.ConvertAll(be.ToArray(batchCls), x => (float)x))];
        });
    }

    static IEnumerable<Result> PolicyLoss(Backend dev, Backend cpu, int R, int T)
    {
        var (_, m) = RlRows(33, R, T);
        long n = (long)R * T;
        var rng = new Random(34);
        var old = new float[n]; var lp = new float[n]; var rf = new float[n]; var adv = new float[n]; var cls = new int[n];
        // Ratios from regions at least 8% away from every clip bound (0.5, 0.8, 1.2, 1.5) and from the dual
        // clip (c = 10), so fast-math exp cannot move a token across a kink and flip its branch.
        double[] ratios = [0.3, 0.65, 0.95, 1.1, 1.3, 1.7, 14];
        for (long k = 0; k < n; k++)
        {
            old[k] = (float)(-4 * rng.NextDouble());
            lp[k] = (float)(old[k] + Math.Log(ratios[rng.Next(ratios.Length)] * (1 + 0.04 * (rng.NextDouble() - 0.5))));
            rf[k] = (float)(lp[k] + 2 * rng.NextDouble() - 1);
            adv[k] = (k / T) % 3 == 0 ? 0.7f : (k / T) % 3 == 1 ? -1.3f : 0f;
            cls[k] = m[k] > 0 ? 1 + rng.Next(2) : 0;
        }
        var modes = new (PolicyAggregation Agg, PolicyKlAggregation Kl, PolicyKlEstimator Est)[]
        {
            (PolicyAggregation.SeqMeanTokenMean, PolicyKlAggregation.PerClassMean, PolicyKlEstimator.K3),
            (PolicyAggregation.TokenMean, PolicyKlAggregation.SameAsPolicy, PolicyKlEstimator.K2),
            (PolicyAggregation.SeqMeanTokenSum, PolicyKlAggregation.PerClassMean, PolicyKlEstimator.K1),
        };
        return Compare("policy-loss", $"R{R} T{T}", dev, cpu, be =>
        {
            var LP = be.Upload<float>(lp); var OLD = be.Upload<float>(old); var RF = be.Upload<float>(rf);
            var ADV = be.Upload<float>(adv); var M = be.Upload<float>(m); var C = be.Upload<int>(cls);
            var outputs = new List<(string, float[])>();
            foreach (var (agg, kl, est) in modes)
            {
                var p = PolicyLossParameters.ArcherDefaults(R);
                p.LowKlWeight = 0.2f; p.HighKlWeight = 0.05f; p.HighPolicyWeight = 0.5f;
                p.Aggregation = agg; p.KlAggregation = kl; p.KlEstimator = est;
                var d = be.Allocate<float>(n).All; var stats = be.Allocate<float>(PolicyLossStats.Count).All;
                be.PolicyLossForwardBackward(LP, OLD, RF, ADV, M, C, R, T, p, d, stats);
                var st = be.ToArray(stats);
                outputs.Add(($"dLogProbs {agg} {kl} {est}", be.ToArray(d)));
                outputs.Add(($"loss terms {agg} {kl} {est}", st[..PolicyLossStats.Tokens]));
                outputs.Add(($"counts {agg} {kl} {est}", st[PolicyLossStats.Tokens..]));
            }
            return outputs.ToArray();
        });
    }

    // ---------------------------------------------------------------- helpers

    static IEnumerable<Result> Compare(string op, string shape, Backend dev, Backend cpu, Func<Backend, (string Name, float[] Data)[]> run)
    {
        (string, float[])[] expected, actual;
        try
        {
            expected = run(cpu);
            actual = run(dev);
        }
        catch (Exception e)
        {
            return [new Result(op, shape, $"threw {e.GetType().Name}: {e.Message}", double.NaN, DefaultTolerance)];
        }
        var results = new List<Result>();
        for (int i = 0; i < expected.Length; i++)
        {
            // Sampled token ids, token classes and counts must match exactly: any mismatch fails, whatever the values.
            bool exact = expected[i].Item1.StartsWith("tokens", StringComparison.Ordinal)
                || expected[i].Item1.StartsWith("classes", StringComparison.Ordinal)
                || expected[i].Item1.StartsWith("counts", StringComparison.Ordinal);
            double error = exact ? Mismatches(expected[i].Item2, actual[i].Item2) : Error(expected[i].Item2, actual[i].Item2);
            results.Add(new Result(op, shape, expected[i].Item1, error, exact ? 0 : DefaultTolerance));
        }
        return results;
    }

    static double Error(float[] expected, float[] actual)
    {
        if (expected.Length != actual.Length) return double.PositiveInfinity;
        double scale = 1, err = 0;
        foreach (var e in expected) scale = Math.Max(scale, Math.Abs(e));
        for (int i = 0; i < expected.Length; i++)
        {
            double d = Math.Abs((double)actual[i] - expected[i]);
            if (double.IsNaN(d)) return double.NaN;
            err = Math.Max(err, d);
        }
        return err / scale;
    }

    static double Mismatches(float[] expected, float[] actual)
    {
        if (expected.Length != actual.Length) return double.PositiveInfinity;
        int bad = 0;
        for (int i = 0; i < expected.Length; i++) if (expected[i] != actual[i]) bad++;
        return bad;
    }

    static float[] Data(int seed, long n, double scale = 1.0)
    {
        var rng = new Random(seed);
        var x = new float[n];
        for (long i = 0; i < n; i++) x[i] = (float)((rng.NextDouble() * 2 - 1) * scale);
        return x;
    }

    static int[] Ints(int seed, int n, int max)
    {
        var rng = new Random(seed);
        var x = new int[n];
        for (int i = 0; i < n; i++) x[i] = rng.Next(max);
        return x;
    }
}
