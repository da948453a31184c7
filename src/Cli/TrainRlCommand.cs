using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using ArcherIlgpu.Distributed;
using ArcherIlgpu.Model;
using ArcherIlgpu.Kernels;
using ArcherIlgpu.Model.IO;
using ArcherIlgpu.Model.Tokenizers;
using ArcherIlgpu.Rl.Algorithms;
using ArcherIlgpu.Rl.Tasks;
using ArcherIlgpu.Rl.Training;
using ArcherIlgpu.Runs;

namespace ArcherIlgpu.Cli;

/// <summary>
/// <c>archer train-rl --algo NAME --model DIR --task NAME</c>: RL from a model folder with one of the
/// registered algorithms. --out is a run folder: <c>run.json</c>, <c>config.json</c> (every setting a resume
/// must repeat: task, options, seed, model shape, the resolved algorithm), <c>metrics.jsonl</c> (one line per
/// step, flushed), <c>samples.jsonl</c>, <c>eval.json</c> (with --eval-problems: before and after) and
/// <c>checkpoints/step-NNNNNN/</c> (a model folder each, plus optimizer moments, state.json and, when the
/// algorithm has a KL term, reference.safetensors), saved every --save-every steps, at the end and on Ctrl-C.
/// <para>
/// <c>--resume</c> continues from the newest checkpoint: weights, AdamW moments, the trainer state (step,
/// data cursor, rollout RNG counter, skipped count) and the KL reference, with the log lines after the
/// checkpoint dropped; the same command again, a larger --steps included, continues exactly where a
/// never-interrupted run would be. Any other changed setting is refused, naming it.
/// </para>
/// </summary>
public static class TrainRlCommand
{
    public static Command Create()
    {
        var algo = new Option<string>("--algo") { Description = $"algorithm: {AlgorithmRegistry.Describe()}", Required = true };
        var preset = new Option<string>("--preset")
        {
            Description = "scale: small (16 prompts × 8 samples, lr 5e-5, responses up to 64 tokens: minutes on a CPU) or paper (the algorithm's published scale: 64 × 16, lr 1e-6, 32,768-token responses)",
            DefaultValueFactory = _ => "small",
        };
        preset.AcceptOnlyFromAmong(ScaleNames);
        var model = new Option<string>("--model") { Description = "starting model folder (config.json, model.safetensors, tokenizer), or a run folder (its newest checkpoint)", Required = true };
        var task = new Option<string>("--task") { Description = "task name (arithmetic, countdown, jsonl, ...)", Required = true };
        var taskOptions = RlCommandSupport.KeyValueOption("--task-option", "task option key=value, e.g. max_digits=2 (repeatable)");
        var steps = new Option<int>("--steps") { Description = "training steps in all, a resumed run's earlier ones included", DefaultValueFactory = _ => 100 };
        var groupSize = new Option<int?>("--group-size") { Description = "G, samples per prompt, the same as --set rl.group_size (default: the --preset's)" };
        var prompts = new Option<int?>("--prompts-per-step") { Description = "prompts per training step, the same as --set rl.prompts_per_step (default: the --preset's)" };
        var set = RlCommandSupport.KeyValueOption("--set", "algorithm setting rl.KEY=VALUE, as in the demo, e.g. rl.learning_rate=1e-4 rl.low.clip_high=0.3 (repeatable; a train-rl run folder's config.json lists every key, without rl.)");
        var seed = new Option<ulong>("--seed") { Description = "seed of the rollouts and the data order", DefaultValueFactory = _ => 1UL };
        var outDir = new Option<string?>("--out") { Description = "run folder (default runs/<algo>-<task>-seed<seed>)" };
        var micro = new Option<int>("--micro-batch") { Description = "responses per forward/backward (gradient accumulation); 0 = the whole mini-batch", DefaultValueFactory = _ => 0 };
        var sampleEvery = new Option<int>("--sample-every") { Description = "write sample completions every N steps (0 = never)", DefaultValueFactory = _ => 10 };
        var saveEvery = new Option<int?>("--save-every") { Description = "save a checkpoint every N steps (default steps / 10; 0 = only at the end)" };
        var evalProblems = new Option<int>("--eval-problems") { Description = "evaluate this many held-out problems before and after (0 = no evaluation)", DefaultValueFactory = _ => 0 };
        var resume = new Option<bool>("--resume") { Description = "continue the run in --out from its newest checkpoint (same command; --steps is the total)" };
        var problemsFile = EvalCommand.ProblemsFileOption("train on the problems of this JSONL file (countdown: {\"numbers\":[84,9,14,28],\"target\":73} a line); held-out ones are skipped");
        var overwrite = TrainingCheckpoint.OverwriteOption();
        var device = Program.DeviceOption();
        var precision = Program.PrecisionOption();
        var allowExtra = ModelLoadOption.Create();
        var command = new Command("train-rl", "Train a model with RL on a task with a verifier")
        {
            algo, preset, model, task, taskOptions, steps, groupSize, prompts, set, seed, outDir, micro, sampleEvery, saveEvery, evalProblems, resume, overwrite, problemsFile, device, precision, allowExtra,
        };
        command.WithExamples(
            "train-rl --algo archer --model runs/qwen-sft --task arithmetic --task-option min_digits=2 max_digits=2 operators=+ --steps 100 --eval-problems 100",
            "train-rl --algo 80/20 --preset paper --model MODEL_DIR --task countdown --set rl.learning_rate=1e-6");
        command.SetAction(parse => MpiJob.Run(parse.InvocationConfiguration.Error, world => CliErrors.Guard(parse, (stdout, _) => StopRequest.Handle(stdout, () => StopRequest.ResumeCommand(parse), () => Run(new Settings(
            parse.GetValue(algo)!, parse.GetValue(model)!, parse.GetValue(task)!, parse.GetValue(taskOptions) ?? [], parse.GetValue(steps),
            parse.GetValue(groupSize), parse.GetValue(prompts), parse.GetValue(set) ?? [], parse.GetValue(seed), parse.GetValue(outDir),
            parse.GetValue(micro), parse.GetValue(sampleEvery), parse.GetValue(saveEvery), parse.GetValue(evalProblems), parse.GetValue(device)!,
            parse.GetValue(resume), Overwrite: parse.GetValue(overwrite), Preset: parse.GetValue(preset)!, ProblemsFile: parse.GetValue(problemsFile),
            AllowExtraTensors: parse.GetValue(allowExtra), Precision: parse.GetValue(precision), World: world), stdout)))));
        return command;
    }

    /// <param name="SaveEvery">checkpoint every this many steps; null: steps / 10; 0: only at the end.</param>
    /// <param name="InterruptAfterStep">test hook: stop right after this step's log lines, before any save, as if killed.</param>
    /// <param name="Stop">test hook for Ctrl-C: once cancelled, the run saves after the current step and stops.</param>
    /// <param name="ProblemsFile">train on this file's problems instead of the task's stream.</param>
    public sealed record Settings(string Algo, string Model, string Task, string[] TaskOptions, int Steps, int? GroupSize, int? PromptsPerStep,
        string[] Set, ulong Seed, string? Out, int MicroBatch, int SampleEvery, int? SaveEvery, int EvalProblems, string Device,
        bool Resume = false, int? InterruptAfterStep = null, bool Overwrite = false, CancellationToken Stop = default, string Preset = "small",
        string? ProblemsFile = null, bool AllowExtraTensors = false, string? Precision = null, World? World = null);

    /// <summary>Settings a resume may change: the budget (a total), the save cadence, the evaluation and the device and its precision.</summary>
    static readonly string[] MayChange = ["--steps", "--save-every", "--eval-problems", "--device", "--precision"];
    /// <summary>Samples per problem of --eval-problems (avg@8, pass@k up to 8).</summary>
    const int EvalSamples = 8;

    /// <summary>--preset: the small scale (the default) or the algorithm's own, the paper's.</summary>
    static readonly string[] ScaleNames = ["small", "paper"];

    public static int Run(Settings s, TextWriter log)
    {
        var world = s.World ?? World.Single;
        string outDir = s.Out ?? Path.Combine("runs", $"{AlgorithmRegistry.Canonical(s.Algo) ?? s.Algo}-{s.Task}-seed{s.Seed}");
        // Rank 0 alone evaluates, writes the run folder and logs; the other ranks train the same replica into a scratch
        // folder (a resume's checkpoint read from the run folder, whichever number of ranks wrote it: its state is global).
        return MpiJob.AsReplica(world, log, (replicaLog, scratch) =>
            Train(scratch is null ? s with { Out = outDir } : s with { Out = scratch, EvalProblems = 0 }, RunFolder.At(outDir), replicaLog, world));
    }

    /// <param name="resumeFrom">the run a --resume continues: the run folder, also for the ranks that write into a scratch folder.</param>
    static int Train(Settings s, RunFolder resumeFrom, TextWriter log, World world)
    {
        // Everything the command line says is checked before the run folder is touched.
        if (s.Steps < 1) throw new RlCommandException($"--steps must be at least 1, got {s.Steps}");
        if (s.SaveEvery < 0) throw new RlCommandException($"--save-every must be >= 0, got {s.SaveEvery}");
        if (s.EvalProblems < 0) throw new RlCommandException($"--eval-problems must be >= 0, got {s.EvalProblems}");
        if (s.MicroBatch < 0) throw new RlCommandException($"--micro-batch must be >= 0 (0 = whole mini-batch), got {s.MicroBatch}");
        if (s.SampleEvery < 0) throw new RlCommandException($"--sample-every must be >= 0 (0 = never), got {s.SampleEvery}");
        TrainingCheckpoint.RequireResumeOrOverwrite(s.Resume, s.Overwrite);
        var task = RlCommandSupport.CreateTask(s.Task, s.TaskOptions);
        // Training never sees a held-out problem (the evaluation's), whether from the task's stream or a file.
        var trainTask = HeldOut.TrainingView(s.ProblemsFile is null ? task : ProblemFile.Load(task, s.ProblemsFile));
        if (trainTask is HeldOutExcludedTask { Inner: ProblemFileTask file }) log.WriteLine(HeldOut.TrainingShare(file));
        string outDir = s.Out!;
        var run = RunFolder.At(outDir);
        string startModel = ModelFolders.Resolve(s.Model);
        var startConfig = Models.LoadConfig(startModel);
        var config = ResolveConfig(s, startConfig, log);
        var replicas = MpiJob.RlReplicas(world);
        replicas?.RequireSplittable(config);
        var settings = SettingsOf(s, startConfig, config);
        int saveEvery = s.SaveEvery ?? Math.Max(1, s.Steps / 10);

        CheckpointInfo? checkpoint = null;
        TrainingState? saved = null;
        if (s.Resume)
        {
            (checkpoint, saved) = TrainingCheckpoint.Latest(resumeFrom, "train-rl");
            var savedSettings = resumeFrom.ReadSettings();
            resumeFrom.RequireSameSettings(savedSettings, settings, MayChange);
            int done = saved.Rl?.Step ?? throw new CliInputException($"{checkpoint.File(TrainingCheckpoint.StateFile)}: has no RL trainer state");
            TrainingCheckpoint.RequireStepsReach(s.Steps, done, resumeFrom.Path);
            if (done == s.Steps)
            {
                log.WriteLine($"train-rl: the run in {resumeFrom.Path} is already at step {done} of {s.Steps}; nothing to do (a larger --steps continues it)");
                return 0;
            }
        }
        else run.RequireFreshStart(s.Overwrite, "--resume");

        using var backend = Program.CreateBackend(s.Device, s.Precision);
        var (model, tokenizer) = RlCommandSupport.LoadModel(backend, checkpoint?.Path ?? startModel, task, new LoadOptions(s.AllowExtraTensors));
        using var _ = model;
        MemoryChecks.Rl(model.Config, config, s.MicroBatch, 0, $"--prompts-per-step {config.TrainBatchPrompts} × --group-size {config.GroupSize} " +
            $"(mini_batch_prompts {config.MiniBatchPrompts}, --micro-batch {s.MicroBatch}, max_response_tokens {config.MaxResponseTokens})").RequireFits(backend);
        var options = new RlTrainerOptions(Seed: s.Seed, MicroBatchResponses: s.MicroBatch, SampleEvery: s.SampleEvery);
        // The KL reference is the starting model; a resumed run reads it from the checkpoint (the weights have moved).
        float[]? reference = !RlTrainer.UsesReference(config) ? null
            : checkpoint is not null ? TrainingCheckpoint.ReadReference(checkpoint, model.Config) : model.DownloadParameters();
        using var trainer = new RlTrainer(model, tokenizer, trainTask, config, options, reference) { Replicas = replicas };
        if (saved is not null)
        {
            TrainingCheckpoint.LoadOptimizer(trainer.Optimizer, model, checkpoint!);
            trainer.Restore(saved.Rl!);
        }

        // Only now, with every input read and checked, does the run folder change.
        using var runLock = TrainingCheckpoint.Lock(run, outDir, log);
        if (saved is null) run.Begin("train-rl", runLock);
        run.WriteSettings(settings);
        log.WriteLine($"train-rl: {config.Name} on {task.Name}, {model.Config}, device {backend.Name} ({Devices.PrecisionName(backend.Precision)}), {s.Steps} steps of " +
                      $"{config.TrainBatchPrompts} prompts × {config.GroupSize} samples, checkpoints {(saveEvery == 0 ? "at the end" : $"every {saveEvery} steps")}; " +
                      (saved is null ? $"writing {outDir}" : $"resuming {outDir} after step {saved.Rl!.Step}"));
        if (replicas is not null)
            log.WriteLine($"data-parallel over {world.Size} ranks: the prompts of a step split between them (groups whole), the filter shared, gradients summed in rank order");

        var evals = new EvalFile(run.EvalPath, s.EvalProblems, saved is null);
        if (s.EvalProblems > 0)
        {
            if (saved is null) evals.Write("before", Evaluate(model, tokenizer, task, config, s, "before", log));
            else log.WriteLine("note: a resumed run evaluates only after training (the 'before' evaluation belongs to the run's start)");
        }

        var store = run.Checkpoints(TrainingCheckpoint.KeepLast);
        long savedStep = saved?.Step ?? -1;
        CheckpointInfo Save()
        {
            savedStep = trainer.StepIndex;
            return TrainingCheckpoint.Save(store, new TrainingState("rl", trainer.StepIndex) { Rl = trainer.State }, model, tokenizer, trainer.Optimizer, reference);
        }
        long? keepThrough = saved is null ? null : saved.Rl!.Step - 1;   // log lines carry the 0-based step index
        using var stop = StopRequest.Listen(s.Stop);
        using (var metrics = new JsonlWriter(run.MetricsPath, keepThrough))
        using (var samples = new JsonlWriter(run.SamplesPath, keepThrough))
        {
            while (trainer.StepIndex < s.Steps)
            {
                var r = Model.Training.TrainingDivergedException.NamingTheKey("--set rl.learning_rate", trainer.Step);
                metrics.AppendLine(MetricsJson.Line(r.Metrics));
                foreach (var sample in r.Samples) samples.AppendLine(MetricsJson.Line(sample));
                log.WriteLine(Progress(r, s.Steps));
                if (s.InterruptAfterStep is int kill && trainer.StepIndex >= kill) throw new TrainingInterruptedException(trainer.StepIndex);
                MpiJob.KillPoint(world, trainer.StepIndex);
                if (saveEvery > 0 && trainer.StepIndex % saveEvery == 0) Save();
                if (stop.IsRequested && trainer.StepIndex < s.Steps)
                    throw new RunInterruptedException(trainer.StepIndex, (savedStep == trainer.StepIndex ? store.Find(savedStep)! : Save()).Path);
            }
        }
        var final = savedStep == trainer.StepIndex ? store.Find(savedStep)! : Save();
        log.WriteLine($"saved {Path.Combine(outDir, "checkpoints", Path.GetFileName(final.Path))}; skipped optimizer steps: {trainer.SkippedOptimizerSteps}");
        if (s.EvalProblems > 0)
        {
            var after = Evaluate(model, tokenizer, task, config, s, "after", log);
            evals.Write("after", after);
            if (evals.Before is double before) log.WriteLine($"held-out avg@{after.Samples}: {before:F4} -> {after.AvgAtN:F4}");
        }
        return 0;
    }

    // ================================================================ settings of the run

    /// <summary>
    /// config.json of the run: the task, its options and the seed, the starting model's shape, the trainer
    /// options and every resolved algorithm setting (bare keys, as --set spells them).
    /// </summary>
    static Dictionary<string, string> SettingsOf(Settings s, IModelConfig startModel, AlgorithmConfig config)
    {
        var inv = CultureInfo.InvariantCulture;
        var settings = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["--task"] = s.Task,
            ["--task-option"] = string.Join(" ", NormalizedTaskOptions(s)),
            ["--seed"] = s.Seed.ToString(inv),
            ["--model"] = startModel.ToString()!,
            ["--micro-batch"] = s.MicroBatch.ToString(inv),
            ["--sample-every"] = s.SampleEvery.ToString(inv),
            ["--steps"] = s.Steps.ToString(inv),
            ["--save-every"] = s.SaveEvery is int n ? n.ToString(inv) : "(steps / 10)",
            ["--eval-problems"] = s.EvalProblems.ToString(inv),
            ["--device"] = s.Device,
            ["--precision"] = s.Precision ?? "(default)",
        };
        if (s.ProblemsFile is not null) settings["--problems-file"] = Path.GetFullPath(s.ProblemsFile);
        foreach (var (key, value) in AlgorithmOverrides.Describe(config)) settings[key] = value;
        return settings;
    }

    /// <summary>eval.json: the held-out evaluation before and after training, with what it measured.</summary>
    sealed class EvalFile(string path, int problems, bool fresh)
    {
        readonly JsonObject root = !fresh && File.Exists(path) && JsonNode.Parse(File.ReadAllText(path)) is JsonObject o ? o
            : new JsonObject { ["problems"] = problems };

        public double? Before => root["before"]?[$"avg@{EvalSamples}"]?.GetValue<double>();

        public void Write(string when, EvalResult r)
        {
            root["problems"] = problems;
            root[when] = new JsonObject(r.ToMetrics("").Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)(double.IsFinite(kv.Value) ? JsonValue.Create(kv.Value) : null))));
            AtomicFile.WriteAllText(path, root.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
        }
    }

    static IEnumerable<string> NormalizedTaskOptions(Settings s) =>
        RlCommandSupport.ParsePairs(s.TaskOptions, "--task-option").Select(kv => $"{kv.Key}={kv.Value}").Order(StringComparer.Ordinal);

    /// <summary>The algorithm at the --preset's scale, then --group-size / --prompts-per-step, then --set; then fitted to the model's context.</summary>
    public static AlgorithmConfig ResolveConfig(Settings s, IModelConfig model, TextWriter notes)
    {
        if (!ScaleNames.Contains(s.Preset)) throw new CliInputException($"--preset must be one of {string.Join(", ", ScaleNames)}, got '{s.Preset}'");
        var config = AlgorithmRegistry.Get(s.Algo, s.Preset == "paper" ? null : AlgorithmScale.Small);
        if (s.GroupSize is int g) config = config with { GroupSize = g };
        if (s.PromptsPerStep is int p) config = config with { TrainBatchPrompts = p };
        config = AlgorithmOverrides.ApplySets(config, s.Set);
        bool miniSet = s.Set.Any(item => item.StartsWith(AlgorithmOverrides.Prefix + "mini_batch_prompts=", StringComparison.Ordinal));
        if (!miniSet && config.MiniBatchPrompts > config.TrainBatchPrompts)
        {
            notes.WriteLine($"note: mini_batch_prompts {config.MiniBatchPrompts} > prompts per step {config.TrainBatchPrompts}; using {config.TrainBatchPrompts}");
            config = config with { MiniBatchPrompts = config.TrainBatchPrompts };
        }
        return FitToModel(config, model, notes);
    }

    /// <summary>Prompt and response lengths cut to the model's context (the presets' lengths are for 32k-context models).</summary>
    public static AlgorithmConfig FitToModel(AlgorithmConfig config, IModelConfig model, TextWriter notes)
    {
        if (config.MaxResponseTokens >= model.MaxT)
        {
            // The presets' lengths are for 32k-context models; keep DAPO's overlong buffer at the same share of the length.
            int fitted = model.MaxT - 1;
            int buffer = Math.Max(1, (int)Math.Round((double)config.OverlongBuffer * fitted / config.MaxResponseTokens));
            notes.WriteLine($"note: max_response_tokens {config.MaxResponseTokens} exceeds the model's context {model.MaxT}; using {fitted}" +
                            (config.OverlongShaping ? $", overlong_buffer {buffer}" : ""));
            config = config with { MaxResponseTokens = fitted, OverlongBuffer = Math.Min(buffer, fitted) };
        }
        if (config.MaxPromptTokens >= model.MaxT) config = config with { MaxPromptTokens = model.MaxT - 1 };
        return config.Validate();
    }

    static EvalResult Evaluate(CausalLm model, ITokenizer tokenizer, Rl.Tasks.ITask task, AlgorithmConfig config, Settings s, string when, TextWriter log)
    {
        var r = Evaluator.Evaluate(model, tokenizer, task, new EvalOptions(Problems: s.EvalProblems, Samples: EvalSamples, Temperature: config.EvalTemperature, Seed: s.Seed),
            config.MaxResponseTokens, config.EvalTopP);
        log.WriteLine($"eval {when}: " + string.Join(" ", r.ToMetrics().Select(kv => $"{kv.Key}={kv.Value.ToString("0.####", CultureInfo.InvariantCulture)}")));
        return r;
    }

    static string Progress(RlStepResult r, int steps)
    {
        var m = r.Metrics;
        string F(string key, string format) => m.TryGetValue(key, out var v) && double.IsFinite(v) ? v.ToString(format, CultureInfo.InvariantCulture) : "-";
        return $"step {r.Step + 1}/{steps} reward {F("reward/mean", "0.000")} kept {F("batch/kept_groups", "0")}/{F("batch/generated_groups", "0")} " +
               $"len {F("response_length/mean", "0.0")} entropy {F("entropy/all", "0.000")} loss {F("loss/total", "0.0000")} " +
               $"clip {F("clip/fraction", "0.000")} gnorm {F("optim/grad_norm", "0.00")} lr {F("optim/lr", "0.##E+0")} " +
               $"skipped {F("skipped/total", "0")} {F("time/step_s", "0.00")}s ({F("perf/rollout_tokens_per_s", "0")} gen tok/s)";
    }
}
