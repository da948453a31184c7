using ArcherIlgpu.Distributed;

namespace ArcherIlgpu.Cli;

/// <summary>
/// A command that may run as one rank of an <c>mpirun -np N</c> job. Outside mpirun it is a single
/// process and MPI is never loaded. Inside, every rank runs the command; a rank that fails (its error
/// already printed by <see cref="CliErrors.Guard(string, TextWriter, TextWriter, Func{TextWriter, TextWriter, int})"/>)
/// aborts the whole job, so no other rank waits forever in a collective call for it.
/// </summary>
static class MpiJob
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
    /// removed at the end, with no log, so rank 0 alone writes the run folder, checkpoints and logs.
    /// </summary>
    public static T AsReplica<T>(World world, TextWriter log, Func<TextWriter, string?, T> train)
    {
        if (world.IsWriter) return train(log, null);
        string scratch = ScratchFolder(world);
        try { return train(TextWriter.Null, scratch); }
        finally { if (Directory.Exists(scratch)) Directory.Delete(scratch, recursive: true); }
    }

    /// <summary>Where a rank other than 0 puts the run folder it must not write into --out: its own scratch folder, removed at the end.</summary>
    public static string ScratchFolder(World world) =>
        Path.Combine(Path.GetTempPath(), $"archer-rank{world.Rank}-{Environment.ProcessId}");
}
