using System.CommandLine;
using ArcherIlgpu.Kernels;
using ArcherIlgpu.Rl.Training;

namespace ArcherIlgpu.Cli;

/// <summary>
/// <c>archer eval --model DIR --task NAME</c>: held-out avg@n, pass@k (k = 1, 2, 4, ..., n), greedy accuracy,
/// mean response length and entropy. Prints a table, then the same numbers as one JSON line.
/// </summary>
public static class EvalCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "model folder (config.json, model.safetensors, tokenizer), or a run folder (its newest checkpoint)", Required = true };
        var task = new Option<string>("--task") { Description = "task name (arithmetic, countdown, jsonl, ...)", Required = true };
        var taskOptions = RlCommandSupport.KeyValueOption("--task-option", "task option key=value (repeatable)");
        var n = new Option<int>("--n") { Description = "samples per problem", DefaultValueFactory = _ => 8 };
        var problems = new Option<int>("--problems") { Description = "held-out problems", DefaultValueFactory = _ => 100 };
        var temperature = new Option<double>("--temperature") { Description = "sampling temperature", DefaultValueFactory = _ => 0.8 };
        var topP = new Option<double>("--top-p") { Description = "top-p (1 = off)", DefaultValueFactory = _ => 1.0 };
        var maxTokens = new Option<int>("--max-response-tokens") { Description = "most tokens per answer (default: the model's context)" };
        var seed = new Option<ulong>("--seed") { Description = "sampling seed", DefaultValueFactory = _ => 1UL };
        var device = Program.DeviceOption();
        var allowExtra = ModelLoadOption.Create();
        var command = new Command("eval", "Evaluate a model on held-out problems of a task")
        {
            model, task, taskOptions, n, problems, temperature, topP, maxTokens, seed, device, allowExtra,
        };
        command.WithExamples("eval --model runs/archer-arithmetic-seed1 --task arithmetic --task-option min_digits=2 max_digits=2 operators=+", "eval --model runs/add-model --task jsonl --task-option path=runs/add.heldout.jsonl");
        command.SetAction(parse => CliErrors.Guard(parse, (stdout, stderr) =>
        {
            var t = RlCommandSupport.CreateTask(parse.GetValue(task)!, parse.GetValue(taskOptions) ?? []);
            using var backend = Devices.Create(parse.GetValue(device));
            var (m, tokenizer) = RlCommandSupport.LoadModel(backend, ModelFolders.Resolve(parse.GetValue(model)!), t, ModelLoadOption.Read(parse, allowExtra));
            using var _ = m;
            int max = parse.GetValue(maxTokens);
            if (max < 0) throw new RlCommandException($"--max-response-tokens must be >= 1, got {max}");
            var options = new EvalOptions(Problems: parse.GetValue(problems), Samples: parse.GetValue(n), Temperature: parse.GetValue(temperature),
                Seed: parse.GetValue(seed)).Validate();
            MemoryChecks.Eval(m.Config, options.Problems, options.Samples, $"--problems {options.Problems} × --n {options.Samples}").RequireFits(backend);
            double p = parse.GetValue(topP);
            if (!(p > 0 && p <= 1)) throw new RlCommandException($"--top-p must be in (0, 1], got {p}");
            var r = Evaluator.Evaluate(m, tokenizer, t, options, max > 0 ? max : m.Config.MaxT, p);
            stdout.WriteLine(r.ToTable());
            var json = new Dictionary<string, double> { ["problems"] = r.Problems, ["samples"] = r.Samples, ["temperature"] = r.Temperature };
            foreach (var (k, v) in r.ToMetrics()) json[k] = v;
            stdout.WriteLine(MetricsJson.Line(json));
            return 0;
        }));
        return command;
    }
}
