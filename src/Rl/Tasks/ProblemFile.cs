using System.Globalization;
using System.Text.Json;

namespace ArcherIlgpu.Rl.Tasks;

/// <summary>A task that reads its own problems from a JSONL line (Countdown: <c>{"numbers":[...],"target":73}</c>).</summary>
public interface IProblemFileTask
{
    /// <summary>The example of one line; <paramref name="where"/> ("file:line") starts every error;
    /// <paramref name="rng"/> draws anything random, such as which worked solution to show.</summary>
    TaskExample FromJson(JsonElement line, string where, Random rng);
}

/// <summary>
/// Problems from a user's JSONL file, one JSON object a line (blank lines skipped), in the task's own
/// format when it has one (<see cref="IProblemFileTask"/>), else <c>{"prompt": ..., "answer": ...}</c> with
/// an optional "solution". Every line is checked when the file is loaded; a bad one is a
/// <see cref="TaskDataException"/> naming the file and line.
/// </summary>
public static class ProblemFile
{
    public static ProblemFileTask Load(ITask task, string path)
    {
        if (!File.Exists(path)) throw new TaskDataException($"{path}: problems file not found");
        return new ProblemFileTask(task, path, File.ReadLines(path));
    }

    /// <summary>The non-blank lines of <paramref name="lines"/>, each read by <paramref name="read"/> with its "source:line" prefix.</summary>
    public static List<T> ReadLines<T>(string source, IEnumerable<string> lines, Func<JsonElement, string, T> read)
    {
        var list = new List<T>();
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
                if (doc.RootElement.ValueKind != JsonValueKind.Object)
                    throw new TaskDataException($"{where}: expected a JSON object, got {doc.RootElement.ValueKind}");
                list.Add(read(doc.RootElement, where));
            }
        }
        return list;
    }

    /// <summary>
    /// A <c>{"prompt", "answer", "solution"?}</c> line; answer and solution may be strings or numbers. "completion"
    /// stands for "solution", and a line without "answer" takes the one its solution ends with (an SFT file).
    /// </summary>
    public static TaskExample PromptAnswer(JsonElement line, string where)
    {
        var prompt = Text(line, "prompt", where, required: true)!;
        var solution = Text(line, "solution", where, required: false) ?? Text(line, "completion", where, required: false);
        var answer = Text(line, "answer", where, required: false) ?? AnswerIn(solution, where);
        return new TaskExample(prompt, answer, solution);
    }

    /// <summary>The answer a line without "answer" implies: the one its solution or completion ends with.</summary>
    static string AnswerIn(string? solution, string where)
    {
        if (solution is null) throw new TaskDataException($"{where}: missing \"answer\" (or a \"completion\" to take the answer from)");
        return AnswerExtractor.Extract(solution)
            ?? throw new TaskDataException($"{where}: no \"answer\", and no answer (a number, \\boxed{{...}} or #### ...) in the completion \"{solution}\"");
    }

    static string? Text(JsonElement root, string name, string where, bool required)
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

    /// <summary>An integer field in [min, max].</summary>
    public static long Integer(JsonElement line, string name, string where, long min, long max)
    {
        if (!line.TryGetProperty(name, out var v)) throw new TaskDataException($"{where}: missing \"{name}\"");
        return IntegerValue(v, $"\"{name}\"", where, min, max);
    }

    /// <summary>A field holding an array of integers, each in [min, max].</summary>
    public static long[] IntegerArray(JsonElement line, string name, string where, long min, long max)
    {
        if (!line.TryGetProperty(name, out var v)) throw new TaskDataException($"{where}: missing \"{name}\"");
        if (v.ValueKind != JsonValueKind.Array) throw new TaskDataException($"{where}: \"{name}\" must be an array of integers, got {v.ValueKind}");
        return v.EnumerateArray().Select((e, i) => IntegerValue(e, $"\"{name}\"[{i}]", where, min, max)).ToArray();
    }

    static long IntegerValue(JsonElement v, string what, string where, long min, long max)
    {
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt64(out long x))
            throw new TaskDataException($"{where}: {what} must be an integer, got {(v.ValueKind == JsonValueKind.Number ? v.GetRawText() : v.ValueKind.ToString())}");
        if (x < min || x > max)
            throw new TaskDataException($"{where}: {what} must be in {min.ToString(CultureInfo.InvariantCulture)}..{max.ToString(CultureInfo.InvariantCulture)}, got {x.ToString(CultureInfo.InvariantCulture)}");
        return x;
    }
}

/// <summary>
/// A fixed dataset of a user's problems for a task, verified by that task. Example i is line i modulo the
/// count; a task that draws a worked solution at random draws it anew by (seed, index), as its own stream does.
/// </summary>
public sealed class ProblemFileTask : DerivedTask
{
    readonly List<(string Line, string Where)> lines;

    public ProblemFileTask(ITask task, string source, IEnumerable<string> lines) : base(task)
    {
        Path = source;
        this.lines = ProblemFile.ReadLines(source, lines, (json, where) =>
        {
            Read(json, where, new Random(0));   // every line is checked now, not when training reaches it
            return (json.GetRawText(), where);
        });
        if (this.lines.Count == 0) throw new TaskDataException($"{source}: the problems file is empty");
    }

    public string Path { get; }
    public override long? Count => lines.Count;

    TaskExample Read(JsonElement json, string where, Random rng) =>
        Inner is IProblemFileTask own ? own.FromJson(json, where, rng) : ProblemFile.PromptAnswer(json, where);

    public override TaskExample Generate(long seed, long index)
    {
        var (line, where) = lines[(int)(((index % lines.Count) + lines.Count) % lines.Count)];
        using var doc = JsonDocument.Parse(line);
        return Read(doc.RootElement, where, TaskRandom.For(seed, index));
    }

    /// <summary>Every problem of the file, in file order.</summary>
    public IReadOnlyList<TaskExample> Problems(long seed) => Enumerable.Range(0, lines.Count).Select(i => Generate(seed, i)).ToArray();
}
