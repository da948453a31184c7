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
/// (train-sft reads prompt + completion) and evaluates (<c>--task jsonl</c> reads prompt + answer). <c>--held-out N</c> adds N examples
/// whose prompts never occur in the training file.
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
        var command = new Command("make-sft-data", "Write a {prompt, completion, answer} JSONL dataset from a task's examples (for train-sft, and for eval/train-rl with --task jsonl)")
        {
            task, options, count, seed, heldOut, heldOutOut, output,
        };
        command.WithExamples("make-sft-data --task arithmetic --task-option operators=+ min_digits=2 max_digits=2 --count 4000 --held-out 200 --out runs/add.jsonl");
        command.SetAction(parse => CliErrors.Guard(parse, (stdout, _) =>
        {
            int n = parse.GetValue(count), h = parse.GetValue(heldOut);
            if (n < 1) throw new CliInputException($"--count must be at least 1, got {n}");
            if (h < 0) throw new CliInputException($"--held-out must be >= 0, got {h}");
            var t = RlCommandSupport.CreateTask(parse.GetValue(task)!, parse.GetValue(options) ?? []);
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
    /// Examples 0..count-1 of the seeded stream for training; the held-out ones follow in the stream,
    /// skipping any whose prompt is already in the training set (a small problem space repeats prompts).
    /// </summary>
    public static (List<TaskExample> Train, List<TaskExample> HeldOut) Make(ITask task, long seed, int count, int heldOut)
    {
        var train = new List<TaskExample>(count);
        var prompts = new HashSet<string>(StringComparer.Ordinal);
        long index = 0;
        for (; index < count; index++)
        {
            var e = task.Generate(seed, index);
            train.Add(e);
            prompts.Add(e.Prompt);
        }
        var held = new List<TaskExample>(heldOut);
        // A bounded search: a task with too few distinct problems must fail, not loop forever.
        long limit = index + 100L * heldOut + 1000;
        for (; held.Count < heldOut && index < limit; index++)
        {
            var e = task.Generate(seed, index);
            if (prompts.Add(e.Prompt)) held.Add(e);
        }
        if (held.Count < heldOut)
            throw new CliInputException($"task \"{task.Name}\" produced only {held.Count} held-out prompts not in the training set (asked for {heldOut}); the task has too few distinct problems for --count {count}");
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
