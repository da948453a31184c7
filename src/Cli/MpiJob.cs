using ArcherIlgpu.Distributed;
using ArcherIlgpu.Model.Training;
using ArcherIlgpu.Rl.Training;

namespace ArcherIlgpu.Cli;

/// <summary>
/// A command that may run as one rank of an <c>mpirun -np N</c> job. Outside mpirun it is a single
/// process and MPI is never loaded. Inside, every rank runs the command; a rank that fails (its error
/// already printed by <see cref="CliErrors.Guard(string, TextWriter, TextWriter, Func{TextWriter, TextWriter, int})"/>)
/// aborts the whole job, so no other rank waits forever in a collective call for it.
/// </summary>
public static class MpiJob
{
    public static int Run(TextWriter error, Func<World, int> body)
    {
        World world;
        try
        {
            world = World.Join();
        }
        catch (InvalidOperationException e)
        {
            error.WriteLine($"archer: error: {e.Message}");
            return CliErrors.BadInput;
        }
        int rc = body(world);
        if (world.IsDistributed)
        {
            if (rc != 0)
            {
                error.WriteLine($"archer: rank {world.Rank} of {world.Size} failed (exit code {rc}): ending every rank");
                error.Flush();
                world.Abort(rc);
            }
            world.Finish();
        }
        return rc;
    }

    /// <summary>
    /// One replica of a run that writes a folder: rank 0 (or a single process) runs <paramref name="train"/> as asked
    /// (scratch folder null) with <paramref name="log"/>; another rank trains the same replica into its scratch folder,
    /// removed at the end, with no log, so rank 0 alone writes the run folder, checkpoints and logs. A resume reads
    /// --out on every rank (its newest checkpoint and config.json), so --out must be on a file system every rank sees.
    /// Before the first step's collective calls, which no rank reaches before it has read, rank 0 only rewrites
    /// config.json there (atomically, with what a resume may change) and trims the logs: no checkpoint changes under a reader.
    /// </summary>
    public static T AsReplica<T>(World world, TextWriter log, Func<TextWriter, string?, T> train)
    {
        if (world.IsWriter) return train(log, null);
        string scratch = ScratchFolder(world);
        try { return train(TextWriter.Null, scratch); }
        finally { if (Directory.Exists(scratch)) Directory.Delete(scratch, recursive: true); }
    }

    /// <summary>Makes <paramref name="sft"/> train rank <c>world.Rank</c>'s share of every step's batch, the gradients summed over the ranks (no-op for one process).</summary>
    public static void ShareSteps(World world, SftTrainer sft)
    {
        if (!world.IsDistributed) return;
        sft.Shard = (world.Rank, world.Size);
        sft.Trainer.Reduction = world;
    }

    /// <summary>This rank's place among an RL run's replicas; null for one process.</summary>
    public static RlReplicas? RlReplicas(World world) => world.IsDistributed ? new RlReplicas(world.Rank, world.Size, world) : null;

    /// <summary>
    /// The fault tests' hook: the environment variable <see cref="KillVariable"/> = "RANK@STEP" makes rank RANK kill
    /// itself (SIGKILL, as a crashed machine) right after step STEP's log line, before that step's checkpoint.
    /// </summary>
    public const string KillVariable = "ARCHER_TEST_KILL";

    /// <summary>Kills this process when <see cref="KillVariable"/> names this rank and <paramref name="step"/> (see there).</summary>
    public static void KillPoint(World world, long step)
    {
        string? value = Environment.GetEnvironmentVariable(KillVariable);
        if (value is null) return;
        var parts = value.Split('@');
        if (parts.Length != 2 || !int.TryParse(parts[0], out int rank) || !long.TryParse(parts[1], out long at))
            throw new CliInputException($"{KillVariable} must be RANK@STEP (a test hook), got '{value}'");
        if (rank != world.Rank || step != at) return;
        Console.Out.Flush();
        System.Diagnostics.Process.GetCurrentProcess().Kill();
        Thread.Sleep(Timeout.Infinite);   // SIGKILL is on its way; nothing after this point may run
    }

    /// <summary>Where a rank other than 0 puts the run folder it must not write into --out: its own scratch folder, removed at the end.</summary>
    public static string ScratchFolder(World world) =>
        Path.Combine(Path.GetTempPath(), $"archer-rank{world.Rank}-{Environment.ProcessId}");
}
