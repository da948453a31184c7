using ArcherIlgpu.Kernels;

namespace ArcherIlgpu.Rl.Training;

/// <summary>
/// The device side of one training step's <see cref="StepTensors"/>, all [Rows, T] row-major: inputs and
/// targets and mask (uploaded once per step), the advantages (computed here from the uploaded [Rows] rewards), the old policy's log-probs and entropies, the
/// reference log-probs and the token classes (written on the device, never uploaded); plus the gathered
/// rows of the current mini-batch, which the loss reads. Every buffer is grown only when a step needs more
/// than any step before (a view of its first Rows·T entries serves the step), so a run allocates them a
/// few times at its start and then never again.
/// </summary>
internal sealed class DeviceStepTensors : IDisposable
{
    readonly Backend backend;
    readonly List<IDisposable> owned = [];
    public int Rows { get; private set; }
    public int T { get; private set; }

    // Whole step, [Rows, T].
    readonly Grown<int> inputs, targets, classes, padTokens, metricClasses;
    readonly Grown<float> metricThresholds;
    readonly Grown<float> mask, rewards, advantages, oldLogProbs, oldEntropies, refLogProbs;
    // One mini-batch's rows, [rows, T].
    readonly Grown<int> mbClasses;
    readonly Grown<float> mbMask, mbAdvantages, mbOld, mbRef, mbLogProbs, mbEntropies, mbDLogProbs;
    int padToken = -1;

    public DeviceStepTensors(Backend backend)
    {
        this.backend = backend;
        Grown<TV> New<TV>() where TV : unmanaged { var g = new Grown<TV>(backend); owned.Add(g); return g; }
        inputs = New<int>(); targets = New<int>(); classes = New<int>(); padTokens = New<int>(); metricClasses = New<int>();
        metricThresholds = New<float>();
        mask = New<float>(); rewards = New<float>(); advantages = New<float>(); oldLogProbs = New<float>(); oldEntropies = New<float>(); refLogProbs = New<float>();
        mbClasses = New<int>();
        mbMask = New<float>(); mbAdvantages = New<float>(); mbOld = New<float>(); mbRef = New<float>();
        mbLogProbs = New<float>(); mbEntropies = New<float>(); mbDLogProbs = New<float>();
    }

    int N => Rows * T;
    public Buf<float> Mask => mask.Take(N);
    public Buf<float> OldLogProbs => oldLogProbs.Take(N);
    public Buf<float> OldEntropies => oldEntropies.Take(N);
    public Buf<float> RefLogProbs => refLogProbs.Take(N);
    public Buf<int> Classes => classes.Take(N);

    /// <summary>
    /// The old policy's token classes by a per-response ρ-quantile whatever the algorithm (for the entropy metrics,
    /// so runs of different algorithms compare), downloaded as <see cref="Kernels.PolicyMath"/> class values.
    /// </summary>
    public int[] PerResponseClasses(double rho, bool strictGreater)
    {
        var cls = metricClasses.Take(N);
        backend.ClassifyTokensPerResponse(OldEntropies, Mask, Rows, T, rho, strictGreater, metricThresholds.Take(Rows), cls);
        return backend.ToArray(cls);
    }

    /// <summary>
    /// Uploads the step's inputs, targets, mask and rewards (the only uploads of a step) and computes each token's
    /// group-normalised advantage on the device.
    /// </summary>
    public void Load(StepTensors s, int padToken, AdvantageEstimator estimator, double epsilon)
    {
        Rows = s.Rows; T = s.T;
        backend.Upload(inputs.Take(N), s.Inputs);
        backend.Upload(targets.Take(N), s.Targets);
        backend.Upload(mask.Take(N), s.Mask);
        backend.Upload(rewards.Take(Rows), s.RowRewards);
        backend.GroupAdvantages(rewards.Take(Rows), Mask, Rows, T, s.GroupSize, estimator, epsilon, advantages.Take(N));
        this.padToken = padToken;
    }

    /// <summary>
    /// Writes the inputs and targets of <paramref name="rows"/> into the first rows of <paramref name="tokens"/> /
    /// <paramref name="targetsOut"/> ([micro, T]) and the pad token into the rest, as one padded micro-batch.
    /// </summary>
    public void GatherInputs(ReadOnlySpan<int> rows, Buf<int> tokens, Buf<int> targetsOut)
    {
        long n = tokens.Length, used = (long)rows.Length * T;
        GatherRows(inputs.Take(N), rows, tokens);
        GatherRows(targets.Take(N), rows, targetsOut);
        if (used == n) return;
        if (padTokens.Capacity < n - used || padTokens.Filled != padToken)
        {
            var fill = new int[Math.Max(n - used, padTokens.Capacity)];
            Array.Fill(fill, padToken);
            backend.Upload(padTokens.Take(fill.Length), fill);
            padTokens.Filled = padToken;
        }
        var pad = padTokens.Take(n - used);
        backend.Copy(pad, tokens.Slice(used, n - used));
        backend.Copy(pad, targetsOut.Slice(used, n - used));
    }

    /// <summary>Copies micro-batch row j of <paramref name="micro"/> into row rows[j] of <paramref name="full"/>.</summary>
    public void ScatterRows(ReadOnlySpan<int> rows, Buf<float> micro, Buf<float> full)
    {
        foreach (var (from, to, count) in Runs(rows))
            backend.Copy(micro.Slice((long)from * T, (long)count * T), full.Slice((long)to * T, (long)count * T));
    }

    /// <summary>Row j of <paramref name="dst"/> becomes row rows[j] of <paramref name="full"/>.</summary>
    void GatherRows<TV>(Buf<TV> full, ReadOnlySpan<int> rows, Buf<TV> dst) where TV : unmanaged
    {
        foreach (var (from, to, count) in Runs(rows))
            backend.Copy(full.Slice((long)to * T, (long)count * T), dst.Slice((long)from * T, (long)count * T));
    }

    /// <summary>Runs of consecutive row numbers (a mini-batch is whole groups, each a run): (index in rows, row, count).</summary>
    static List<(int From, int To, int Count)> Runs(ReadOnlySpan<int> rows)
    {
        var runs = new List<(int, int, int)>();
        for (int j = 0; j < rows.Length;)
        {
            int k = j + 1;
            while (k < rows.Length && rows[k] == rows[k - 1] + 1) k++;
            runs.Add((j, rows[j], k - j));
            j = k;
        }
        return runs;
    }

    /// <summary>The mini-batch's mask, advantages, ℓ_old, ℓ_ref (if <paramref name="withReference"/>) and classes
    /// (if <paramref name="withClasses"/>) gathered on the device, as the loss's inputs (log-probs and entropies still to set).</summary>
    public Algorithms.DeviceAlgorithmLossInputs MiniBatch(ReadOnlySpan<int> rows, bool withReference, bool withClasses)
    {
        int n = rows.Length * T;
        var m = mbMask.Take(n); GatherRows(Mask, rows, m);
        var a = mbAdvantages.Take(n); GatherRows(advantages.Take(N), rows, a);
        var o = mbOld.Take(n); GatherRows(OldLogProbs, rows, o);
        Buf<float> r = default;
        if (withReference) { r = mbRef.Take(n); GatherRows(RefLogProbs, rows, r); }
        Buf<int> c = default;
        if (withClasses) { c = mbClasses.Take(n); GatherRows(Classes, rows, c); }
        return new() { Rows = rows.Length, T = T, Mask = m, Advantages = a, OldLogProbs = o, RefLogProbs = r, Classes = c };
    }

    /// <summary>Mini-batch-sized log-prob, entropy and dLogProb buffers, for a mini-batch that spans several micro-batches.</summary>
    public (Buf<float> LogProbs, Buf<float> Entropies, Buf<float> DLogProbs) MiniBatchResults(int rows)
        => (mbLogProbs.Take(rows * T), mbEntropies.Take(rows * T), mbDLogProbs.Take(rows * T));

    public void Dispose()
    {
        foreach (var d in owned) d.Dispose();
    }

    /// <summary>A device buffer that only grows; <see cref="Take"/> gives a view of its first n entries.</summary>
    sealed class Grown<TV>(Backend backend) : IDisposable where TV : unmanaged
    {
        DeviceBuffer<TV>? buffer;
        public long Capacity => buffer?.Length ?? 0;
        /// <summary>For the pad buffer: which token it holds (-1: none yet).</summary>
        public int Filled = -1;

        public Buf<TV> Take(long n)
        {
            if (buffer is null || buffer.Length < n)
            {
                buffer?.Dispose();
                buffer = backend.Allocate<TV>(Math.Max(1, n));
                Filled = -1;
            }
            return buffer.All.Slice(0, n);
        }

        public void Dispose() => buffer?.Dispose();
    }
}
