using System.CommandLine;
using System.Text.Encodings.Web;
using System.Text.Json;
using ArcherIlgpu.Model.IO;
using ArcherIlgpu.Rl.Tasks;
using ArcherIlgpu.Runs;

namespace ArcherIlgpu.Cli;

/// <summary>
/// <c>archer make-sft-data --task arithmetic --task-option operators=+ --out train.jsonl</c>: a synthetic SFT
/// dataset from a task's seeded examples, one <c>{"prompt", "completion", "answer"}</c> line each, the
/// completion being the task's worked solution (or its answer when it has none). The same file trains
/// (train-sft reads prompt + completion) and evaluates (<c>--task jsonl</c> reads prompt + answer). The training
/// examples never include a held-out problem (<see cref="HeldOut"/>); <c>--held-out N</c> writes N of those, the
/// first N problems that <c>archer eval</c> evaluates. <c>--problems-file</c> takes the problems from a user's JSONL file instead.
/// </summary>
public static class MakeSftDataCommand
{
    public static Command Create()
    {
        var task = new Option<string>("--task") { Description = $"task name ({string.Join(", ", TaskRegistry.Names)})", Required = true };
        var options = RlCommandSupport.KeyValueOption("--task-option", "task option key=value (repeatable; arithmetic: min_digits, max_digits, operators, allow_negative)");
        var count = new Option<int>("--count") { Description = "training examples", DefaultValueFactory = _ => 1000 };
        var seed = new Option<long>("--seed") { Description = "seed of the task's example stream", DefaultValueFactory = _ => 1 };
        var heldOut = new Option<int>("--held-out") { Description = "also write this many held-out examples, none of whose prompts is in the training file", DefaultValueFactory = _ => 0 };
        var heldOutOut = new Option<string?>("--held-out-out") { Description = "file for the held-out examples (default: OUT with .heldout before the extension)" };
        var output = new Option<string>("--out") { Description = "JSONL file to write", Required = true };
        var problemsFile = EvalCommand.ProblemsFileOption("take the problems from this JSONL file (countdown: {\"numbers\":[84,9,14,28],\"target\":73} a line); held-out ones are skipped");
        var command = new Command("make-sft-data", "Write a {prompt, completion, answer} JSONL dataset from a task's examples (for train-sft, and for eval/train-rl with --task jsonl)")
        {
            task, options, count, seed, heldOut, heldOutOut, output, problemsFile,
        };
        command.WithExamples("make-sft-data --task arithmetic --task-option operators=+ min_digits=2 max_digits=2 --count 4000 --held-out 200 --out runs/add.jsonl");
        command.SetAction(parse => CliErrors.Guard(parse, (stdout, _) =>
        {
            int n = parse.GetValue(count), h = parse.GetValue(heldOut);
            if (n < 1) throw new CliInputException($"--count must be at least 1, got {n}");
            if (h < 0) throw new CliInputException($"--held-out must be >= 0, got {h}");
            var t = RlCommandSupport.CreateTask(parse.GetValue(task)!, parse.GetValue(options) ?? []);
            if (parse.GetValue(problemsFile) is string file)
            {
                var problems = ProblemFile.Load(t, file);
                stdout.WriteLine(HeldOut.TrainingShare(problems));
                t = problems;
            }
            string outPath = parse.GetValue(output)!;
            string heldOutPath = parse.GetValue(heldOutOut) ?? HeldOutPathFor(outPath);
            RequireFilePath(outPath, "--out");
            if (h > 0) RequireFilePath(heldOutPath, "--held-out-out");
            var (train, held) = Make(t, parse.GetValue(seed), n, h);
            Write(outPath, train);
            stdout.WriteLine($"wrote {train.Count} {t.Name} examples to {outPath}");
            if (h > 0)
            {
                Write(heldOutPath, held);
                stdout.WriteLine($"wrote {held.Count} held-out examples to {heldOutPath}");
            }
            return 0;
        }));
        return command;
    }

    /// <summary>An output path must name a file: writing over a folder fails half-way otherwise.</summary>
    static void RequireFilePath(string path, string option)
    {
        if (Directory.Exists(path))
            throw new CliInputException($"{option} '{path}' is a folder; expected the path of a JSONL file to write, e.g. {Path.Combine(path, "train.jsonl")}");
    }

    public static string HeldOutPathFor(string outPath)
    {
        string ext = Path.GetExtension(outPath);
        return Path.Combine(Path.GetDirectoryName(outPath) ?? "", Path.GetFileNameWithoutExtension(outPath) + ".heldout" + (ext.Length > 0 ? ext : ".jsonl"));
    }

    /// <summary>
    /// Examples 0..count-1 of the seeded training stream (<see cref="HeldOut.TrainingView"/>: no held-out problem),
    /// and the first <paramref name="heldOut"/> problems of the evaluation set (<see cref="HeldOut.EvalSet"/>).
    /// </summary>
    public static (List<TaskExample> Train, List<TaskExample> HeldOut) Make(ITask task, long seed, int count, int heldOut)
    {
        var training = HeldOut.TrainingView(task);
        var train = new List<TaskExample>(count);
        for (long index = 0; index < count; index++) train.Add(training.Generate(seed, index));
        var held = heldOut == 0 ? [] : HeldOut.EvalSet(task, heldOut).ToList();
        return (train, held);
    }

    /// <summary>One line per example in the format both readers take (<see cref="SftJsonl"/>, <see cref="JsonlMathTask"/>).</summary>
    static void Write(string path, List<TaskExample> examples)
    {
        var dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir is not null) Directory.CreateDirectory(dir);
        AtomicFile.Write(path, stream =>
        {
            // Relaxed escaping keeps "+", "<" and ">" readable; the lines are still plain JSON.
            var options = new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
            foreach (var e in examples)
            {
                using (var json = new Utf8JsonWriter(stream, options))
                {
                    json.WriteStartObject();
                    json.WriteString("prompt", e.Prompt);
                    json.WriteString("completion", e.Solution ?? e.Answer);
                    json.WriteString("answer", e.Answer);
                    json.WriteEndObject();
                }
                stream.WriteByte((byte)'\n');
            }
        });
    }
}
