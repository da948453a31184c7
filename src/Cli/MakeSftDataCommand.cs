using System.CommandLine;
using System.Text.Encodings.Web;
using System.Text.Json;
using ArcherIlgpu.Model.IO;
using ArcherIlgpu.Rl.Tasks;
using ArcherIlgpu.Runs;

namespace ArcherIlgpu.Cli;

/// <summary>
/// <c>archer make-sft-data --task arithmetic --option operators=+ --out train.jsonl</c>: a synthetic SFT
/// dataset from a task's seeded examples, one <c>{"prompt", "completion"}</c> line each, the completion
/// being the task's worked solution (or its answer when it has none). <c>--held-out N</c> adds N examples
/// whose prompts never occur in the training file.
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
        var command = new Command("make-sft-data", "Write a {prompt, completion} JSONL dataset from a task's examples")
        {
            task, options, count, seed, heldOut, heldOutOut, output,
        };
        command.SetAction(parse => CliErrors.Guard(parse, (stdout, _) =>
        {
            int n = parse.GetValue(count), h = parse.GetValue(heldOut);
            if (n < 1) throw new CliInputException($"--count must be at least 1, got {n}");
            if (h < 0) throw new CliInputException($"--held-out must be >= 0, got {h}");
            var t = TaskRegistry.Create(parse.GetValue(task)!, ParseOptions(parse.GetValue(options) ?? []));
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
    /// Examples 0..count-1 of the seeded stream for training; the held-out ones follow in the stream,
    /// skipping any whose prompt is already in the training set (a small problem space repeats prompts).
    /// </summary>
    public static (List<(string Prompt, string Completion)> Train, List<(string Prompt, string Completion)> HeldOut) Make(ITask task, long seed, int count, int heldOut)
    {
        static (string, string) Pair(TaskExample e) => (e.Prompt, e.Solution ?? e.Answer);
        var train = new List<(string, string)>(count);
        var prompts = new HashSet<string>(StringComparer.Ordinal);
        long index = 0;
        for (; index < count; index++)
        {
            var e = task.Generate(seed, index);
            train.Add(Pair(e));
            prompts.Add(e.Prompt);
        }
        var held = new List<(string, string)>(heldOut);
        // A bounded search: a task with too few distinct problems must fail, not loop forever.
        long limit = index + 100L * heldOut + 1000;
        for (; held.Count < heldOut && index < limit; index++)
        {
            var e = task.Generate(seed, index);
            if (prompts.Add(e.Prompt)) held.Add(Pair(e));
        }
        if (held.Count < heldOut)
            throw new CliInputException($"task \"{task.Name}\" produced only {held.Count} held-out prompts not in the training set (asked for {heldOut}); the task has too few distinct problems for --count {count}");
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
