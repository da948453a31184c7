using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using ArcherIlgpu.Distributed;
using ArcherIlgpu.Model;
using ArcherIlgpu.Kernels;
using ArcherIlgpu.Model.IO;
using ArcherIlgpu.Model.Tokenizers;
using ArcherIlgpu.Model.Training;
using ArcherIlgpu.Rl.Tasks;
using ArcherIlgpu.Rl.Training;
using ArcherIlgpu.Runs;

namespace ArcherIlgpu.Cli.Demo;

/// <summary>Held-out numbers of one model, as the demo's table shows them.</summary>
public sealed record EvalSummary(double PassAt1, int K, double PassAtK, double Greedy, double MeanLength, double Entropy)
{
    public static EvalSummary From(EvalResult r) => new(r.PassAtK[1], r.Samples, r.PassAtK[r.Samples], r.GreedyAccuracy, r.MeanResponseLength, r.MeanEntropy);

    public JsonObject ToJson() => new()
    {
        ["pass@1"] = Finite(PassAt1), [$"pass@{K}"] = Finite(PassAtK), ["greedy"] = Finite(Greedy),
        ["response_length"] = Finite(MeanLength), ["entropy"] = Finite(Entropy),
    };

    public static EvalSummary FromJson(JsonObject o, int k) => new(Get(o, "pass@1"), k, Get(o, $"pass@{k}"), Get(o, "greedy"),
        Get(o, "response_length"), Get(o, "entropy"));

    public IEnumerable<KeyValuePair<string, double>> ToMetrics() =>
    [
        new("eval/pass@1", PassAt1), new($"eval/pass@{K}", PassAtK), new("eval/greedy", Greedy),
        new("eval/response_length", MeanLength), new("eval/entropy", Entropy),
    ];

    static JsonNode? Finite(double v) => double.IsFinite(v) ? JsonValue.Create(v) : null;
    static double Get(JsonObject o, string key) => o[key] is JsonValue v && v.TryGetValue<double>(out var d) ? d : double.NaN;
}

/// <summary>Thrown by <see cref="DemoJob.InterruptAfterStep"/>: the job stopped as if killed after this step.</summary>
public sealed class DemoInterruptedException(long step) : Exception($"interrupted after step {step}")
{
    public long Step { get; } = step;
}

/// <summary>What a finished demo run produced.</summary>
public sealed record DemoOutcome(RunFolder Run, EvalSummary Sft, EvalSummary Rl, string Algorithm, TimeSpan Elapsed, string Device);

/// <summary>
/// The main job: generate the task's SFT data, SFT a fresh model, evaluate it, run the RL algorithm,
/// evaluate again, and write the run folder (config, metrics, samples, checkpoints, eval, plots, summary).
/// <para>
/// Steps are numbered across the run: SFT steps 1..S, RL steps S+1..S+R, so metrics.jsonl is one series
/// and a resume truncates it at one number. Checkpoints are written every <see cref="RunConfig.CheckpointEvery"/>
/// steps; the one at step S is written after the SFT evaluation and the one at S+R after the final
/// evaluation, so a resumed run never repeats an evaluation line it already logged.
/// </para>
/// </summary>
public sealed class DemoJob
{
    /// <summary>SFT data and RL problems come from streams the evaluation never uses.</summary>
    const long SftDataSeedOffset = 0x5F7_DA7A;

    readonly RunConfig config;
    readonly RunFolder run;
    readonly TextWriter log;
    readonly bool interactive;
    readonly Stopwatch clock = Stopwatch.StartNew();

    public DemoJob(RunConfig config, RunFolder run, TextWriter log, bool interactive)
    {
        this.config = config;
        this.run = run;
        this.log = log;
        this.interactive = interactive;
    }

    /// <summary>
    /// Stop right after this (global) step's metrics line is written, as if the process were killed there:
    /// no further checkpoint, evaluation or summary (tests of resume use it).
    /// </summary>
    public long? InterruptAfterStep { get; init; }

    /// <summary>Test hook for Ctrl-C: once cancelled, the job saves a checkpoint after the current step and stops.</summary>
    public CancellationToken Stop { get; init; }

    /// <summary>Under mpirun: this rank's place; every step's batch is split between the ranks (one process: <see cref="World.Single"/>).</summary>
    public World World { get; init; } = World.Single;

    /// <summary>The run whose newest checkpoint a resume continues: the run folder itself, or rank 0's for a rank that writes into a scratch folder.</summary>
    public RunFolder? ResumeFrom { get; init; }

    void MaybeInterrupt(long step)
    {
        if (InterruptAfterStep is long stop && step >= stop) throw new DemoInterruptedException(step);
    }

    public DemoOutcome Run()
    {
        var task = config.CreateTask();
        if (task.Count is long n && n <= 0) throw new CliInputException($"task '{config.Task.Name}' has no examples (empty dataset)");
        Evaluator.HeldOut(task, config.Eval.Problems);   // fails before any training when the task holds out too few problems
        var trainTask = HeldOut.TrainingView(task);
        var store = run.Checkpoints(config.KeepCheckpoints);
        var latest = (ResumeFrom ?? run).Checkpoints(config.KeepCheckpoints).Latest();
        var state = latest is null ? null : ReadState(latest);
        using var stop = StopRequest.Listen(Stop);

        using var backend = Program.CreateBackend(config.Device, config.Precision);
        ITokenizer tokenizer;
        CausalLm model;
        if (latest is null)
        {
            tokenizer = CharTokenizer.ForArithmetic();
            var shape = Models.Preset(config.Model.Preset).WithVocabSize(tokenizer.VocabSize);
            model = Models.Create(backend, shape, unchecked((int)config.Seed));
        }
        else
        {
            tokenizer = TokenizerFiles.Load(latest.Path);
            model = Checkpoint.Load(backend, latest.Path);
            log.WriteLine($"resuming {run.Path} from checkpoint step {latest.Step} ({state!.Phase})");
        }
        using var _ = model;
        int S = config.Sft.Steps, R = config.Rl.Steps;
        long resumeStep = latest?.Step ?? 0;
        if (state is not null && state.Phase == "sft" && state.SftStep > S)
            throw new CliInputException($"the checkpoint is at SFT step {state.SftStep} but sft.steps is {S}; resume with sft.steps >= {state.SftStep}");

        var algorithm = TrainRlCommand.FitToModel(config.Algorithm(), model.Config, TextWriter.Null);
        log.WriteLine($"demo: {config.Task.Name} ({string.Join(" ", config.Task.Options)}), '{config.Model.Preset}' {model.Config} " +
                      $"({model.ParameterCount / 1e6:F2}M parameters) on {backend.Name}");
        log.WriteLine($"plan: SFT {S} steps of {config.Sft.BatchSize}, evaluate, {algorithm.Name} {R} steps of {algorithm.TrainBatchPrompts} prompts × " +
                      $"{algorithm.GroupSize} samples, evaluate ({config.Eval.Problems} held-out problems × {config.Eval.Samples} samples at temperature " +
                      $"{config.Eval.Temperature.ToString("0.##", CultureInfo.InvariantCulture)})");
        log.WriteLine($"run folder: {DemoCommand.RelativeOrFull(run.Path)}");
        if (World.IsDistributed) log.WriteLine($"data-parallel over {World.Size} ranks: each step's SFT examples and RL prompts split between them, gradients summed in rank order");

        using var metrics = run.OpenMetrics(resumeStep);
        using var samples = run.OpenSamples(resumeStep);

        EvalSummary? sftEval = state?.SftEval is JsonObject se ? EvalSummary.FromJson(se, config.Eval.Samples) : null;
        EvalSummary? rlEval = state?.RlEval is JsonObject re ? EvalSummary.FromJson(re, config.Eval.Samples) : null;

        // ---------------------------------------------------------------- SFT
        if (state is null || state.Phase == "sft")
        {
            var examples = SftExamples(trainTask, tokenizer, model.Config.MaxT);
            var options = new SftOptions(Steps: S, BatchSize: config.Sft.BatchSize, Lr: (float)config.Sft.LearningRate,
                WarmupSteps: config.Sft.WarmupSteps, EvalEvery: Math.Max(1, S));
            using var sft = new SftTrainer(model, examples, [], tokenizer.EndOfText, options, step => SftBatch(examples, step));
            MpiJob.ShareSteps(World, sft);
            if (state is not null)
            {
                TrainingCheckpoint.LoadOptimizer(sft.Trainer.Optimizer, model, latest!);
                sft.ResumeAt(state.SftStep);
            }
            TrainingDivergedException.NamingTheKey("sft.learning_rate", () => RunSft(sft, tokenizer, metrics, store, stop));
            sftEval = Evaluate(model, tokenizer, task, algorithm.MaxResponseTokens, "SFT model");
            metrics.Write(S, sftEval.ToMetrics());
            WriteEval(sftEval, null);
            if (R == 0) rlEval = sftEval;
            TrainingCheckpoint.Save(store, new TrainingState(R == 0 ? "done" : "rl", S) { SftStep = S, SftEval = sftEval.ToJson(), RlEval = R == 0 ? sftEval.ToJson() : null },
                model, tokenizer, sft.Trainer.Optimizer);
        }

        // ---------------------------------------------------------------- RL
        // A finished run resumed with a larger rl.steps continues training from its last step.
        if (R > 0 && (state?.Phase != "done" || state.Rl is { } done && done.Step < R))
        {
            float[]? reference = state?.Phase is "rl" or "done" && File.Exists(latest!.File(TrainingCheckpoint.ReferenceFile))
                ? TrainingCheckpoint.ReadReference(latest, model.Config) : null;
            using var trainer = new RlTrainer(model, tokenizer, trainTask, algorithm,
                new RlTrainerOptions(Seed: config.Seed, SampleEvery: config.Rl.SampleEvery), reference) { Replicas = MpiJob.RlReplicas(World) };
            reference ??= model.DownloadParameters();
            if (state?.Phase is "rl" or "done" && state.Rl is not null)
            {
                TrainingCheckpoint.LoadOptimizer(trainer.Optimizer, model, latest!);
                trainer.Restore(state.Rl);
            }
            var progress = new ProgressReporter(R, $"{algorithm.Name} step", log, interactive, startStep: trainer.StepIndex);
            while (trainer.StepIndex < R)
            {
                var r = TrainingDivergedException.NamingTheKey("rl.learning_rate", trainer.Step);
                long global = S + trainer.StepIndex;
                metrics.Write(global, r.Metrics.Append(new("rl/step", trainer.StepIndex)));
                foreach (var sample in r.Samples) samples.AppendLine(MetricsJson.Line(sample with { Step = (int)global }));
                progress.Report(trainer.StepIndex, ProgressFields(r.Metrics));
                MaybeInterrupt(global);
                if (trainer.StepIndex < R && (trainer.StepIndex % config.CheckpointEvery == 0 || stop.IsRequested))
                {
                    var saved = TrainingCheckpoint.Save(store, new TrainingState("rl", global) { SftStep = S, Rl = trainer.State, SftEval = sftEval!.ToJson() },
                        model, tokenizer, trainer.Optimizer, reference);
                    if (stop.IsRequested) throw new RunInterruptedException(global, saved.Path);
                }
            }
            progress.Complete($"{algorithm.Name}: {R} steps done, skipped optimizer steps: {trainer.SkippedOptimizerSteps}");
            rlEval = Evaluate(model, tokenizer, task, algorithm.MaxResponseTokens, $"{algorithm.Name} model");
            metrics.Write(S + R, rlEval.ToMetrics());
            WriteEval(sftEval!, rlEval);
            TrainingCheckpoint.Save(store, new TrainingState("done", S + R) { SftStep = S, Rl = trainer.State, SftEval = sftEval!.ToJson(), RlEval = rlEval.ToJson() },
                model, tokenizer, trainer.Optimizer, reference);
        }

        RunPlots.Write(run.Path);
        var outcome = new DemoOutcome(run, sftEval!, rlEval!, algorithm.Name, clock.Elapsed, backend.Name);
        run.WriteSummary(Summary(outcome));
        return outcome;
    }

    // ==================================================================== SFT

    /// <summary>The task's first sft.examples training problems with their worked solutions (or answers).</summary>
    List<SftExample> SftExamples(ITask task, ITokenizer tokenizer, int maxT)
    {
        long seed = unchecked((long)config.Seed + SftDataSeedOffset);
        var list = new List<SftExample>(config.Sft.Examples);
        long count = task.Count is long n ? Math.Min(n, config.Sft.Examples) : config.Sft.Examples;
        for (long i = 0; i < count; i++)
        {
            var e = task.Generate(seed, i);
            string source = $"task '{task.Name}' example {i} (prompt \"{e.Prompt}\")";
            try { list.Add(SftData.Tokenize(e.Prompt, Demonstration(e, seed, i), tokenizer, maxT, source)); }
            catch (ArgumentException ex) { throw new CliInputException($"{source}: {ex.Message}"); }
        }
        return list;
    }

    /// <summary>The worked solution, or with probability 1 − sft.correct_share an integer answer off by one (seeded per example).</summary>
    string Demonstration(TaskExample e, long seed, long index)
    {
        string right = e.Solution ?? e.Answer;
        if (config.Sft.CorrectShare >= 1 || !long.TryParse(e.Answer, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long answer)) return right;
        var rng = TaskRandom.For(unchecked(seed ^ 0x50_770), index);
        if (rng.NextDouble() < config.Sft.CorrectShare) return right;
        return (answer + (rng.Next(2) == 0 ? -1 : 1)).ToString(CultureInfo.InvariantCulture);
    }

    void RunSft(SftTrainer sft, ITokenizer tokenizer, MetricsWriter metrics, CheckpointStore store, StopRequest stop)
    {
        int S = config.Sft.Steps;
        if (sft.Trainer.StepsTaken >= S) return;
        var progress = new ProgressReporter(S, "sft step", log, interactive, startStep: sft.Trainer.StepsTaken);
        double lastLoss = double.NaN;
        sft.Run(m =>
        {
            lastLoss = m.Loss;
            metrics.Write(m.Step, new Dictionary<string, double> { ["sft/loss"] = m.Loss, ["sft/grad_norm"] = m.GradNorm, ["sft/lr"] = m.Lr, ["sft/skipped"] = m.Skipped ? 1 : 0 });
            progress.Report(m.Step, [new("loss", m.Loss), new("lr", m.Lr)]);
            MaybeInterrupt(m.Step);
            if (m.Step < S && (m.Step % config.CheckpointEvery == 0 || stop.IsRequested))
            {
                var saved = TrainingCheckpoint.Save(store, new TrainingState("sft", m.Step) { SftStep = m.Step }, sft.Trainer.Model, tokenizer, sft.Trainer.Optimizer);
                if (stop.IsRequested) throw new RunInterruptedException(m.Step, saved.Path);
            }
        });
        progress.Complete(string.Create(CultureInfo.InvariantCulture, $"SFT: {S} steps done, last loss {lastLoss:F4}, skipped steps {sft.Trainer.Optimizer.SkippedSteps}"));
    }

    /// <summary>The examples of SFT step <paramref name="step"/>: a seeded permutation per epoch, so any step can be reproduced on resume.</summary>
    List<SftExample> SftBatch(List<SftExample> examples, int step)
    {
        int b = config.Sft.BatchSize, n = examples.Count;
        var batch = new List<SftExample>(b);
        long first = (long)step * b;
        long epoch = -1;
        int[] order = [];
        for (long p = first; p < first + b; p++)
        {
            if (p / n != epoch)
            {
                epoch = p / n;
                order = Enumerable.Range(0, n).ToArray();
                TaskRandom.For(unchecked((long)config.Seed * 7919 + 17), epoch).Shuffle(order);
            }
            batch.Add(examples[order[p % n]]);
        }
        return batch;
    }

    // ==================================================================== evaluation

    EvalSummary Evaluate(CausalLm model, ITokenizer tokenizer, ITask task, int maxResponseTokens, string what)
    {
        var started = clock.Elapsed;
        log.WriteLine($"evaluating the {what}: {config.Eval.Problems} held-out problems × {config.Eval.Samples} samples ...");
        var options = new EvalOptions(Problems: config.Eval.Problems, Samples: config.Eval.Samples, Temperature: config.Eval.Temperature, Seed: config.Seed);
        var r = EvalSummary.From(Evaluator.Evaluate(model, tokenizer, task, options, maxResponseTokens));
        log.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"  pass@1 {r.PassAt1:0.000}  pass@{r.K} {r.PassAtK:0.000}  greedy {r.Greedy:0.000}  length {r.MeanLength:0.00}  entropy {r.Entropy:0.000}  ({(clock.Elapsed - started).TotalSeconds:F0}s)"));
        return r;
    }

    void WriteEval(EvalSummary sft, EvalSummary? rl)
    {
        var o = new JsonObject { ["problems"] = config.Eval.Problems, ["samples"] = config.Eval.Samples, ["temperature"] = config.Eval.Temperature, ["sft"] = sft.ToJson() };
        if (rl is not null) o[config.Rl.Algorithm] = rl.ToJson();
        Runs.AtomicFile.WriteAllText(run.EvalPath, o.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
    }

    // ==================================================================== checkpoints

    static TrainingState ReadState(CheckpointInfo checkpoint)
    {
        var state = TrainingCheckpoint.ReadState(checkpoint);
        if (state.Phase is not ("sft" or "rl" or "done"))
            throw new CliInputException($"{checkpoint.File(TrainingCheckpoint.StateFile)}: phase is '{state.Phase}', expected sft, rl or done (not a demo checkpoint?)");
        return state;
    }

    // ==================================================================== output

    static IEnumerable<KeyValuePair<string, double>> ProgressFields(IReadOnlyDictionary<string, double> m)
    {
        foreach (var (key, label) in new[] { ("reward/mean", "reward"), ("entropy/all", "entropy"), ("clip/fraction", "clip"), ("response_length/mean", "len") })
            if (m.TryGetValue(key, out var v)) yield return new(label, v);
    }

    /// <summary>The SFT-vs-RL table (plain text, also valid markdown).</summary>
    public static string Table(EvalSummary sft, EvalSummary rl, string algorithm)
    {
        var inv = CultureInfo.InvariantCulture;
        var rows = new (string Name, double A, double B, string Format)[]
        {
            ("pass@1", sft.PassAt1, rl.PassAt1, "0.000"),
            ($"pass@{sft.K}", sft.PassAtK, rl.PassAtK, "0.000"),
            ("greedy accuracy", sft.Greedy, rl.Greedy, "0.000"),
            ("mean response length (tokens)", sft.MeanLength, rl.MeanLength, "0.00"),
            ("mean token entropy (nats)", sft.Entropy, rl.Entropy, "0.000"),
        };
        var sb = new StringBuilder();
        sb.Append($"| {"held-out metric",-30} | {"SFT",7} | {algorithm,7} |\n");
        sb.Append($"|{new string('-', 32)}|{new string('-', 9)}|{new string('-', 9)}|\n");
        foreach (var (name, a, b, f) in rows)
            sb.Append($"| {name,-30} | {a.ToString(f, inv),7} | {b.ToString(f, inv),7} |\n");
        return sb.ToString();
    }

    string Summary(DemoOutcome o)
    {
        var sb = new StringBuilder();
        sb.Append($"# {run.Name}\n\n");
        sb.Append($"SFT then {o.Algorithm} on `{config.Task.Name}` ({string.Join(", ", config.Task.Options)}), model preset `{config.Model.Preset}`, device `{o.Device}`, seed {config.Seed}.\n");
        sb.Append($"Held-out: {config.Eval.Problems} problems never used in training, {config.Eval.Samples} samples each at temperature " +
                  $"{config.Eval.Temperature.ToString("0.##", CultureInfo.InvariantCulture)} (pass@k unbiased), plus one greedy answer.\n\n");
        sb.Append(Table(o.Sft, o.Rl, o.Algorithm)).Append('\n');
        sb.Append("| file | what |\n|---|---|\n");
        sb.Append("| config.json | the resolved config (`archer demo --config config.json` repeats the run) |\n");
        sb.Append($"| metrics.jsonl | one line per step: SFT steps 1..{config.Sft.Steps}, {o.Algorithm} steps {config.Sft.Steps + 1}..{config.Sft.Steps + config.Rl.Steps}; eval/* at the end of each phase |\n");
        sb.Append("| samples.jsonl | sampled completions with their rewards during RL |\n");
        sb.Append("| eval.json | the numbers of the table |\n");
        sb.Append("| checkpoints/ | step-NNNNNN/: model.safetensors, config.json, tokenizer, optimizer moments, state.json (phase, step, data cursor, RNG), reference weights |\n");
        sb.Append("| plots/ | " + string.Join(", ", Directory.Exists(run.PlotsDir) ? Directory.GetFiles(run.PlotsDir, "*.svg").Select(Path.GetFileName).Order() : []) + " |\n");
        return sb.ToString();
    }
}
