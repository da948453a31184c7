using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using ArcherIlgpu.Model;
using ArcherIlgpu.Kernels;
using ArcherIlgpu.Model.Generation;
using ArcherIlgpu.Model.Gpt2;
using ArcherIlgpu.Model.Llama;
using ArcherIlgpu.Model.Training;

namespace ArcherIlgpu.Cli;

/// <summary>
/// <c>archer bench train</c> and <c>archer bench generate</c>: throughput of a training step
/// (forward, cross-entropy, backward, AdamW) and of KV-cached sampling on one device, with random
/// tokens from a fixed seed. <c>--profile</c> times every op through <see cref="ProfilingBackend"/>.
/// </summary>
public static partial class BenchCommand
{
    public static Command Create()
    {
        var command = new Command("bench", "Training and generation throughput on a device");
        command.Subcommands.Add(CreateTrain());
        command.Subcommands.Add(CreateGenerate());
        command.Subcommands.Add(CreateRl());
        command.WithExamples("bench train --preset bench-s --device cpu", "bench generate --preset bench-s --device cpu", "bench rl --device cpu");
        return command;
    }

    static Option<string> PresetOption() => new("--preset")
    {
        Description = $"model shape: {string.Join(", ", Models.PresetNames)}",
        DefaultValueFactory = _ => "bench-s",
    };

    static Option<bool> ProfileOption() => new("--profile") { Description = "time every op (synchronising after each) and print a per-op table" };

    /// <summary>The batch shapes the TorchSharp peer uses for each benchmark preset.</summary>
    static (int B, int T) DefaultShape(string preset, IModelConfig config) => preset.Trim().ToLowerInvariant() switch
    {
        "bench-s" => (8, 128),
        "bench-m" => (4, 256),
        "gpt2" => (4, 64),
        _ => (4, Math.Min(64, config.MaxT)),
    };

    // ================================================================ train

    static Command CreateTrain()
    {
        var preset = PresetOption();
        var batch = new Option<int?>("--batch") { Description = "sequences per step (default: bench-s 8, bench-m 4, gpt2 4)" };
        var seq = new Option<int?>("--seq") { Description = "tokens per sequence (default: bench-s 128, bench-m 256, gpt2 64)" };
        var steps = new Option<int>("--steps") { Description = "timed steps", DefaultValueFactory = _ => 10 };
        var warmup = new Option<int>("--warmup") { Description = "untimed steps first", DefaultValueFactory = _ => 2 };
        var device = Program.DeviceOption();
        var precision = Program.PrecisionOption();
        var profile = ProfileOption();
        var command = new Command("train", "Median time of a training step (forward + cross-entropy + backward + AdamW)")
            { preset, batch, seq, steps, warmup, device, precision, profile };
        // Output goes to the console (the helpers below print directly); errors through the guard.
        command.SetAction(parse => CliErrors.Guard(parse, (_, _) =>
        {
            string presetName = parse.GetValue(preset)!;
            var config = Models.Preset(presetName);
            var (defB, defT) = DefaultShape(presetName, config);
            int B = parse.GetValue(batch) ?? defB, T = parse.GetValue(seq) ?? defT;
            int nSteps = parse.GetValue(steps), nWarmup = parse.GetValue(warmup);
            if (B < 1 || T < 1 || T > config.MaxT) throw new ArgumentException($"need --batch >= 1 and 1 <= --seq <= {config.MaxT}, got {B} and {T}");
            if (nSteps < 1 || nWarmup < 0) throw new ArgumentException($"need --steps >= 1 and --warmup >= 0, got {nSteps} and {nWarmup}");
            using var inner = Program.CreateBackend(parse.GetValue(device), parse.GetValue(precision));
            var profiler = parse.GetValue(profile) ? new ProfilingBackend(inner) { Enabled = false } : null;
            Backend be = profiler ?? inner;
            return RunTrain(be, inner, profiler, presetName, config, B, T, nSteps, nWarmup);
        }));
        command.WithExamples("bench train --preset bench-s --device cpu");
        return command;
    }

    static int RunTrain(Backend be, Backend inner, ProfilingBackend? profiler, string presetName, IModelConfig config,
        int B, int T, int nSteps, int nWarmup)
    {
        Console.WriteLine($"bench train: {presetName} ({config}) B={B} T={T} on {inner.Name} ({inner.Description}, {Devices.PrecisionName(inner.Precision)} matmuls)");
        using var model = Models.Create(be, config, seed: 1337);
        using var trainer = new ModelTrainer(model, new LrSchedule(1e-4f, Kind: "constant"));
        var batches = RandomBatches(config, B, T, count: 2, seed: 42);

        var times = new double[nSteps];
        var foreign = new double[nSteps];
        long allocated = 0;
        int gc0 = 0, gc1 = 0, gc2 = 0;
        double loss = 0;
        for (int step = 0; step < nWarmup + nSteps; step++)
        {
            bool timed = step >= nWarmup;
            if (step == nWarmup)
            {
                if (profiler is not null) profiler.Enabled = true;
                gc0 = GC.CollectionCount(0); gc1 = GC.CollectionCount(1); gc2 = GC.CollectionCount(2);
            }
            var (busy0, own0) = CpuSeconds();
            long alloc0 = GC.GetTotalAllocatedBytes(precise: true);
            long start = Stopwatch.GetTimestamp();
            var r = trainer.TrainStep(batches[step % batches.Length]);
            double ms = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
            long alloc1 = GC.GetTotalAllocatedBytes(precise: true);
            var (busy1, own1) = CpuSeconds();
            double others = ((busy1 - busy0) - (own1 - own0)) / (ms / 1e3);
            loss = r.Loss;
            if (timed) { times[step - nWarmup] = ms; foreign[step - nWarmup] = others; allocated += alloc1 - alloc0; }
            Console.WriteLine(Invariant($"step {step,3}{(timed ? "" : " (warm-up)")}: {ms,9:F1} ms  loss {r.Loss:F4}  other processes {others:F2} cores"));
        }
        int dGc0 = GC.CollectionCount(0) - gc0, dGc1 = GC.CollectionCount(1) - gc1, dGc2 = GC.CollectionCount(2) - gc2;

        double median = Median(times);
        var clean = times.Where((_, i) => foreign[i] < 0.25).ToArray();
        double cleanMedian = clean.Length > 0 ? Median(clean) : double.NaN;
        long tokens = (long)B * T;
        double flops = TrainingFlops(config, model.ParameterCount, B, T);
        Console.WriteLine();
        Console.WriteLine(Invariant($"params            {model.ParameterCount:N0}"));
        Console.WriteLine(Invariant($"median            {median:F1} ms/step (min {times.Min():F1}, max {times.Max():F1}, {nSteps} steps)"));
        Console.WriteLine(Invariant($"clean median      {cleanMedian:F1} ms/step over the {clean.Length} steps where other processes used < 0.25 cores"));
        Console.WriteLine(Invariant($"tokens/s          {tokens / (median / 1e3):F0}"));
        Console.WriteLine(Invariant($"achieved          {flops / (median / 1e3) / 1e9:F1} GFLOP/s ({flops / 1e9:F2} GFLOP/step = 6·(params − lookup-only tables)·B·T + 6·L·B·T²·H·D)"));
        PrintMemory(Console.Out, inner);
        Console.WriteLine(Invariant($"managed alloc     {allocated / (double)nSteps:N0} bytes/step over the timed steps; GCs gen0/1/2: {dGc0}/{dGc1}/{dGc2}"));
        Console.WriteLine(Invariant($"RESULT preset={presetName} device={inner.Name} precision={Devices.PrecisionName(inner.Precision)} B={B} T={T} median_ms={median:F2} clean_steps={clean.Length} clean_median_ms={cleanMedian:F2} min_ms={times.Min():F2} tok_per_s={tokens / (median / 1e3):F1} gflops={flops / (median / 1e3) / 1e9:F1} peak_rss_mb={PeakRssBytes() / 1048576.0:F0} backend_peak_mb={inner.PeakBytes / 1048576.0:F0} alloc_per_step={allocated / nSteps} loss={loss:F4}"));
        if (profiler is not null) PrintProfile(profiler, nSteps);
        return 0;
    }

    /// <summary>
    /// FLOPs of one training step: every weight does one multiply-add per token forward and two
    /// backward (6·params·tokens), counting a tied embedding once as the head matmul and leaving out
    /// tables that are only looked up (GPT-2's position table, an untied model's token embedding); plus
    /// causal attention, whose q·kᵀ and p·v cost 2·T²·H·D per sequence and layer forward with the mask
    /// halving 4·T²·H·D, and twice that backward. Norms, activations, softmax and the optimizer are left
    /// out, as usual.
    /// </summary>
    public static double TrainingFlops(IModelConfig c, long parameterCount, int B, int T)
    {
        var (lookupOnly, attentionWidth) = c switch
        {
            Gpt2Config g => ((double)g.MaxT * g.Channels, g.Channels),
            LlamaConfig l => (l.TiedHead ? 0.0 : (double)l.VocabSize * l.Channels, l.QWidth),
            _ => throw new ArgumentException($"no FLOP count for {c.GetType().Name}"),
        };
        return 6.0 * (parameterCount - lookupOnly) * B * T + 6.0 * c.Layers * B * (double)T * T * attentionWidth;
    }

    static TrainingBatch[] RandomBatches(IModelConfig config, int B, int T, int count, int seed)
    {
        var rng = new Random(seed);
        var result = new TrainingBatch[count];
        for (int i = 0; i < count; i++)
        {
            var seqs = new int[B * (T + 1)];
            for (int j = 0; j < seqs.Length; j++) seqs[j] = rng.Next(config.VocabSize);
            var inputs = new int[B * T]; var targets = new int[B * T]; var weights = new float[B * T];
            for (int b = 0; b < B; b++)
                for (int t = 0; t < T; t++)
                {
                    inputs[b * T + t] = seqs[b * (T + 1) + t];
                    targets[b * T + t] = seqs[b * (T + 1) + t + 1];
                    weights[b * T + t] = 1f;
                }
            result[i] = new TrainingBatch(B, T, inputs, targets, weights);
        }
        return result;
    }

    // ================================================================ generate

    static Command CreateGenerate()
    {
        var preset = PresetOption();
        var batch = new Option<int>("--batch") { Description = "sequences sampled together", DefaultValueFactory = _ => 64 };
        var newTokens = new Option<int>("--new-tokens") { Description = "tokens sampled per sequence (capped by the context length)", DefaultValueFactory = _ => 128 };
        var promptLength = new Option<int>("--prompt-length") { Description = "random prompt tokens per sequence", DefaultValueFactory = _ => 16 };
        var device = Program.DeviceOption();
        var precision = Program.PrecisionOption();
        var profile = ProfileOption();
        var command = new Command("generate", "Tokens/s of KV-cached sampling (temperature 1)")
            { preset, batch, newTokens, promptLength, device, precision, profile };
        command.SetAction(parse => CliErrors.Guard(parse, (stdout, _) =>
        {
            string presetName = parse.GetValue(preset)!;
            var config = Models.Preset(presetName);
            int B = parse.GetValue(batch), P = parse.GetValue(promptLength);
            if (B < 1 || P < 1 || P >= config.MaxT) throw new ArgumentException($"need --batch >= 1 and 1 <= --prompt-length < {config.MaxT}, got {B} and {P}");
            int n = Math.Min(parse.GetValue(newTokens), config.MaxT - P);
            if (n < 1) throw new ArgumentException("--new-tokens must be at least 1");
            using var inner = Program.CreateBackend(parse.GetValue(device), parse.GetValue(precision));
            var profiler = parse.GetValue(profile) ? new ProfilingBackend(inner) { Enabled = false } : null;
            Backend be = profiler ?? inner;
            stdout.WriteLine($"bench generate: {presetName} ({config}) B={B} prompt={P} new={n} on {inner.Name} ({inner.Description}, {Devices.PrecisionName(inner.Precision)} matmuls)");

            using var model = Models.Create(be, config, seed: 1337);
            using var generator = new Generator(model);
            var rng = new Random(7);
            var prompts = new int[B][];
            for (int b = 0; b < B; b++) { prompts[b] = new int[P]; for (int t = 0; t < P; t++) prompts[b][t] = rng.Next(config.VocabSize); }
            generator.Generate(prompts, new SamplingOptions(MaxNewTokens: Math.Min(2, n), Seed: 1));   // warm-up: buffers, JIT, kernels

            if (profiler is not null) profiler.Enabled = true;
            var transfersBefore = inner.Transfers;
            long start = Stopwatch.GetTimestamp();
            var result = generator.Generate(prompts, new SamplingOptions(MaxNewTokens: n, Temperature: 1f, Seed: 2));
            double seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
            var transfers = inner.Transfers - transfersBefore;
            long produced = result.Tokens.Sum(t => (long)t.Length);
            stdout.WriteLine(Invariant($"generated         {produced:N0} tokens in {seconds * 1e3:F0} ms (prefill of {B}×{P} included)"));
            stdout.WriteLine(Invariant($"tokens/s          {produced / seconds:F0}"));
            PrintMemory(stdout, inner);
            PrintTransfers(stdout, transfers, produced, "generated token");
            stdout.WriteLine(Invariant($"RESULT preset={presetName} device={inner.Name} precision={Devices.PrecisionName(inner.Precision)} B={B} prompt={P} new={n} ms={seconds * 1e3:F1} tok_per_s={produced / seconds:F1} peak_rss_mb={PeakRssBytes() / 1048576.0:F0} backend_peak_mb={inner.PeakBytes / 1048576.0:F0} {transfers.PerUnit(produced)}"));
            if (profiler is not null) PrintProfile(profiler, 1);
            return 0;
        }));
        command.WithExamples("bench generate --preset bench-s --device cpu");
        return command;
    }

    // ================================================================ reporting

    static void PrintMemory(TextWriter log, Backend inner)
    {
        long rss = PeakRssBytes();
        if (rss > 0) log.WriteLine(Invariant($"peak RSS          {rss / 1048576.0:F0} MiB (VmHWM)"));
        log.WriteLine(Invariant($"backend peak      {inner.PeakBytes / 1048576.0:F0} MiB allocated through {inner.Name}"));
    }

    /// <summary>Host↔device copies in all and per unit of work (a generated token, an optimizer step).</summary>
    static void PrintTransfers(TextWriter log, TransferCounts t, double units, string unit)
    {
        log.WriteLine(Invariant($"host→device       {t.H2DCalls:N0} copies, {t.H2DBytes:N0} bytes ({t.H2DCalls / units:G4} copies, {t.H2DBytes / units:G4} bytes per {unit})"));
        log.WriteLine(Invariant($"device→host       {t.D2HCalls:N0} copies, {t.D2HBytes:N0} bytes ({t.D2HCalls / units:G4} copies, {t.D2HBytes / units:G4} bytes per {unit})"));
    }

    /// <summary>
    /// (busy CPU seconds of the whole machine from /proc/stat, CPU seconds of this process): their
    /// difference over a step is what other processes took from it. Zeros where /proc is absent.
    /// </summary>
    static (double Busy, double Own) CpuSeconds()
    {
        if (!File.Exists("/proc/stat")) return (0, 0);
        using var reader = new StreamReader("/proc/stat");
        var f = reader.ReadLine()!.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        double J(int i) => double.Parse(f[i], CultureInfo.InvariantCulture);
        double busy = (J(1) + J(2) + J(3) + J(6) + J(7) + J(8)) / 100.0;   // user nice system irq softirq steal, USER_HZ = 100
        using var self = Process.GetCurrentProcess();
        return (busy, self.TotalProcessorTime.TotalSeconds);
    }

    /// <summary>The process's peak resident set (VmHWM in /proc/self/status), or 0 where there is none.</summary>
    static long PeakRssBytes()
    {
        const string path = "/proc/self/status";
        if (!File.Exists(path)) return 0;
        foreach (var line in File.ReadLines(path))
            if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
            {
                var parts = line.Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries);   // a tab, not spaces, precedes values of 8+ digits
                return long.Parse(parts[1], CultureInfo.InvariantCulture) * 1024;   // kB
            }
        return 0;
    }

    static void PrintProfile(ProfilingBackend profiler, int perWhat)
    {
        var rows = profiler.Stats.OrderByDescending(kv => kv.Value.Ticks).ToList();
        double total = rows.Sum(kv => kv.Value.Milliseconds);
        Console.WriteLine();
        Console.WriteLine($"per-op times (each call synchronised; per {(perWhat == 1 ? "run" : "step")}, {perWhat} {(perWhat == 1 ? "run" : "steps")}):");
        Console.WriteLine($"{"op",-44} {"calls",7} {"ms",10} {"share",7}");
        foreach (var (op, s) in rows)
            Console.WriteLine(Invariant($"{op,-44} {s.Calls / (double)perWhat,7:0.#} {s.Milliseconds / perWhat,10:F2} {100 * s.Milliseconds / total,6:F1}%"));
        Console.WriteLine(Invariant($"{"total",-44} {"",7} {total / perWhat,10:F2}"));
    }

    static double Median(double[] xs)
    {
        var s = (double[])xs.Clone();
        Array.Sort(s);
        int n = s.Length;
        return n % 2 == 1 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
    }

    static string Invariant(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
