using System.Globalization;

namespace ArcherIlgpu.Rl.Tasks;

/// <summary>
/// Tasks by name with string options (as they come from a command line or config file):
/// <list type="bullet">
/// <item><c>arithmetic</c>: min_digits, max_digits, operators, allow_negative;</item>
/// <item><c>countdown</c>: format (expression or steps), min_numbers, max_numbers, max_number, min_target, max_target;</item>
/// <item><c>jsonl</c>: path (required).</item>
/// </list>
/// Unknown names and unknown option keys fail with the list of valid ones. Users add their own with
/// <see cref="Register"/>.
/// </summary>
public static class TaskRegistry
{
    /// <summary>How to build a task: its option keys and a factory over a validated option reader.</summary>
    public sealed record Entry(string Name, string Description, IReadOnlyList<string> OptionKeys, Func<TaskOptionReader, ITask> Create);

    static readonly Dictionary<string, Entry> entries = new(StringComparer.Ordinal);
    static readonly object gate = new();

    static TaskRegistry()
    {
        Register(new Entry("arithmetic", "seeded multi-digit arithmetic, e.g. 123*45=",
            ["min_digits", "max_digits", "operators", "allow_negative"],
            o =>
            {
                var d = new ArithmeticOptions();
                return new ArithmeticTask(new ArithmeticOptions(o.Int("min_digits", d.MinDigits), o.Int("max_digits", d.MaxDigits),
                    o.String("operators", d.Operators), o.Bool("allow_negative", d.AllowNegative)));
            }));
        Register(new Entry("countdown", "reach a target from given numbers with + - * /, each used at most once (format=steps: n-1 equations)",
            ["format", "min_numbers", "max_numbers", "max_number", "min_target", "max_target"],
            o =>
            {
                var format = o.String("format", CountdownOptions.ExpressionFormat);
                var d = format == CountdownOptions.StepsFormat ? CountdownOptions.Steps : new CountdownOptions();
                return new CountdownTask(new CountdownOptions(o.Int("min_numbers", d.MinNumbers), o.Int("max_numbers", d.MaxNumbers),
                    o.Int("max_number", d.MaxNumber), o.Int("min_target", d.MinTarget), o.Int("max_target", d.MaxTarget), format));
            }));
        Register(new Entry("jsonl", "math problems from a JSONL file of {\"prompt\", \"answer\"} lines",
            ["path"],
            o => new JsonlMathTask(o.Required("path"))));
    }

    public static IReadOnlyList<string> Names { get { lock (gate) return entries.Keys.Order(StringComparer.Ordinal).ToArray(); } }

    /// <summary>Adds or replaces a task.</summary>
    public static void Register(Entry entry)
    {
        lock (gate) entries[entry.Name] = entry;
    }

    public static Entry Get(string name)
    {
        lock (gate)
        {
            if (entries.TryGetValue(name, out var e)) return e;
        }
        throw new ArgumentException($"unknown task \"{name}\"; valid tasks: {string.Join(", ", Names)}", nameof(name));
    }

    public static ITask Create(string name, IReadOnlyDictionary<string, string>? options = null)
    {
        var entry = Get(name);
        var reader = new TaskOptionReader(name, options ?? new Dictionary<string, string>());
        foreach (var key in reader.Keys)
            if (!entry.OptionKeys.Contains(key))
                throw new TaskDataException($"task \"{name}\": unknown option \"{key}\"; valid options: " +
                    (entry.OptionKeys.Count == 0 ? "(none)" : string.Join(", ", entry.OptionKeys)));
        return entry.Create(reader);
    }
}

/// <summary>Typed access to string options with messages naming the task, key and value.</summary>
public sealed class TaskOptionReader(string task, IReadOnlyDictionary<string, string> values)
{
    public IEnumerable<string> Keys => values.Keys;

    public string String(string key, string fallback) => values.TryGetValue(key, out var v) ? v : fallback;

    public string Required(string key) =>
        values.TryGetValue(key, out var v) && v.Length > 0 ? v : throw new TaskDataException($"task \"{task}\": option \"{key}\" is required");

    public int Int(string key, int fallback)
    {
        if (!values.TryGetValue(key, out var v)) return fallback;
        return int.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out int x) ? x
            : throw new TaskDataException($"task \"{task}\": option \"{key}\" must be an integer, got \"{v}\"");
    }

    public bool Bool(string key, bool fallback)
    {
        if (!values.TryGetValue(key, out var v)) return fallback;
        return bool.TryParse(v, out bool x) ? x
            : throw new TaskDataException($"task \"{task}\": option \"{key}\" must be true or false, got \"{v}\"");
    }
}
