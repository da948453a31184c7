using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using ArcherIlgpu.Model;
using ArcherIlgpu.Kernels;
using ArcherIlgpu.Model.IO;
using ArcherIlgpu.Model.Tokenizers;
using ArcherIlgpu.Rl.Algorithms;
using ArcherIlgpu.Rl.Tasks;
using ArcherIlgpu.Rl.Training;

namespace ArcherIlgpu.Cli;

/// <summary>
/// <c>archer train-rl --algo NAME --model DIR --task NAME</c>: RL from a model folder with one of the
/// registered algorithms. Writes into --out: <c>model/</c> (weights, tokenizer, optimizer moments,
/// trainer_state.json), <c>metrics.jsonl</c> (one line per step, flushed), <c>samples.jsonl</c>,
/// <c>algorithm.txt</c> (every resolved setting), <c>command.json</c> (the task, its options and the seed)
/// and, when the algorithm has a KL term, <c>reference.safetensors</c> (the starting weights, the KL
/// reference, written once).
/// <para>
/// <c>--resume</c> continues the run in --out from its last save (every --save-every steps, and at the
/// end): weights, AdamW moments and step, the trainer state (step, data cursor, rollout RNG counter,
/// skipped count) and the KL reference, with the log lines after the save dropped; the same command
/// again, a larger --steps included, continues exactly where a never-interrupted run would be. It refuses
/// a command whose algorithm settings, task or seed differ from the run's.
/// </para>
/// </summary>
public static class TrainRlCommand
{
    const string ModelFolder = "model";
    const string StateFile = "trainer_state.json";
    const string AlgorithmFile = "algorithm.txt";
    const string CommandFile = "command.json";
    const string ReferenceFile = "reference.safetensors";

    public static Command Create()
    {
        var algo = new Option<string>("--algo") { Description = $"algorithm: {string.Join(", ", AlgorithmRegistry.Names)}", Required = true };
        var model = new Option<string>("--model") { Description = "starting model folder (config.json, model.safetensors, tokenizer)", Required = true };
        var task = new Option<string>("--task") { Description = "task name (arithmetic, countdown, jsonl, ...)", Required = true };
        var taskOptions = RlCommandSupport.KeyValueOption("--task-option", "task option key=value, e.g. max_digits=2 (repeatable)");
        var steps = new Option<int>("--steps") { Description = "training steps in all, a resumed run's earlier ones included (default 100)", DefaultValueFactory = _ => 100 };
        var groupSize = new Option<int?>("--group-size") { Description = "G, samples per prompt (default: the algorithm's)" };
        var prompts = new Option<int?>("--prompts-per-step") { Description = "prompts per training step (default: the algorithm's)" };
        var set = RlCommandSupport.KeyValueOption("--set", "algorithm setting key=value, e.g. learning_rate=1e-4 low.clip_high=0.3 (repeatable)");
        var seed = new Option<ulong>("--seed") { Description = "seed of the rollouts and the data order (default 1)", DefaultValueFactory = _ => 1UL };
        var outDir = new Option<string?>("--out") { Description = "run folder (default runs/<algo>-<task>-seed<seed>)" };
        var micro = new Option<int>("--micro-batch") { Description = "responses per forward/backward (gradient accumulation); 0 = whole mini-batch (default)" };
        var sampleEvery = new Option<int>("--sample-every") { Description = "write sample completions every N steps (default 10; 0 = never)", DefaultValueFactory = _ => 10 };
        var saveEvery = new Option<int>("--save-every") { Description = "also save the model every N steps (default 0 = only at the end)" };
        var evalProblems = new Option<int>("--eval-problems") { Description = "evaluate this many held-out problems before and after (default 0 = no evaluation)" };
        var problemsFile = EvalCommand.ProblemsFileOption("train on the problems of this JSONL file (countdown: {\"numbers\":[84,9,14,28],\"target\":73} a line); held-out ones are skipped");
        var resume = new Option<bool>("--resume") { Description = "continue the run in --out from its last save (same command; --steps is the total)" };
        var device = Program.DeviceOption();
        var command = new Command("train-rl", "Train a model with RL on a task with a verifier")
        {
            algo, model, task, taskOptions, steps, groupSize, prompts, set, seed, outDir, micro, sampleEvery, saveEvery, evalProblems, resume, problemsFile, device,
        };
        command.SetAction(parse => CliErrors.Guard(parse, (stdout, _) => Run(new Settings(
            parse.GetValue(algo)!, parse.GetValue(model)!, parse.GetValue(task)!, parse.GetValue(taskOptions) ?? [], parse.GetValue(steps),
            parse.GetValue(groupSize), parse.GetValue(prompts), parse.GetValue(set) ?? [], parse.GetValue(seed), parse.GetValue(outDir),
            parse.GetValue(micro), parse.GetValue(sampleEvery), parse.GetValue(saveEvery), parse.GetValue(evalProblems), parse.GetValue(device)!,
            parse.GetValue(resume), ProblemsFile: parse.GetValue(problemsFile)), stdout)));
        return command;
    }

    /// <param name="InterruptAfterStep">test hook: stop right after this step's log lines, before any save, as if killed.</param>
    /// <param name="ProblemsFile">train on this file's problems instead of the task's stream.</param>
    public sealed record Settings(string Algo, string Model, string Task, string[] TaskOptions, int Steps, int? GroupSize, int? PromptsPerStep,
        string[] Set, ulong Seed, string? Out, int MicroBatch, int SampleEvery, int SaveEvery, int EvalProblems, string Device,
        bool Resume = false, int? InterruptAfterStep = null, string? ProblemsFile = null);

    public static int Run(Settings s, TextWriter log)
    {
        if (s.Steps < 1) throw new RlCommandException($"--steps must be at least 1, got {s.Steps}");
        if (s.SaveEvery < 0) throw new RlCommandException($"--save-every must be >= 0, got {s.SaveEvery}");
        if (s.EvalProblems < 0) throw new RlCommandException($"--eval-problems must be >= 0, got {s.EvalProblems}");
        var task = RlCommandSupport.CreateTask(s.Task, s.TaskOptions);
        // Training never sees a held-out problem (the evaluation's), whether from the task's stream or a file.
        var trainTask = HeldOut.TrainingView(s.ProblemsFile is null ? task : ProblemFile.Load(task, s.ProblemsFile));
        if (trainTask is HeldOutExcludedTask { Inner: ProblemFileTask file }) log.WriteLine(HeldOut.TrainingShare(file));
        string outDir = s.Out ?? Path.Combine("runs", $"{s.Algo}-{s.Task}-seed{s.Seed}");
        string modelDir = Path.Combine(outDir, ModelFolder);

        RlTrainerState? saved = null;
        AlgorithmConfig? runConfig = null;
        if (s.Resume)
        {
            saved = ReadSave(outDir);
            runConfig = CheckSameRun(s, outDir, log);
            TrainingResume.RequireStepsAtLeast(s.Steps, saved.Step, outDir);
            if (saved.Step == s.Steps)
            {
                log.WriteLine($"train-rl: the run in {outDir} is already at step {saved.Step} of {s.Steps}; nothing to do (a larger --steps continues it)");
                return 0;
            }
        }

        using var backend = Devices.Create(s.Device);
        var (model, tokenizer) = RlCommandSupport.LoadModel(backend, saved is null ? s.Model : modelDir);
        using var _ = model;
        var config = runConfig ?? ResolveConfig(s, model.Config, log);
        if (saved is null) StartFresh(s, outDir, config, log);
        log.WriteLine($"train-rl: {config.Name} on {task.Name}, {model.Config}, device {backend.Name}, {s.Steps} steps of " +
                      $"{config.TrainBatchPrompts} prompts × {config.GroupSize} samples; " +
                      (saved is null ? $"writing {outDir}" : $"resuming {outDir} after step {saved.Step}"));

        EvalResult? before = null;
        if (s.EvalProblems > 0)
        {
            if (saved is null) before = Evaluate(model, tokenizer, task, config, s, "before", log);
            else log.WriteLine("note: a resumed run evaluates only after training (the 'before' evaluation belongs to the run's start)");
        }
        var options = new RlTrainerOptions(Seed: s.Seed, MicroBatchResponses: s.MicroBatch, SampleEvery: s.SampleEvery);
        float[]? reference = saved is not null && RlTrainer.UsesReference(config) ? ReadReference(outDir, model.Config) : null;
        using var trainer = new RlTrainer(model, tokenizer, trainTask, config, options, reference);
        if (saved is null)
        {
            // The KL reference is the starting model; a resumed run cannot rebuild it from the trained weights.
            if (RlTrainer.UsesReference(config))
                SafeTensors.Write(Path.Combine(outDir, ReferenceFile), Models.ToFileTensors(model.Config, model.DownloadParameters()));
        }
        else
        {
            if (!Checkpoint.LoadOptimizer(trainer.Optimizer, model, modelDir))
                throw new CliInputException($"{Path.Combine(modelDir, Checkpoint.OptimizerFile)}: not found");
            trainer.Restore(saved);
        }

        string metricsPath = Path.Combine(outDir, "metrics.jsonl"), samplesPath = Path.Combine(outDir, "samples.jsonl");
        long? keepThrough = saved is null ? null : saved.Step - 1;   // log lines carry the 0-based step index
        using (var metrics = new Runs.JsonlWriter(metricsPath, keepThrough))
        using (var samples = new Runs.JsonlWriter(samplesPath, keepThrough))
        {
            while (trainer.StepIndex < s.Steps)
            {
                var r = trainer.Step();
                metrics.AppendLine(MetricsJson.Line(r.Metrics));
                foreach (var sample in r.Samples) samples.AppendLine(MetricsJson.Line(sample));
                log.WriteLine(Progress(r, s.Steps));
                if (s.InterruptAfterStep is int stop && trainer.StepIndex >= stop) throw new TrainingInterruptedException(trainer.StepIndex);
                if (s.SaveEvery > 0 && trainer.StepIndex % s.SaveEvery == 0 && trainer.StepIndex < s.Steps) Save(trainer, tokenizer, outDir);
            }
        }
        Save(trainer, tokenizer, outDir);
        log.WriteLine($"saved {modelDir}; skipped optimizer steps: {trainer.SkippedOptimizerSteps}");
        if (before is not null || (saved is not null && s.EvalProblems > 0))
        {
            var after = Evaluate(model, tokenizer, task, config, s, "after", log);
            if (before is not null) log.WriteLine($"held-out avg@{after.Samples}: {before.AvgAtN:F4} -> {after.AvgAtN:F4}");
        }
        return 0;
    }

    // ================================================================ fresh run and resume

    /// <summary>Creates the run folder's records; an earlier save there stops being resumable, since this run overwrites it.</summary>
    static void StartFresh(Settings s, string outDir, AlgorithmConfig config, TextWriter log)
    {
        Directory.CreateDirectory(outDir);
        string state = Path.Combine(outDir, ModelFolder, StateFile);
        if (File.Exists(state))
        {
            log.WriteLine($"note: {outDir} holds a saved run; starting a fresh one over it (--resume would have continued it)");
            File.Delete(state);
        }
        foreach (var file in new[] { "metrics.jsonl", "samples.jsonl", ReferenceFile }) File.Delete(Path.Combine(outDir, file));
        File.WriteAllLines(Path.Combine(outDir, AlgorithmFile), AlgorithmOverrides.Describe(config).Select(kv => $"{kv.Key}={kv.Value}"));
        var command = new JsonObject
        {
            ["algo"] = s.Algo, ["model"] = Path.GetFullPath(s.Model), ["task"] = s.Task,
            ["task_options"] = new JsonArray(NormalizedTaskOptions(s).Select(o => (JsonNode)o).ToArray()), ["seed"] = s.Seed,
            ["problems_file"] = ProblemsFilePath(s),
        };
        AtomicFile.WriteAllText(Path.Combine(outDir, CommandFile), command.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
    }

    /// <summary>The trainer state of the last complete save in <paramref name="outDir"/>.</summary>
    static RlTrainerState ReadSave(string outDir)
    {
        string modelDir = Path.Combine(outDir, ModelFolder);
        string path = Path.Combine(modelDir, StateFile);
        var o = TrainingResume.ReadObject(path, $"--resume needs a run saved in {outDir} (train-rl saves every --save-every steps and at the end)");
        var state = new RlTrainerState(TrainingResume.Field<int>(o, "step", path), TrainingResume.Field<long>(o, "data_seed", path),
            TrainingResume.Field<long>(o, "data_cursor", path), TrainingResume.Field<ulong>(o, "seed", path), TrainingResume.Field<long>(o, "rng_counter", path),
            o["skipped_total"] is null ? 0 : TrainingResume.Field<int>(o, "skipped_total", path));
        TrainingResume.RequireWholeSave(modelDir, state.Step, path);
        return state;
    }

    /// <summary>
    /// The command must describe the run being resumed: same task, task options and seed (command.json), a
    /// --model of the same shape, and the same resolved algorithm (algorithm.txt). Returns that algorithm.
    /// </summary>
    static AlgorithmConfig CheckSameRun(Settings s, string outDir, TextWriter log)
    {
        string commandPath = Path.Combine(outDir, CommandFile);
        var saved = TrainingResume.ReadObject(commandPath, "the run was started by a version of train-rl without --resume");
        var differences = TrainingResume.Differences(
            [("--task", TrainingResume.Field<string>(saved, "task", commandPath)),
             ("--task-option", string.Join(" ", (saved["task_options"] as JsonArray ?? []).Select(n => n?.GetValue<string>()))),
             ("--seed", TrainingResume.Field<ulong>(saved, "seed", commandPath).ToString(CultureInfo.InvariantCulture)),
             ("--problems-file", saved["problems_file"]?.GetValue<string>() ?? "")],
            [("--task", s.Task), ("--task-option", string.Join(" ", NormalizedTaskOptions(s))), ("--seed", s.Seed.ToString(CultureInfo.InvariantCulture)),
             ("--problems-file", ProblemsFilePath(s))]);
        if (differences.Count > 0)
            throw new CliInputException($"--resume: this command is not the run in {outDir} ({string.Join("; ", differences)}); " +
                                        "repeat the run's --task, --task-option and --seed, or start a new run with another --out");

        var runModel = Models.LoadConfig(Path.Combine(outDir, ModelFolder));
        CliErrors.RequireModelDir(s.Model);
        var given = Models.LoadConfig(s.Model);
        if (given.ToString() != runModel.ToString())
            throw new CliInputException($"--resume: --model {s.Model} is {given}, but the run in {outDir} trains {runModel}");

        var config = ResolveConfig(s, runModel, log);
        string algorithmPath = Path.Combine(outDir, AlgorithmFile);
        if (!File.Exists(algorithmPath)) throw new CliInputException($"{algorithmPath}: not found; cannot check that the algorithm is the run's");
        var savedSettings = File.ReadAllLines(algorithmPath).Where(l => l.Contains('=')).Select(l => (l[..l.IndexOf('=')], l[(l.IndexOf('=') + 1)..]));
        var algorithmDifferences = TrainingResume.Differences(savedSettings, AlgorithmOverrides.Describe(config));
        if (algorithmDifferences.Count > 0)
            throw new CliInputException($"--resume: the algorithm settings differ from the run's ({algorithmPath}): {string.Join("; ", algorithmDifferences)}. " +
                                        "Resume with the run's --algo, --group-size, --prompts-per-step and --set, or start a new run with another --out");
        return config;
    }

    static string ProblemsFilePath(Settings s) => s.ProblemsFile is null ? "" : Path.GetFullPath(s.ProblemsFile);

    static IEnumerable<string> NormalizedTaskOptions(Settings s) =>
        RlCommandSupport.ParsePairs(s.TaskOptions, "--task-option").Select(kv => $"{kv.Key}={kv.Value}").Order(StringComparer.Ordinal);

    static float[] ReadReference(string outDir, IModelConfig config)
    {
        string path = Path.Combine(outDir, ReferenceFile);
        if (!File.Exists(path)) throw new CliInputException($"{path}: not found; the algorithm's KL term needs the run's starting weights to resume");
        return Checkpoint.ReadParameters(config, path);
    }

    /// <summary>The preset, then --group-size / --prompts-per-step, then --set; then fitted to the model's context.</summary>
    public static AlgorithmConfig ResolveConfig(Settings s, IModelConfig model, TextWriter notes)
    {
        var config = AlgorithmRegistry.Get(s.Algo);
        if (s.GroupSize is int g) config = config with { GroupSize = g };
        if (s.PromptsPerStep is int p) config = config with { TrainBatchPrompts = p };
        var overrides = RlCommandSupport.ParsePairs(s.Set, "--set");
        config = AlgorithmOverrides.Apply(config, overrides);
        bool miniSet = overrides.Any(kv => kv.Key == "mini_batch_prompts");
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
        var r = Evaluator.Evaluate(model, tokenizer, task, new EvalOptions(Problems: s.EvalProblems, Samples: 8, Temperature: config.EvalTemperature, Seed: s.Seed),
            config.MaxResponseTokens, config.EvalTopP);
        log.WriteLine($"eval {when}: " + string.Join(" ", r.ToMetrics().Select(kv => $"{kv.Key}={kv.Value.ToString("0.####", CultureInfo.InvariantCulture)}")));
        return r;
    }

    /// <summary>Weights and moments tagged with the step, the tokenizer, then the state file: written last, it marks the save complete.</summary>
    static void Save(RlTrainer trainer, ITokenizer tokenizer, string outDir)
    {
        string dir = Path.Combine(outDir, ModelFolder);
        var state = trainer.State;
        Checkpoint.Save(trainer.Policy, dir, trainer.Optimizer, TrainingResume.Tag(state.Step));
        TokenizerFiles.Save(tokenizer, dir);
        AtomicFile.WriteAllText(Path.Combine(dir, StateFile), MetricsJson.Line(state) + "\n");
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
