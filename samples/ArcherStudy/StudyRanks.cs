namespace ArcherStudy;

/// <summary>
/// This process's place among the ranks of a distributed study (<see cref="Study.RunShare"/>): its rank, the number of
/// ranks, and the job's barrier. Kept free of MPI so the study needs no MPI installed; Program.cs makes it from the
/// MPI world under mpirun.
/// </summary>
public sealed record StudyRanks(int Rank, int Size, Action Barrier)
{
    /// <summary>How often a waiting rank looks for the files it waits for.</summary>
    public static readonly TimeSpan Poll = TimeSpan.FromMilliseconds(500);

    /// <summary>Whether the <paramref name="index"/>-th run still to do is this rank's: run i goes to rank i mod Size.</summary>
    public bool Owns(int index) => index % Size == Rank;

    /// <summary>
    /// Sleeps until <paramref name="ready"/> (files the other ranks write), then meets them at the barrier. OpenMPI's
    /// barrier polls a core while it waits, which on a machine with no spare core slows the ranks still working; the
    /// barrier alone is entered when every rank is about to arrive. A rank that fails ends the job (MPI_Abort), so the
    /// others never wait forever.
    /// </summary>
    public void WaitFor(Func<bool> ready)
    {
        while (!ready()) Thread.Sleep(Poll);
        Barrier();
    }
}
