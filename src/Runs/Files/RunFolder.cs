using System.Globalization;
using System.Text.RegularExpressions;

namespace ArcherIlgpu.Runs;

/// <summary>
/// One run's folder, e.g. <c>runs/2026-11-22_2315_demo/</c>:
/// <code>
/// run.json          marker: name, created (UTC), format version
/// config.json       the resolved config (atomic)
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
