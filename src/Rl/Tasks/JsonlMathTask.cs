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
        var list = ProblemFile.ReadLines(source, lines, ProblemFile.PromptAnswer);
        if (list.Count == 0) throw new TaskDataException($"{source}: dataset is empty (expected JSONL lines like {{\"prompt\": \"...\", \"answer\": \"...\"}})");
        return list.ToArray();
    }
}
