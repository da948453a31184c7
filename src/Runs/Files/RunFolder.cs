using System.Globalization;
using System.Text.RegularExpressions;

namespace ArcherIlgpu.Runs;

/// <summary>
/// One run's folder, e.g. <c>runs/2026-11-22_2315_demo/</c>:
/// <code>
/// run.json          marker: name, created (UTC), format version
/// run.lock, run.pid the writer's lock and its pid (see <see cref="RunLock"/>)
/// config.json       the resolved config (atomic); a resume must repeat it
/// metrics.jsonl     one JSON object per step
/// samples.jsonl     sample completions with their rewards
/// eval.json         evaluation results, if any ({"pass@1": ..., "pass@k": {...}})
/// checkpoints/      step-000120/ ...  (see <see cref="CheckpointStore"/>)
/// plots/            SVG charts (see <see cref="RunPlots"/>)
/// summary.md        written at the end
/// </code>
/// </summary>
public sealed partial class RunFolder
{
    public const string MarkerFile = "run.json";

    public string Path { get; }
    public string Name => System.IO.Path.GetFileName(Path);
    public string MarkerPath => Combine(MarkerFile);
    public string ConfigPath => Combine("config.json");
    public string MetricsPath => Combine("metrics.jsonl");
    public string SamplesPath => Combine("samples.jsonl");
    public string EvalPath => Combine("eval.json");
    public string SummaryPath => Combine("summary.md");
    public string CheckpointsDir => Combine("checkpoints");
    public string PlotsDir => Combine("plots");

    RunFolder(string path) => Path = System.IO.Path.GetFullPath(path);

    public string Combine(string relative) => System.IO.Path.Combine(Path, relative);

    sealed record Marker(string Name, DateTime Created, int Format);

    /// <summary>
    /// Creates <c>rootDir/yyyy-MM-dd_HHmm_name</c> (local time), or with a suffix _2, _3, ... when that
    /// exists; never reuses an existing folder, even when two processes start in the same minute (the
    /// folder is prepared under a temporary name and renamed, which fails if the target exists).
    /// </summary>
    public static RunFolder Create(string rootDir, string name, DateTime? now = null)
    {
        if (File.Exists(rootDir)) throw new RunFolderException($"'{rootDir}' is a file; expected a folder to create run folders in");
        var time = now ?? DateTime.Now;
        string slug = Slug(name);
        string stem = $"{time.ToString("yyyy-MM-dd_HHmm", CultureInfo.InvariantCulture)}_{slug}";
        Directory.CreateDirectory(rootDir);
        for (int attempt = 1; attempt < 10_000; attempt++)
        {
            string target = System.IO.Path.Combine(rootDir, attempt == 1 ? stem : $"{stem}_{attempt}");
            if (Directory.Exists(target) || File.Exists(target)) continue;
            string temp = System.IO.Path.Combine(rootDir, $".{stem}.{Guid.NewGuid():N}.tmp");
            Directory.CreateDirectory(temp);
            Json.WriteAtomic(System.IO.Path.Combine(temp, MarkerFile), new Marker(name, time.ToUniversalTime(), 1));
            try
            {
                Directory.Move(temp, target);
            }
            catch (IOException) when (Directory.Exists(target))
            {
                Directory.Delete(temp, recursive: true);
                continue; // another process took this name between the check and the move
            }
            var run = new RunFolder(target);
            Directory.CreateDirectory(run.CheckpointsDir);
            Directory.CreateDirectory(run.PlotsDir);
            return run;
        }
        throw new IOException($"could not find a free run folder name for '{stem}' in '{rootDir}'");
    }

    /// <summary>Opens an existing run (to resume or report on); a clear error if <paramref name="path"/> is not one.</summary>
    public static RunFolder Open(string path)
    {
        if (File.Exists(path))
            throw new ArgumentException($"'{path}' is a file, not a run folder (a run folder holds {MarkerFile}, config.json and metrics.jsonl)");
        if (!Directory.Exists(path))
            throw new DirectoryNotFoundException($"run folder '{path}' does not exist");
        var run = new RunFolder(path);
        if (!File.Exists(run.MarkerPath) && !File.Exists(run.MetricsPath))
            throw new ArgumentException($"'{path}' is not a run folder: it has neither {MarkerFile} nor metrics.jsonl (runs are created by archer train/sft/demo under runs/)");
        return run;
    }

    /// <summary>
    /// The folder a command writes one run into when the user names it (<c>--out DIR</c>); nothing is
    /// created or read yet. A path that names a file is refused here, before anything else happens.
    /// </summary>
    public static RunFolder At(string path, string option = "--out")
    {
        if (File.Exists(path)) throw new RunFolderException($"{option} '{path}' is a file; expected a run folder (new, empty, or a run to --resume)");
        return new RunFolder(path);
    }

    /// <summary>True when the folder holds a run: its marker or a complete checkpoint.</summary>
    public bool HoldsRun => File.Exists(MarkerPath) || Checkpoints().Latest() is not null;

    /// <summary>Missing, or holding nothing but a lock left by an earlier writer.</summary>
    public bool IsEmpty => !Directory.Exists(Path) ||
        Directory.EnumerateFileSystemEntries(Path).All(e => System.IO.Path.GetFileName(e) is RunLock.LockFile or RunLock.PidFile);

    /// <summary>
    /// The check of a fresh run into this folder, made before anything is written: a folder holding a run is
    /// refused unless <paramref name="overwrite"/> (the user said so), and a folder holding anything else
    /// always is (--overwrite would delete files that no run wrote).
    /// </summary>
    public void RequireFreshStart(bool overwrite, string resumeHint)
    {
        if (IsEmpty) return;
        if (!HoldsRun)
            throw new RunFolderException($"'{Path}' is not empty and holds no run ({MarkerFile} is missing); choose a new or empty folder");
        if (!overwrite)
            throw new RunFolderException($"'{Path}' already holds a run: {resumeHint} continues it, --overwrite replaces it, or choose another folder");
    }

    /// <summary>Takes the folder's writer lock (creating the folder); a second writer is refused, naming the holder's pid.</summary>
    public RunLock Lock() => RunLock.Acquire(Path);

    /// <summary>
    /// Starts a fresh run here (call with the lock held, after <see cref="RequireFreshStart"/>): deletes what an
    /// earlier run left, then writes the marker and the empty checkpoints/ folder.
    /// </summary>
    public void Begin(string name, RunLock held)
    {
        ArgumentNullException.ThrowIfNull(held);
        foreach (var entry in Directory.EnumerateFileSystemEntries(Path).ToList())
        {
            if (System.IO.Path.GetFileName(entry) is RunLock.LockFile or RunLock.PidFile) continue;
            if (Directory.Exists(entry)) Directory.Delete(entry, recursive: true);
            else File.Delete(entry);
        }
        Json.WriteAtomic(MarkerPath, new Marker(name, DateTime.UtcNow, 1));
        Directory.CreateDirectory(CheckpointsDir);
    }

    /// <summary>A command's settings as flat "key": "value" pairs (config.json of train-sft and train-rl).</summary>
    public void WriteSettings(IReadOnlyDictionary<string, string> settings) =>
        Json.WriteAtomic(ConfigPath, new SortedDictionary<string, string>(settings.ToDictionary(), StringComparer.Ordinal));

    public Dictionary<string, string> ReadSettings() => Json.Read<Dictionary<string, string>>(ConfigPath);

    /// <summary>
    /// A resume's check: every setting of <paramref name="now"/> must equal the run's, except the keys in
    /// <paramref name="mayChange"/>; the refusal names each changed key with both values.
    /// </summary>
    public void RequireSameSettings(IEnumerable<(string Key, string Value)> saved, IEnumerable<(string Key, string Value)> now, IEnumerable<string> mayChange)
    {
        var differences = SettingDifferences(saved, now, mayChange);
        if (differences.Count > 0)
            throw new RunFolderException($"--resume: this is not the run in {Path}: {string.Join("; ", differences)}. " +
                                         "A resume repeats the run's settings (see its config.json); start a new run to change them");
    }

    /// <summary><see cref="RequireSameSettings(IEnumerable{ValueTuple{string, string}}, IEnumerable{ValueTuple{string, string}}, IEnumerable{string})"/> of flat settings (config.json of train-sft and train-rl).</summary>
    public void RequireSameSettings(IReadOnlyDictionary<string, string> saved, IReadOnlyDictionary<string, string> now, IEnumerable<string> mayChange) =>
        RequireSameSettings(Pairs(saved), Pairs(now), mayChange);

    static IEnumerable<(string Key, string Value)> Pairs(IReadOnlyDictionary<string, string> settings) => settings.Select(kv => (kv.Key, kv.Value));

    /// <summary>Whether the flat settings differ at all (a resume that changed an allowed one rewrites config.json).</summary>
    public static bool SettingsDiffer(IReadOnlyDictionary<string, string> saved, IReadOnlyDictionary<string, string> now) =>
        SettingDifferences(Pairs(saved), Pairs(now), []).Count > 0;

    /// <summary>"key: A in the run, B now" for every key whose value differs or that one side lacks, <paramref name="ignore"/>d keys aside.</summary>
    public static List<string> SettingDifferences(IEnumerable<(string Key, string Value)> saved, IEnumerable<(string Key, string Value)> now, IEnumerable<string> ignore)
    {
        var a = saved.ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal);
        var b = now.ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal);
        var skip = ignore.ToHashSet(StringComparer.Ordinal);
        return a.Keys.Union(b.Keys).Where(k => !skip.Contains(k)).Order(StringComparer.Ordinal)
            .Where(k => !a.TryGetValue(k, out var x) || !b.TryGetValue(k, out var y) || x != y)
            .Select(k => $"{k}: {(a.TryGetValue(k, out var x) ? x : "(absent)")} in the run, {(b.TryGetValue(k, out var y) ? y : "(absent)")} now")
            .ToList();
    }

    public static bool IsRunFolder(string path) =>
        Directory.Exists(path) && (File.Exists(System.IO.Path.Combine(path, MarkerFile)) || File.Exists(System.IO.Path.Combine(path, "metrics.jsonl")));

    public void WriteConfig<T>(T config) where T : notnull => ConfigWriter.Save(config, ConfigPath);

    /// <summary>The saved config bound over <paramref name="defaults"/> (so keys added since keep their defaults), then <paramref name="sets"/>.</summary>
    public T ReadConfig<T>(T defaults, IEnumerable<string>? sets = null) where T : notnull
    {
        if (!File.Exists(ConfigPath)) throw new FileNotFoundException($"run folder '{Path}' has no config.json", ConfigPath);
        return ConfigBinder.Bind(defaults, ConfigPath, sets);
    }

    /// <summary>Appends to metrics.jsonl; pass the resumed step to drop lines logged after it.</summary>
    public MetricsWriter OpenMetrics(long? resumeStep = null) => new(MetricsPath, resumeStep);

    public JsonlWriter OpenSamples(long? resumeStep = null) => new(SamplesPath, resumeStep);

    public MetricsLog ReadMetrics() => MetricsLog.Read(MetricsPath);

    public CheckpointStore Checkpoints(int keepLast = 3) => new(Path, keepLast);

    public void WriteSummary(string markdown) => AtomicFile.WriteAllText(SummaryPath, markdown);

    static string Slug(string name)
    {
        string slug = SlugRegex().Replace(name.Trim(), "-").Trim('-', '.');
        return slug.Length == 0 ? "run" : slug;
    }

    [GeneratedRegex("[^A-Za-z0-9._-]+")]
    private static partial Regex SlugRegex();

    public override string ToString() => Path;
}
