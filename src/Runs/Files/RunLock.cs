using System.Globalization;

namespace ArcherIlgpu.Runs;

/// <summary>A run folder that cannot be used as asked: in use by another writer, a file, a run where none may be.</summary>
public sealed class RunFolderException(string message) : IOException(message);

/// <summary>
/// The one-writer lock of a run folder: <c>run.lock</c> opened with <see cref="FileShare.None"/>, which on
/// Linux and macOS .NET turns into an exclusive <c>flock</c> that the kernel drops when the process dies
/// (on Windows, the exclusive open does the same). A lock left by a killed process is therefore never
/// in the way: the next writer simply gets it. The holder's pid goes to <c>run.pid</c> (the lock file
/// itself cannot be read while it is held), for the message a second writer gets and for the note of a
/// take-over; <c>run.pid</c> is removed on a clean release, so finding it on entry means the last holder died.
/// </summary>
public sealed class RunLock : IDisposable
{
    public const string LockFile = "run.lock";
    public const string PidFile = "run.pid";

    readonly FileStream stream;
    readonly string pidPath;

    /// <summary>The pid of a holder that died without releasing the lock (it was taken over), else null.</summary>
    public int? TookOverFrom { get; }

    RunLock(FileStream stream, string pidPath, int? tookOverFrom)
    {
        this.stream = stream;
        this.pidPath = pidPath;
        TookOverFrom = tookOverFrom;
    }

    /// <summary>Takes the lock of <paramref name="dir"/> (created if missing), or throws naming the holder's pid.</summary>
    public static RunLock Acquire(string dir)
    {
        Directory.CreateDirectory(dir);
        string lockPath = Path.Combine(dir, LockFile), pidPath = Path.Combine(dir, PidFile);
        FileStream stream;
        try
        {
            stream = new FileStream(lockPath, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException e) when (e is not FileNotFoundException and not DirectoryNotFoundException)
        {
            int? holder = ReadPid(pidPath);
            throw new RunFolderException($"run folder '{dir}' is in use by another archer process" +
                                         (holder is int pid ? $" (pid {pid.ToString(CultureInfo.InvariantCulture)})" : "") +
                                         "; wait for it to finish or stop it, or use another folder");
        }
        int? previous = ReadPid(pidPath);
        AtomicFile.WriteAllText(pidPath, Environment.ProcessId.ToString(CultureInfo.InvariantCulture) + "\n");
        return new RunLock(stream, pidPath, previous is int p && p != Environment.ProcessId ? p : null);
    }

    static int? ReadPid(string path)
    {
        try
        {
            return int.TryParse(File.ReadAllText(path).Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out int pid) ? pid : null;
        }
        catch (IOException) { return null; }
        catch (UnauthorizedAccessException) { return null; }
    }

    /// <summary>Removes run.pid, then releases the lock; run.lock stays (deleting a lock file others may have open races).</summary>
    public void Dispose()
    {
        try { File.Delete(pidPath); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        stream.Dispose();
    }
}
