using System.Text.Json;

namespace ArcherIlgpu.Rl.Tasks;

/// <summary>
/// A fixed math dataset from a JSONL file, one object per line: {"prompt": "...", "answer": "42"} with an
/// optional "solution" (or "completion"). The answer may be a JSON string or number. A line with a
/// "completion" but no "answer" (an SFT file, as <c>archer make-sft-data</c> writes, or one of your own)
/// takes the answer found in the completion by <see cref="AnswerExtractor.Extract"/>, so one file serves
/// both SFT and evaluation. Blank lines are skipped. A line that
/// cannot be read fails with the file and line number; a file without examples fails too.
/// Example i is line i modulo the count (the trainer shuffles); the seed is not used.
/// The reward compares <see cref="AnswerExtractor.Extract"/> of the completion with the answer.
/// </summary>
public sealed class JsonlMathTask : ITask
{
    readonly TaskExample[] examples;

    public JsonlMathTask(string path, string name = "jsonl")
    {
        Name = name;
        Path = path;
        if (!File.Exists(path)) throw new TaskDataException($"{path}: dataset file not found");
        examples = Parse(path, File.ReadLines(path));
    }

    /// <summary>Builds the task from lines already in memory; <paramref name="source"/> names them in errors.</summary>
    public JsonlMathTask(string source, IEnumerable<string> lines, string name = "jsonl")
    {
        Name = name;
        Path = source;
        examples = Parse(source, lines);
    }

    public string Name { get; }
    public string Path { get; }
    public long? Count => examples.Length;
    public IReadOnlyList<TaskExample> Examples => examples;

    public TaskExample Generate(long seed, long index) => examples[(int)(((index % examples.Length) + examples.Length) % examples.Length)];

    public double Reward(TaskExample example, string completion) =>
        AnswerExtractor.Matches(AnswerExtractor.Extract(completion), example.Answer) ? 1.0 : 0.0;

    static TaskExample[] Parse(string source, IEnumerable<string> lines)
    {
        var list = new List<TaskExample>();
        int lineNumber = 0;
        foreach (var raw in lines)
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(raw)) continue;
            string where = $"{source}:{lineNumber}";
            JsonDocument doc;
            try { doc = JsonDocument.Parse(raw); }
            catch (JsonException e) { throw new TaskDataException($"{where}: not valid JSON ({e.Message})"); }
            using (doc)
            {
                var root = doc.RootElement;
                if (root.ValueKind != JsonValueKind.Object) throw new TaskDataException($"{where}: expected a JSON object, got {root.ValueKind}");
                var prompt = Field(root, "prompt", where, required: true)!;
                var solution = Field(root, "solution", where, required: false) ?? Field(root, "completion", where, required: false);
                var answer = Field(root, "answer", where, required: false) ?? AnswerIn(solution, where);
                list.Add(new TaskExample(prompt, answer, solution));
            }
        }
        if (list.Count == 0) throw new TaskDataException($"{source}: dataset is empty (expected JSONL lines like {{\"prompt\": \"...\", \"answer\": \"...\"}})");
        return list.ToArray();
    }

    /// <summary>The answer a line without "answer" implies: the one its solution or completion ends with.</summary>
    static string AnswerIn(string? solution, string where)
    {
        if (solution is null) throw new TaskDataException($"{where}: missing \"answer\" (or a \"completion\" to take the answer from)");
        return AnswerExtractor.Extract(solution)
            ?? throw new TaskDataException($"{where}: no \"answer\", and no answer (a number, \\boxed{{...}} or #### ...) in the completion \"{solution}\"");
    }

    static string? Field(JsonElement root, string name, string where, bool required)
    {
        if (!root.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null)
        {
            if (required) throw new TaskDataException($"{where}: missing \"{name}\"");
            return null;
        }
        return v.ValueKind switch
        {
            JsonValueKind.String => v.GetString(),
            JsonValueKind.Number => v.GetRawText(),
            _ => throw new TaskDataException($"{where}: \"{name}\" must be a string or a number, got {v.ValueKind}"),
        };
    }
}
