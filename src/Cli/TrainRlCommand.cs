using System.CommandLine;
using System.Globalization;
using ArcherIlgpu.Model;
using ArcherIlgpu.Kernels;
using ArcherIlgpu.Model.IO;
using ArcherIlgpu.Model.Tokenizers;
using ArcherIlgpu.Rl.Algorithms;
using ArcherIlgpu.Rl.Training;

namespace ArcherIlgpu.Cli;

/// <summary>
/// <c>archer train-rl --algo NAME --model DIR --task NAME</c>: RL from a model folder with one of the
/// registered algorithms. Writes into --out: <c>model/</c> (weights, tokenizer, optimizer moments,
/// trainer_state.json), <c>metrics.jsonl</c> (one line per step, flushed), <c>samples.jsonl</c> and
/// <c>algorithm.txt</c> (every resolved setting).
/// </summary>
public static class TrainRlCommand
{
    public static Command Create()
    {
        var algo = new Option<string>("--algo") { Description = $"algorithm: {string.Join(", ", AlgorithmRegistry.Names)}", Required = true };
        var model = new Option<string>("--model") { Description = "starting model folder (config.json, model.safetensors, tokenizer)", Required = true };
        var task = new Option<string>("--task") { Description = "task name (arithmetic, countdown, jsonl, ...)", Required = true };
        var taskOptions = RlCommandSupport.KeyValueOption("--task-option", "task option key=value, e.g. max_digits=2 (repeatable)");
        var steps = new Option<int>("--steps") { Description = "training steps (default 100)", DefaultValueFactory = _ => 100 };
        var groupSize = new Option<int?>("--group-size") { Description = "G, samples per prompt (default: the algorithm's)" };
        var prompts = new Option<int?>("--prompts-per-step") { Description = "prompts per training step (default: the algorithm's)" };
        var set = RlCommandSupport.KeyValueOption("--set", "algorithm setting key=value, e.g. learning_rate=1e-4 low.clip_high=0.3 (repeatable)");
        var seed = new Option<ulong>("--seed") { Description = "seed of the rollouts and the data order (default 1)", DefaultValueFactory = _ => 1UL };
        var outDir = new Option<string?>("--out") { Description = "run folder (default runs/<algo>-<task>-seed<seed>)" };
        var micro = new Option<int>("--micro-batch") { Description = "responses per forward/backward (gradient accumulation); 0 = whole mini-batch (default)" };
        var sampleEvery = new Option<int>("--sample-every") { Description = "write sample completions every N steps (default 10; 0 = never)", DefaultValueFactory = _ => 10 };
        var saveEvery = new Option<int>("--save-every") { Description = "also save the model every N steps (default 0 = only at the end)" };
        var evalProblems = new Option<int>("--eval-problems") { Description = "evaluate this many held-out problems before and after (default 0 = no evaluation)" };
        var device = Program.DeviceOption();
        var command = new Command("train-rl", "Train a model with RL on a task with a verifier")
        {
            algo, model, task, taskOptions, steps, groupSize, prompts, set, seed, outDir, micro, sampleEvery, saveEvery, evalProblems, device,
        };
        command.SetAction(parse => RlCommandSupport.Guard(() => Run(new Settings(
            parse.GetValue(algo)!, parse.GetValue(model)!, parse.GetValue(task)!, parse.GetValue(taskOptions) ?? [], parse.GetValue(steps),
            parse.GetValue(groupSize), parse.GetValue(prompts), parse.GetValue(set) ?? [], parse.GetValue(seed), parse.GetValue(outDir),
            parse.GetValue(micro), parse.GetValue(sampleEvery), parse.GetValue(saveEvery), parse.GetValue(evalProblems), parse.GetValue(device)!))));
        return command;
    }

    public sealed record Settings(string Algo, string Model, string Task, string[] TaskOptions, int Steps, int? GroupSize, int? PromptsPerStep,
        string[] Set, ulong Seed, string? Out, int MicroBatch, int SampleEvery, int SaveEvery, int EvalProblems, string Device);

    public static int Run(Settings s)
    {
        if (s.Steps < 1) throw new RlCommandException($"--steps must be at least 1, got {s.Steps}");
        if (s.SaveEvery < 0) throw new RlCommandException($"--save-every must be >= 0, got {s.SaveEvery}");
        if (s.EvalProblems < 0) throw new RlCommandException($"--eval-problems must be >= 0, got {s.EvalProblems}");
        var task = RlCommandSupport.CreateTask(s.Task, s.TaskOptions);
        using var backend = Devices.Create(s.Device);
        var (model, tokenizer) = RlCommandSupport.LoadModel(backend, s.Model);
        using var _ = model;
        var config = ResolveConfig(s, model.Config, Console.Out);
        string outDir = s.Out ?? Path.Combine("runs", $"{s.Algo}-{s.Task}-seed{s.Seed}");
        Directory.CreateDirectory(outDir);
        File.WriteAllLines(Path.Combine(outDir, "algorithm.txt"), AlgorithmOverrides.Describe(config).Select(kv => $"{kv.Key}={kv.Value}"));
        Console.WriteLine($"train-rl: {config.Name} on {task.Name}, {model.Config}, device {backend.Name}, {s.Steps} steps of " +
                          $"{config.TrainBatchPrompts} prompts × {config.GroupSize} samples; writing {outDir}");

        EvalResult? before = s.EvalProblems > 0 ? Evaluate(model, tokenizer, task, config, s, "before") : null;
        var options = new RlTrainerOptions(Seed: s.Seed, MicroBatchResponses: s.MicroBatch, SampleEvery: s.SampleEvery);
        using var trainer = new RlTrainer(model, tokenizer, task, config, options);
        using (var metrics = new StreamWriter(Path.Combine(outDir, "metrics.jsonl"), append: false))
        using (var samples = new StreamWriter(Path.Combine(outDir, "samples.jsonl"), append: false))
        {
            for (int i = 0; i < s.Steps; i++)
            {
                var r = trainer.Step();
                metrics.WriteLine(MetricsJson.Line(r.Metrics));
                metrics.Flush();
                foreach (var sample in r.Samples) samples.WriteLine(MetricsJson.Line(sample));
                samples.Flush();
                Console.WriteLine(Progress(r, s.Steps));
                if (s.SaveEvery > 0 && (i + 1) % s.SaveEvery == 0 && i + 1 < s.Steps) Save(trainer, tokenizer, outDir);
            }
        }
        Save(trainer, tokenizer, outDir);
        Console.WriteLine($"saved {Path.Combine(outDir, "model")}; skipped optimizer steps: {trainer.SkippedOptimizerSteps}");
        if (before is not null)
        {
            var after = Evaluate(model, tokenizer, task, config, s, "after");
            Console.WriteLine($"held-out avg@{after.Samples}: {before.AvgAtN:F4} -> {after.AvgAtN:F4}");
        }
        return 0;
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

    static EvalResult Evaluate(CausalLm model, ITokenizer tokenizer, Rl.Tasks.ITask task, AlgorithmConfig config, Settings s, string when)
    {
        var r = Evaluator.Evaluate(model, tokenizer, task, new EvalOptions(Problems: s.EvalProblems, Samples: 8, Temperature: config.EvalTemperature, Seed: s.Seed),
            config.MaxResponseTokens, config.EvalTopP);
        Console.WriteLine($"eval {when}: " + string.Join(" ", r.ToMetrics().Select(kv => $"{kv.Key}={kv.Value.ToString("0.####", CultureInfo.InvariantCulture)}")));
        return r;
    }

    static void Save(RlTrainer trainer, ITokenizer tokenizer, string outDir)
    {
        string dir = Path.Combine(outDir, "model");
        Checkpoint.Save(trainer.Policy, dir, trainer.Optimizer);
        TokenizerFiles.Save(tokenizer, dir);
        AtomicFile.WriteAllText(Path.Combine(dir, "trainer_state.json"), MetricsJson.Line(trainer.State) + "\n");
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
