using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using ArcherIlgpu.Model;
using ArcherIlgpu.Model.IO;

namespace ArcherIlgpu.Cli;

/// <summary>Thrown by a command's test hook (InterruptAfterStep): it stopped right after this step, as if killed.</summary>
public sealed class TrainingInterruptedException(int step) : Exception($"interrupted after step {step}")
{
    public int Step { get; } = step;
}

/// <summary>
/// What <c>train-rl --resume</c> and <c>train-sft --resume</c> share. A save is several files (weights,
/// optimizer moments, a state file written last); each is atomic, but a crash between two of them would
/// leave a folder mixing two saves. The weights and the optimizer file are therefore tagged with the step
/// of the save, and a resume refuses a folder whose tags disagree with its state file instead of
/// continuing from a mixture.
/// </summary>
internal static class TrainingResume
{
    public const string StepKey = "archer_train_step";

    public static Dictionary<string, string> Tag(int step) => new() { [StepKey] = step.ToString(CultureInfo.InvariantCulture) };

    /// <summary>The weights file(s) and optimizer.safetensors of <paramref name="dir"/> must all carry <paramref name="step"/>.</summary>
    public static void RequireWholeSave(string dir, int step, string statePath)
    {
        string optimizer = Path.Combine(dir, Checkpoint.OptimizerFile);
        if (!File.Exists(optimizer))
            throw new CliInputException($"{optimizer}: not found; {statePath} needs the optimizer moments beside the weights to resume");
        string single = Path.Combine(dir, Checkpoint.WeightsFile);
        var files = File.Exists(single) ? [single] : Directory.GetFiles(dir, "model-*-of-*.safetensors").Order(StringComparer.Ordinal).ToList();
        if (files.Count == 0) throw new CliInputException($"{single}: not found; the save in {dir} has no weights");
        files.Add(optimizer);
        string expected = step.ToString(CultureInfo.InvariantCulture);
        foreach (var file in files)
        {
            SafeTensors.ReadIndex(file, out var meta);
            string? tag = meta.TryGetValue(StepKey, out var t) ? t : null;
            if (tag != expected)
                throw new CliInputException($"{file} is from {(tag is null ? "an untagged save" : "step " + tag)} but {statePath} is at step {step}: " +
                                            "the last save was interrupted, so the folder mixes two saves and cannot be resumed exactly");
        }
    }

    /// <summary>A JSON object file written by a save; a missing or unreadable one is a clear error.</summary>
    public static JsonObject ReadObject(string path, string missingHint)
    {
        if (!File.Exists(path)) throw new CliInputException($"{path}: not found; {missingHint}");
        try
        {
            return JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new CliInputException($"{path}: expected a JSON object");
        }
        catch (JsonException e)
        {
            throw new CliInputException($"{path}: not valid JSON ({e.Message})");
        }
    }

    /// <summary>A required field of a state file, with the file named if it is missing or has the wrong type.</summary>
    public static T Field<T>(JsonObject o, string key, string path)
    {
        try
        {
            if (o[key] is JsonValue v) return v.GetValue<T>();
        }
        catch (Exception e) when (e is FormatException or InvalidOperationException or OverflowException) { }
        throw new CliInputException($"{path}: \"{key}\" is missing or not a {typeof(T).Name}");
    }

    /// <summary>Keeps the log lines with "step" ≤ <paramref name="lastStep"/>: the steps after the save are redone, not duplicated.</summary>
    public static void TruncateLog(string path, long lastStep)
    {
        if (File.Exists(path)) Runs.Jsonl.TruncateAfterStep(path, lastStep);
    }

    /// <summary>"key: A in the run, B now" for every setting whose value differs (or that only one side has).</summary>
    public static List<string> Differences(IEnumerable<(string Key, string Value)> saved, IEnumerable<(string Key, string Value)> now)
    {
        var a = saved.ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal);
        var b = now.ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal);
        return a.Keys.Union(b.Keys).Order(StringComparer.Ordinal)
            .Where(k => !a.TryGetValue(k, out var x) || !b.TryGetValue(k, out var y) || x != y)
            .Select(k => $"{k}: {(a.TryGetValue(k, out var x) ? x : "(absent)")} in the run, {(b.TryGetValue(k, out var y) ? y : "(absent)")} now")
            .ToList();
    }

    /// <summary>The --steps check of a resume: a total, so below the saved step is a mistake and equal to it is nothing to do.</summary>
    public static void RequireStepsAtLeast(int steps, int savedStep, string dir)
    {
        if (steps < savedStep)
            throw new CliInputException($"the run in {dir} is already at step {savedStep}; --steps is the total number of steps, so give --steps {savedStep} or more");
    }
}
