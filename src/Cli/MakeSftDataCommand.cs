using System.CommandLine;
using System.Text.Encodings.Web;
using System.Text.Json;
using ArcherIlgpu.Model.IO;
using ArcherIlgpu.Rl.Tasks;

namespace ArcherIlgpu.Cli;

/// <summary>
/// <c>archer make-sft-data --task arithmetic --option operators=+ --out train.jsonl</c>: a synthetic SFT
/// dataset from a task's seeded examples, one <c>{"prompt", "completion"}</c> line each, the completion
/// being the task's worked solution (or its answer when it has none). The training examples never include a
/// held-out problem (<see cref="HeldOut"/>); <c>--held-out N</c> writes N of those, the first N problems that
/// <c>archer eval</c> evaluates. <c>--problems-file</c> takes the problems from a user's JSONL file instead.
/// </summary>
public static class MakeSftDataCommand
{
    public static Command Create()
    {
        var task = new Option<string>("--task") { Description = $"task name ({string.Join(", ", TaskRegistry.Names)})", Required = true };
        var options = new Option<string[]>("--option", "-o")
        {
            Description = "task option KEY=VALUE, repeatable (arithmetic: min_digits, max_digits, operators, allow_negative)",
            AllowMultipleArgumentsPerToken = false,
        };
        var count = new Option<int>("--count") { Description = "training examples (default 1000)", DefaultValueFactory = _ => 1000 };
        var seed = new Option<long>("--seed") { Description = "seed of the task's example stream (default 1)", DefaultValueFactory = _ => 1 };
        var heldOut = new Option<int>("--held-out") { Description = "also write this many held-out examples, none of whose prompts is in the training file (default 0)" };
        var heldOutOut = new Option<string?>("--held-out-out") { Description = "file for the held-out examples (default: OUT with .heldout before the extension)" };
        var output = new Option<string>("--out") { Description = "JSONL file to write", Required = true };
        var problemsFile = EvalCommand.ProblemsFileOption("take the problems from this JSONL file (countdown: {\"numbers\":[84,9,14,28],\"target\":73} a line); held-out ones are skipped");
        var command = new Command("make-sft-data", "Write a {prompt, completion} JSONL dataset from a task's examples")
        {
            task, options, count, seed, heldOut, heldOutOut, output, problemsFile,
        };
        command.SetAction(parse => CliErrors.Guard(parse, (stdout, _) =>
        {
            int n = parse.GetValue(count), h = parse.GetValue(heldOut);
            if (n < 1) throw new CliInputException($"--count must be at least 1, got {n}");
            if (h < 0) throw new CliInputException($"--held-out must be >= 0, got {h}");
            var t = TaskRegistry.Create(parse.GetValue(task)!, ParseOptions(parse.GetValue(options) ?? []));
            if (parse.GetValue(problemsFile) is string file)
            {
                var problems = ProblemFile.Load(t, file);
                stdout.WriteLine(HeldOut.TrainingShare(problems));
                t = problems;
            }
            string outPath = parse.GetValue(output)!;
            string heldOutPath = parse.GetValue(heldOutOut) ?? HeldOutPathFor(outPath);
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

    public static string HeldOutPathFor(string outPath)
    {
        string ext = Path.GetExtension(outPath);
        return Path.Combine(Path.GetDirectoryName(outPath) ?? "", Path.GetFileNameWithoutExtension(outPath) + ".heldout" + (ext.Length > 0 ? ext : ".jsonl"));
    }

    static Dictionary<string, string> ParseOptions(string[] pairs)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var pair in pairs)
        {
            int eq = pair.IndexOf('=');
            if (eq <= 0) throw new CliInputException($"--option '{pair}' must look like KEY=VALUE, e.g. max_digits=2");
            result[pair[..eq].Trim()] = pair[(eq + 1)..];
        }
        return result;
    }

    /// <summary>
    /// Examples 0..count-1 of the seeded training stream (<see cref="HeldOut.TrainingView"/>: no held-out problem),
    /// and the first <paramref name="heldOut"/> problems of the evaluation set (<see cref="HeldOut.EvalSet"/>).
    /// </summary>
    public static (List<(string Prompt, string Completion)> Train, List<(string Prompt, string Completion)> HeldOut) Make(ITask task, long seed, int count, int heldOut)
    {
        static (string, string) Pair(TaskExample e) => (e.Prompt, e.Solution ?? e.Answer);
        var training = HeldOut.TrainingView(task);
        var train = new List<(string, string)>(count);
        for (long index = 0; index < count; index++) train.Add(Pair(training.Generate(seed, index)));
        var held = heldOut == 0 ? [] : HeldOut.EvalSet(task, heldOut).Select(Pair).ToList();
        return (train, held);
    }

    static void Write(string path, List<(string Prompt, string Completion)> examples)
    {
        var dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir is not null) Directory.CreateDirectory(dir);
        AtomicFile.Write(path, stream =>
        {
            // Relaxed escaping keeps "+", "<" and ">" readable; the lines are still plain JSON.
            var options = new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
            foreach (var (prompt, completion) in examples)
            {
                using (var json = new Utf8JsonWriter(stream, options))
                {
                    json.WriteStartObject();
                    json.WriteString("prompt", prompt);
                    json.WriteString("completion", completion);
                    json.WriteEndObject();
                }
                stream.WriteByte((byte)'\n');
            }
        });
    }
}
