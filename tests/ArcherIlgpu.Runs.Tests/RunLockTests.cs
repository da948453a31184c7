namespace ArcherIlgpu.Runs.Tests;

/// <summary>
/// The run folder's writer lock. In one process two opens of run.lock conflict like two processes' do
/// (the flock is per open file); a dead process's lock is covered end to end by the Cli kill tests.
/// </summary>
public class RunLockTests : IDisposable
{
    readonly string root = Directory.CreateTempSubdirectory("run-lock-").FullName;
    public void Dispose() => Directory.Delete(root, recursive: true);

    [Fact]
    public void ASecondWriterIsRefusedNamingTheHoldersPid()
    {
        var first = RunLock.Acquire(root);
        var e = Assert.Throws<RunFolderException>(() => RunLock.Acquire(root));
        Assert.Contains($"(pid {Environment.ProcessId})", e.Message);
        Assert.Contains(root, e.Message);
        first.Dispose();

        using var second = RunLock.Acquire(root);   // released: free again, and not a take-over
        Assert.Null(second.TookOverFrom);
        Assert.Equal($"{Environment.ProcessId}\n", File.ReadAllText(Path.Combine(root, RunLock.PidFile)));
    }

    [Fact]
    public void ALockWhoseHolderDiedIsTakenOverAndNamed()
    {
        // What a killed holder leaves: run.lock (its flock gone with the process) and run.pid.
        File.WriteAllText(Path.Combine(root, RunLock.LockFile), "");
        File.WriteAllText(Path.Combine(root, RunLock.PidFile), "4194301\n");
        using var taken = RunLock.Acquire(root);
        Assert.Equal(4194301, taken.TookOverFrom);
    }

    [Fact]
    public void ACleanReleaseRemovesThePidAndKeepsTheLockFile()
    {
        RunLock.Acquire(root).Dispose();
        Assert.True(File.Exists(Path.Combine(root, RunLock.LockFile)));
        Assert.False(File.Exists(Path.Combine(root, RunLock.PidFile)));
    }

    [Fact]
    public void AFolderWithOnlyALockIsEmptyAndAFreshRunIsRefusedOverARun()
    {
        var run = RunFolder.At(root);
        RunLock.Acquire(root).Dispose();
        Assert.True(run.IsEmpty);
        run.RequireFreshStart(overwrite: false, "--resume");   // nothing to lose

        using (var held = run.Lock()) run.Begin("test", held);
        Assert.True(run.HoldsRun);
        var e = Assert.Throws<RunFolderException>(() => run.RequireFreshStart(overwrite: false, "--resume"));
        Assert.Contains("--overwrite replaces it", e.Message);
        run.RequireFreshStart(overwrite: true, "--resume");
    }

    [Fact]
    public void AtRefusesAFile()
    {
        string file = Path.Combine(root, "f");
        File.WriteAllText(file, "");
        var e = Assert.Throws<RunFolderException>(() => RunFolder.At(file));
        Assert.Contains("is a file", e.Message);
        Assert.Throws<RunFolderException>(() => RunFolder.Create(file, "demo"));
    }

    [Fact]
    public void TheNewestCheckpointOfARunIsItsLatest()
    {
        var run = RunFolder.At(Path.Combine(root, "run"));
        using (var held = run.Lock()) run.Begin("test", held);
        Assert.Null(run.Checkpoints().Latest());   // no checkpoint yet
        var store = run.Checkpoints();
        store.Save(3, _ => { });
        store.Save(12, _ => { });
        Assert.Equal(Path.Combine(run.CheckpointsDir, "step-000012"), RunFolder.Open(run.Path).Checkpoints().Latest()!.Path);
    }

    [Fact]
    public void SettingDifferencesNameEachChangedKeyExceptTheAllowedOnes()
    {
        var d = RunFolder.SettingDifferences([("a", "1"), ("b", "2"), ("steps", "10")], [("a", "1"), ("b", "3"), ("steps", "20"), ("c", "x")], ["steps"]);
        Assert.Equal(["b: 2 in the run, 3 now", "c: (absent) in the run, x now"], d);
    }
}
