using System.Globalization;
using System.Text.RegularExpressions;

namespace ArcherIlgpu.Runs;

/// <summary>One checkpoint folder, <c>checkpoints/step-000120/</c>.</summary>
public sealed record CheckpointInfo(long Step, string Path)
{
    public string File(string name) => System.IO.Path.Combine(Path, name);
}

/// <summary>
/// The step-numbered checkpoint folders of a run. A checkpoint is written into <c>step-000120.tmp/</c>
/// and renamed to <c>step-000120/</c> only when the writer returns, so a folder without the suffix is
/// always complete; leftovers of a crash (*.tmp) are never listed and are deleted by the next save.
/// Keeps the newest <see cref="KeepLast"/> checkpoints (0 keeps all).
/// </summary>
public sealed partial class CheckpointStore
{
    public string Directory { get; }
    public int KeepLast { get; }

    /// <param name="runDir">The run folder; checkpoints live in its checkpoints/ subfolder.</param>
    public CheckpointStore(string runDir, int keepLast = 3)
    {
        if (keepLast < 0) throw new ArgumentOutOfRangeException(nameof(keepLast), keepLast, "keepLast must be >= 0 (0 keeps all)");
        Directory = System.IO.Path.Combine(System.IO.Path.GetFullPath(runDir), "checkpoints");
        KeepLast = keepLast;
    }

    public static string FolderName(long step) => "step-" + step.ToString("D6", CultureInfo.InvariantCulture);

    /// <summary>Complete checkpoints, oldest first.</summary>
    public IReadOnlyList<CheckpointInfo> List()
    {
        if (!System.IO.Directory.Exists(Directory)) return [];
        var list = new List<CheckpointInfo>();
        foreach (var dir in System.IO.Directory.EnumerateDirectories(Directory))
        {
            var match = CompleteName().Match(System.IO.Path.GetFileName(dir));
            if (match.Success && long.TryParse(match.Groups[1].Value, NumberStyles.None, CultureInfo.InvariantCulture, out long step))
                list.Add(new CheckpointInfo(step, dir));
        }
        list.Sort((a, b) => a.Step.CompareTo(b.Step));
        return list;
    }

    /// <summary>The newest complete checkpoint, or null.</summary>
    public CheckpointInfo? Latest()
    {
        var list = List();
        return list.Count == 0 ? null : list[^1];
    }

    public CheckpointInfo? Find(long step) => List().FirstOrDefault(c => c.Step == step);

    /// <summary>
    /// Writes checkpoint <paramref name="step"/>: <paramref name="writeFiles"/> gets an empty temporary
    /// folder to fill; when it returns the folder is renamed into place (replacing an older checkpoint of
    /// the same step), then old ones beyond <see cref="KeepLast"/> are deleted. If the writer throws,
    /// the temporary folder is removed and nothing already saved changes.
    /// </summary>
    public CheckpointInfo Save(long step, Action<string> writeFiles)
    {
        if (step < 0) throw new ArgumentOutOfRangeException(nameof(step), step, "step must be >= 0");
        System.IO.Directory.CreateDirectory(Directory);
        CleanLeftovers();
        string final = System.IO.Path.Combine(Directory, FolderName(step));
        string temp = final + ".tmp";
        System.IO.Directory.CreateDirectory(temp);
        SaveCrashPoint.EnterSave();
        try
        {
            writeFiles(temp);
            SaveCrashPoint.Reached();
        }
        catch
        {
            TryDeleteDirectory(temp);
            throw;
        }
        finally
        {
            SaveCrashPoint.LeaveSave();
        }
        if (System.IO.Directory.Exists(final))
        {
            // Same step saved again (e.g. a resumed run re-reaching it): retire the old one first.
            string old = final + ".old.tmp";
            TryDeleteDirectory(old);
            System.IO.Directory.Move(final, old);
            System.IO.Directory.Move(temp, final);
            TryDeleteDirectory(old);
        }
        else
        {
            System.IO.Directory.Move(temp, final);
        }
        Rotate();
        return new CheckpointInfo(step, final);
    }

    /// <summary>Deletes the oldest checkpoints beyond <see cref="KeepLast"/>; returns the steps deleted.</summary>
    public IReadOnlyList<long> Rotate()
    {
        if (KeepLast == 0) return [];
        var list = List();
        var deleted = new List<long>();
        for (int i = 0; i < list.Count - KeepLast; i++)
        {
            TryDeleteDirectory(list[i].Path);
            deleted.Add(list[i].Step);
        }
        return deleted;
    }

    /// <summary>Deletes *.tmp folders left by a crashed save.</summary>
    public void CleanLeftovers()
    {
        if (!System.IO.Directory.Exists(Directory)) return;
        foreach (var dir in System.IO.Directory.EnumerateDirectories(Directory, "*.tmp"))
            TryDeleteDirectory(dir);
    }

    static void TryDeleteDirectory(string path)
    {
        try { if (System.IO.Directory.Exists(path)) System.IO.Directory.Delete(path, recursive: true); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    [GeneratedRegex(@"^step-(\d+)$")]
    private static partial Regex CompleteName();
}
