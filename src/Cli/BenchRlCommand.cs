using System.CommandLine;
using System.Numerics;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using ArcherIlgpu.Kernels;
using ArcherIlgpu.Model;
using ArcherIlgpu.Model.Tokenizers;
using ArcherIlgpu.Rl.Algorithms;
using ArcherIlgpu.Rl.Tasks;
using ArcherIlgpu.Rl.Training;

namespace ArcherIlgpu.Cli;

/// <summary>
/// <c>archer bench rl</c>: RL steps of an algorithm on Countdown's step form (rollouts, old and reference
/// log-probs, the update) from a random model, timed by phase: rollout tokens/s, update tokens/s and the
/// update's GFLOP/s against the CPU's FMA peak, which is measured here (all cores running independent fused
/// multiply-add chains on the widest vectors the CPU has). Groups are never filtered, so every step updates.
/// </summary>
public static partial class BenchCommand
{
    /// <summary>The longest step-form prompt ("99 99 99 99>100:"), for the padded sequence length.</summary>
    const int LongestCountdownPrompt = 16;

    static Command CreateRl()
    {
        var preset = new Option<string>("--preset") { Description = $"model shape: {string.Join(", ", Models.PresetNames)}", DefaultValueFactory = _ => "countdown-3m" };
        var algo = new Option<string>("--algo") { Description = $"algorithm: {string.Join(", ", AlgorithmRegistry.Names)}", DefaultValueFactory = _ => "grpo" };
        var prompts = new Option<int>("--prompts") { Description = "prompts per step", DefaultValueFactory = _ => 16 };
        var group = new Option<int>("--group-size") { Description = "samples per prompt", DefaultValueFactory = _ => 8 };
        var response = new Option<int>("--max-response-tokens") { Description = "most tokens per answer", DefaultValueFactory = _ => 32 };
        var steps = new Option<int>("--steps") { Description = "timed steps", DefaultValueFactory = _ => 3 };
        var warmup = new Option<int>("--warmup") { Description = "untimed steps first", DefaultValueFactory = _ => 1 };
        var device = Program.DeviceOption();
        var precision = Program.PrecisionOption();
        var profile = ProfileOption();
        var command = new Command("rl", "Time RL steps by phase (rollouts, log-probs, update) on Countdown, with GFLOP/s against the CPU's FMA peak")
            { preset, algo, prompts, group, response, steps, warmup, device, precision, profile };
        command.WithExamples("bench rl --preset countdown-3m --algo grpo --device cpu");
        command.SetAction(parse => CliErrors.Guard(parse, (stdout, _) =>
        {
            int nSteps = parse.GetValue(steps), nWarmup = parse.GetValue(warmup);
            if (nSteps < 1 || nWarmup < 0) throw new CliInputException($"need --steps >= 1 and --warmup >= 0, got {nSteps} and {nWarmup}");
            var tokenizer = CharTokenizer.ForArithmetic();
            var shape = Models.Preset(parse.GetValue(preset)!).WithVocabSize(tokenizer.VocabSize);
            var config = (AlgorithmRegistry.Get(parse.GetValue(algo)!) with
            {
                TrainBatchPrompts = parse.GetValue(prompts), MiniBatchPrompts = parse.GetValue(prompts), GroupSize = parse.GetValue(group),
                MaxResponseTokens = Math.Min(parse.GetValue(response), shape.MaxT - LongestCountdownPrompt), MaxPromptTokens = LongestCountdownPrompt,
                Filter = GroupFilterMode.None,
            }).Validate();
            using var inner = Program.CreateBackend(parse.GetValue(device), parse.GetValue(precision));
            var profiler = parse.GetValue(profile) ? new ProfilingBackend(inner) { Enabled = false } : null;
            return RunRl(profiler ?? inner, inner, profiler, parse.GetValue(preset)!, shape, config, nSteps, nWarmup, stdout);
        }));
        return command;
    }

    static int RunRl(Backend be, Backend inner, ProfilingBackend? profiler, string presetName, IModelConfig shape, AlgorithmConfig config,
        int nSteps, int nWarmup, TextWriter log)
    {
        log.WriteLine($"bench rl: {config.Name} on countdown (format=steps), {presetName} ({shape}), {config.TrainBatchPrompts} prompts × {config.GroupSize} samples, " +
                      $"up to {config.MaxResponseTokens} response tokens, on {inner.Name} ({inner.Description}, {Devices.PrecisionName(inner.Precision)} matmuls)");
        using var model = Models.Create(be, shape, seed: 1337);
        var task = HeldOut.TrainingView(new CountdownTask(CountdownOptions.Steps));
        using var trainer = new RlTrainer(model, CharTokenizer.ForArithmetic(), task, config, new RlTrainerOptions(Seed: 1, SampleEvery: 0));
        int passes = config.LowProbabilityIsolation ? 2 : 1;
        int rows = config.TrainBatchPrompts * config.GroupSize;
        var transfers = new TransferCounts();
        int optimizerSteps = 0;
        double rolloutTokens = 0, rolloutS = 0, logProbS = 0, updateS = 0, updateTokens = 0, updateFlops = 0, logProbFlops = 0;
        for (int step = 0; step < nWarmup + nSteps; step++)
        {
            if (step == nWarmup && profiler is not null) profiler.Enabled = true;
            var transfersBefore = inner.Transfers;
            var m = trainer.Step().Metrics;
            var stepTransfers = inner.Transfers - transfersBefore;
            // The trainer pads rows to the longest prompt + response; the FLOPs are those of that padded shape.
            int T = LongestCountdownPrompt + (int)m["response_length/max"] - 1;
            double pass = TrainingFlops(shape, model.ParameterCount, rows, T);
            log.WriteLine(Invariant($"step {step,2}{(step < nWarmup ? " (warm-up)" : "")}: rollout {m["time/rollout_s"] * 1e3,8:F1} ms  log-probs {m["time/logprob_s"] * 1e3,8:F1} ms  update {m["time/update_s"] * 1e3,8:F1} ms  response length {m["response_length/mean"]:F1}"));
            if (step < nWarmup) continue;
            transfers += stepTransfers; optimizerSteps += (int)m["optim/steps"];
            rolloutTokens += m["response_length/mean"] * rows; rolloutS += m["time/rollout_s"];
            logProbS += m["time/logprob_s"]; updateS += m["time/update_s"];
            updateTokens += m["perf/update_tokens_per_s"] * m["time/update_s"];
            updateFlops += pass * passes * config.PpoEpochs;
            logProbFlops += pass / 3 * (RlTrainer.UsesReference(config) ? 2 : 1);   // forward only: old (and reference) log-probs
        }
        double peak = inner.Name == "cpu" ? MeasureFmaPeak() : double.NaN;
        string Share(double flopsPerS) => double.IsNaN(peak) ? "" : Invariant($" = {100 * flopsPerS / peak:F0}% of the FMA peak");
        log.WriteLine();
        log.WriteLine(Invariant($"rollouts          {rolloutTokens / rolloutS:F0} generated tokens/s"));
        log.WriteLine(Invariant($"log-probs         {logProbFlops / logProbS / 1e9:F1} GFLOP/s{Share(logProbFlops / logProbS)}"));
        log.WriteLine(Invariant($"update            {updateTokens / updateS:F0} response tokens/s, {updateFlops / updateS / 1e9:F1} GFLOP/s{Share(updateFlops / updateS)} (6·params·B·T + attention at the padded shape, × {passes} pass(es) × {config.PpoEpochs} epochs)"));
        if (!double.IsNaN(peak))
            log.WriteLine(Invariant($"FMA peak          {peak / 1e9:F1} GFLOP/s measured ({Environment.ProcessorCount} threads of independent {VectorName()} FMA chains)"));
        PrintTransfers(log, transfers, optimizerSteps, "optimizer step");
        log.WriteLine(Invariant($"RESULT preset={presetName} algo={config.Name} device={inner.Name} rows={rows} rollout_tok_per_s={rolloutTokens / rolloutS:F1} update_tok_per_s={updateTokens / updateS:F1} update_gflops={updateFlops / updateS / 1e9:F2} logprob_gflops={logProbFlops / logProbS / 1e9:F2} fma_peak_gflops={peak / 1e9:F2} {transfers.PerUnit(optimizerSteps)}"));
        if (profiler is not null) PrintProfile(profiler, nSteps);
        return 0;
    }

    static string VectorName() => Avx512F.IsSupported ? "512-bit" : Fma.IsSupported ? "256-bit" : "portable (no FMA instruction: multiply + add)";

    /// <summary>
    /// FLOP/s of fused multiply-adds on every core: 10 independent accumulators per thread hide the FMA latency.
    /// The best of 5 runs, since other processes can only slow a run down.
    /// </summary>
    static double MeasureFmaPeak()
    {
        const int Iterations = 10_000_000;
        int threads = Environment.ProcessorCount;
        int lanes = Avx512F.IsSupported ? 16 : Fma.IsSupported ? 8 : Vector<float>.Count;
        double best = 0;
        var sink = new float[threads];   // keeps the chains' results alive
        for (int run = 0; run < 5; run++)
        {
            long start = System.Diagnostics.Stopwatch.GetTimestamp();
            Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t => sink[t] = Kernel(Iterations));
            double seconds = System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalSeconds;
            best = Math.Max(best, (double)threads * Iterations * 10 * lanes * 2 / seconds);
        }
        return best;
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    static float Kernel(int iterations)
    {
        if (Avx512F.IsSupported)
        {
            Vector512<float> m = Vector512.Create(0.999999f), c = Vector512.Create(1e-7f);
            Vector512<float> a0 = Vector512.Create(1f), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0, a9 = a0;
            for (int i = 0; i < iterations; i++)
            {
                a0 = Avx512F.FusedMultiplyAdd(a0, m, c); a1 = Avx512F.FusedMultiplyAdd(a1, m, c); a2 = Avx512F.FusedMultiplyAdd(a2, m, c);
                a3 = Avx512F.FusedMultiplyAdd(a3, m, c); a4 = Avx512F.FusedMultiplyAdd(a4, m, c); a5 = Avx512F.FusedMultiplyAdd(a5, m, c);
                a6 = Avx512F.FusedMultiplyAdd(a6, m, c); a7 = Avx512F.FusedMultiplyAdd(a7, m, c); a8 = Avx512F.FusedMultiplyAdd(a8, m, c);
                a9 = Avx512F.FusedMultiplyAdd(a9, m, c);
            }
            return Vector512.Sum(a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9);
        }
        if (Fma.IsSupported)
        {
            Vector256<float> m = Vector256.Create(0.999999f), c = Vector256.Create(1e-7f);
            Vector256<float> a0 = Vector256.Create(1f), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0, a9 = a0;
            for (int i = 0; i < iterations; i++)
            {
                a0 = Fma.MultiplyAdd(a0, m, c); a1 = Fma.MultiplyAdd(a1, m, c); a2 = Fma.MultiplyAdd(a2, m, c); a3 = Fma.MultiplyAdd(a3, m, c);
                a4 = Fma.MultiplyAdd(a4, m, c); a5 = Fma.MultiplyAdd(a5, m, c); a6 = Fma.MultiplyAdd(a6, m, c); a7 = Fma.MultiplyAdd(a7, m, c);
                a8 = Fma.MultiplyAdd(a8, m, c); a9 = Fma.MultiplyAdd(a9, m, c);
            }
            return Vector256.Sum(a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9);
        }
        Vector<float> pm = new(0.999999f), pc = new(1e-7f);
        Vector<float> p0 = Vector<float>.One, p1 = p0, p2 = p0, p3 = p0, p4 = p0, p5 = p0, p6 = p0, p7 = p0, p8 = p0, p9 = p0;
        for (int i = 0; i < iterations; i++)
        {
            p0 = p0 * pm + pc; p1 = p1 * pm + pc; p2 = p2 * pm + pc; p3 = p3 * pm + pc; p4 = p4 * pm + pc;
            p5 = p5 * pm + pc; p6 = p6 * pm + pc; p7 = p7 * pm + pc; p8 = p8 * pm + pc; p9 = p9 * pm + pc;
        }
        return Vector.Sum(p0 + p1 + p2 + p3 + p4 + p5 + p6 + p7 + p8 + p9);
    }
}
