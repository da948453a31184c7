using System.CommandLine;
using ArcherIlgpu.Kernels;
using ArcherIlgpu.Rl.Tasks;
using ArcherIlgpu.Rl.Training;

namespace ArcherIlgpu.Cli;

/// <summary>
/// <c>archer eval --model DIR --task NAME</c>: held-out avg@n, pass@k (k = 1, 2, 4, ..., n), greedy accuracy,
/// mean response length and entropy (and the verdict mix, for a task with verdicts). The problems are the task's
/// held-out ones (never in any training stream, see <see cref="HeldOut"/>), then each of its named held-out groups
/// (Countdown: unseen targets) as a second set; or, with --problems-file, every problem of a user's file.
/// Prints a table per set, then all the numbers as one JSON line (a group's under eval/GROUP/).
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
        var problemsFile = ProblemsFileOption("evaluate every problem of this JSONL file instead of the held-out ones (countdown: {\"numbers\":[84,9,14,28],\"target\":73} a line)");
        var device = Program.DeviceOption();
        var precision = Program.PrecisionOption();
        var allowExtra = ModelLoadOption.Create();
        var command = new Command("eval", "Evaluate a model on held-out problems of a task")
        {
            model, task, taskOptions, n, problems, temperature, topP, maxTokens, seed, problemsFile, device, precision, allowExtra,
        };
        command.WithExamples("eval --model runs/archer-arithmetic-seed1 --task arithmetic --task-option min_digits=2 max_digits=2 operators=+", "eval --model runs/add-model --task jsonl --task-option path=runs/add.heldout.jsonl");
        command.SetAction(parse => CliErrors.Guard(parse, (stdout, stderr) =>
        {
            var t = RlCommandSupport.CreateTask(parse.GetValue(task)!, parse.GetValue(taskOptions) ?? []);
            using var backend = Program.CreateBackend(parse.GetValue(device), parse.GetValue(precision));
            var (m, tokenizer) = RlCommandSupport.LoadModel(backend, ModelFolders.Resolve(parse.GetValue(model)!), t, ModelLoadOption.Read(parse, allowExtra));
            using var _ = m;
            int max = parse.GetValue(maxTokens);
            if (max < 0) throw new RlCommandException($"--max-response-tokens must be >= 1, got {max}");
            var options = new EvalOptions(Problems: parse.GetValue(problems), Samples: parse.GetValue(n), Temperature: parse.GetValue(temperature),
                Seed: parse.GetValue(seed)).Validate();
            MemoryChecks.Eval(m.Config, options.Problems, options.Samples, $"--problems {options.Problems} × --n {options.Samples}").RequireFits(backend);
            double p = parse.GetValue(topP);
            if (!(p > 0 && p <= 1)) throw new RlCommandException($"--top-p must be in (0, 1], got {p}");
            var sets = EvalSets(t, parse.GetValue(problemsFile), options);
            var json = new Dictionary<string, double>();
            foreach (var (name, set) in sets)
            {
                var r = Evaluator.Evaluate(m, tokenizer, t, set, options, max > 0 ? max : m.Config.MaxT, p);
                if (name.Length > 0) stdout.WriteLine($"eval on {name.Replace('_', ' ')}:");
                stdout.WriteLine(r.ToTable());
                string prefix = name.Length > 0 ? $"eval/{name}/" : "eval/";
                if (name.Length == 0) { json["problems"] = r.Problems; json["samples"] = r.Samples; json["temperature"] = r.Temperature; }
                foreach (var (k, v) in r.ToMetrics(prefix)) json[k] = v;
            }
            stdout.WriteLine(MetricsJson.Line(json));
            return 0;
        }));
        return command;
    }

    /// <summary>The --problems-file option of eval, train-rl and make-sft-data.</summary>
    public static Option<string?> ProblemsFileOption(string description) => new("--problems-file") { Description = description };

    /// <summary>The sets to evaluate, by name ("" for the main one): the file's problems, or the held-out ones and each held-out group.</summary>
    static List<(string Name, IReadOnlyList<TaskExample> Problems)> EvalSets(ITask task, string? file, EvalOptions options)
    {
        if (file is not null) return [("", ProblemFile.Load(task, file).Problems(options.ProblemSeed))];
        var sets = new List<(string, IReadOnlyList<TaskExample>)> { ("", Evaluator.HeldOut(task, options.Problems, options.ProblemSeed)) };
        foreach (var group in task.HeldOutGroups) sets.Add((group, Evaluator.HeldOut(task, options.Problems, options.ProblemSeed, group)));
        return sets;
    }
}
