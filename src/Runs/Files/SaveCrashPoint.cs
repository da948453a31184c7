namespace ArcherIlgpu.Runs;

/// <summary>
/// Test hook for the kill-during-save tests. With <c>ARCHER_TEST_EXIT_AT_SAVE_POINT=N</c> in the
/// environment, the process exits with code 137 (as if killed: no cleanup, no <c>finally</c>) at the N-th
/// point of checkpoint writing it reaches: after each file's bytes are on disk and before the file's rename,
/// and before the checkpoint folder's rename. Points outside <see cref="CheckpointStore.Save"/> are not
/// counted. Without the variable it does nothing.
/// </summary>
public static class SaveCrashPoint
{
    public const string Variable = "ARCHER_TEST_EXIT_AT_SAVE_POINT";
    public const int ExitCode = 137;

    static readonly long exitAt = long.TryParse(Environment.GetEnvironmentVariable(Variable), out long n) ? n : 0;
    static long reached;
    [ThreadStatic] static int savesInProgress;

    internal static void EnterSave() => savesInProgress++;
    internal static void LeaveSave() => savesInProgress--;

    /// <summary>One point of a save; exits when it is the N-th.</summary>
    public static void Reached()
    {
        if (exitAt <= 0 || savesInProgress == 0) return;
        if (Interlocked.Increment(ref reached) == exitAt)
        {
            Console.Out.Flush();
            Environment.Exit(ExitCode);
        }
    }
}
