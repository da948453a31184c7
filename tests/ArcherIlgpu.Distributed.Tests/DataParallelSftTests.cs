using System.Diagnostics;
using System.Text;
using ArcherIlgpu.Cli;
using ArcherIlgpu.Distributed;
using ArcherIlgpu.Kernels;
using ArcherIlgpu.Model;
using Xunit;
using Xunit.Abstractions;

namespace ArcherIlgpu.Distributed.Tests;

/// <summary>
/// <c>mpirun -np 2 archer train-sft</c> against one process with the same global batch. Skipped, saying
/// why, where mpirun is not installed (.ci/run installs openmpi-bin when it can).
/// </summary>
public sealed class DataParallelSftTests(ITestOutputHelper log) : IDisposable
{
    const int Steps = 4, Batch = 8, Seed = 3;
    readonly string dir = Directory.CreateTempSubdirectory("archer-mpi-test-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    [Fact]
    public void A_single_process_is_rank_0_of_1_and_loads_no_MPI()
    {
        Assert.False(World.LaunchedUnderMpi());   // the test host is not started by mpirun
        var world = World.Join();
        Assert.Same(World.Single, world);
        Assert.Equal((0, 1, false, true), (world.Rank, world.Size, world.IsDistributed, world.IsWriter));
        float[] values = [1.5f, -2f];
        world.SumInRankOrder(values);             // a sum over one rank is the values themselves
        Assert.Equal([1.5f, -2f], values);
        Assert.Equal(0.25, world.Sum(0.25));
    }

    [SkippableFact]
    public void Two_ranks_end_with_the_weights_of_one_process()
    {
        string data = WriteAdditionData();
        string one = Path.Combine(dir, "one"), two = Path.Combine(dir, "two");
        TrainSftCommand.Run(new TrainSftCommand.Settings(data, null, 0.1, one, "tiny", null, Steps, Batch, null, null, Seed, 2, "cpu"), TextWriter.Null);

        var (rc, output) = MpiJobs.Run(dir, 2, $"train-sft --data {data} --out {two} --steps {Steps} --batch-size {Batch} --seed {Seed} --eval-every 2 --device cpu");
        Assert.True(rc == 0, $"mpirun exited with {rc}:\n{output}");
        // Rank 0 alone logs: the last progress line appears once, and the run says it is data-parallel.
        Assert.Single(output.Split('\n'), l => l.StartsWith($"step {Steps}/{Steps}", StringComparison.Ordinal));
        Assert.Contains("data-parallel over 2 ranks", output);

        // Not bit-identical: one process sums each weight gradient over all 8 examples inside one backward,
        // two ranks over 4 each and then add the halves, so float32 rounding differs by a few ulp per gradient
        // element. AdamW divides by sqrt(v), so a relative gradient error e moves a weight by about lr·e per step:
        // 4 steps at lr ≤ 5e-3 with e ≤ 1e-3 (generous, for elements whose gradient nearly cancels) bound it by 2e-5.
        // A wrong split (an example twice, or one rank's gradient lost) moves weights by ~lr = 5e-3: 250× more.
        double worst = WorstDifference(one, two);
        Assert.True(worst <= 2e-5, $"largest weight difference {worst:G3} > 2e-5");
        Assert.False(Directory.EnumerateDirectories(dir, "archer-rank1-*").Any(), "rank 1 left its scratch run folder behind");
    }

    [SkippableFact]
    public void A_batch_smaller_than_the_ranks_fails_on_every_rank_with_one_line()
    {
        string data = WriteAdditionData();
        var (rc, output) = MpiJobs.Run(dir, 2, $"train-sft --data {data} --out {Path.Combine(dir, "x")} --steps 2 --batch-size 1 --device cpu");
        Assert.NotEqual(0, rc);
        Assert.Contains("--batch-size 1 is smaller than the 2 ranks", output);
        Assert.False(Directory.Exists(Path.Combine(dir, "x")));
    }

    [SkippableFact]
    public void A_rank_killed_mid_run_ends_the_job_within_seconds_naming_it()
    {
        string data = WriteAdditionData();
        string marker = Guid.NewGuid().ToString("N");
        using var mpirun = MpiJobs.Start(dir, 2, $"-x ARCHER_TEST_MARKER={marker}", $"train-sft --data {data} --out {Path.Combine(dir, "k")} --steps 100000 --batch-size 8 --device cpu");
        var output = new StringBuilder();
        var training = new ManualResetEventSlim();
        mpirun.OutputDataReceived += (_, e) => { lock (output) output.AppendLine(e.Data); if (e.Data?.StartsWith("step 0", StringComparison.Ordinal) == true) training.Set(); };
        mpirun.ErrorDataReceived += (_, e) => { lock (output) output.AppendLine(e.Data); };
        mpirun.BeginOutputReadLine();
        mpirun.BeginErrorReadLine();
        try
        {
            Assert.True(training.Wait(TimeSpan.FromSeconds(90)), $"training did not start:\n{output}");
            int rank1 = RankPid(marker, 1);
            var clock = Stopwatch.StartNew();
            Process.GetProcessById(rank1).Kill();
            Assert.True(mpirun.WaitForExit(TimeSpan.FromSeconds(20)), "rank 0 still runs 20 s after rank 1 was killed");
            mpirun.WaitForExit();   // drains the output
            // Generous for a loaded 2-core machine: OpenMPI notices a dead rank within a second or two.
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(15), $"the job took {clock.Elapsed.TotalSeconds:F0} s to end");
            Assert.NotEqual(0, mpirun.ExitCode);
            Assert.Contains("process rank 1", output.ToString());   // mpirun: "process rank 1 with PID … exited on signal 9"
        }
        finally
        {
            if (!mpirun.HasExited) mpirun.Kill(entireProcessTree: true);
        }
    }

    /// <summary>The settings of the runs that resume: <see cref="Steps"/> steps, a checkpoint every 2.</summary>
    static TrainSftCommand.Settings ResumableSettings(string data, string outDir) =>
        new(data, null, 0.1, outDir, "tiny", null, Steps, Batch, null, null, Seed, 2, "cpu");

    static string ResumableArguments(string data, string outDir) =>
        $"train-sft --data {data} --out {outDir} --steps {Steps} --batch-size {Batch} --seed {Seed} --eval-every 2 --device cpu";

    /// <summary>The largest |Δw| of two runs' newest checkpoints.</summary>
    static double WorstDifference(string expectedRun, string actualRun)
    {
        float[] expected = MpiJobs.Weights(expectedRun), actual = MpiJobs.Weights(actualRun);
        Assert.Equal(expected.Length, actual.Length);
        double worst = 0;
        for (int i = 0; i < expected.Length; i++) worst = Math.Max(worst, Math.Abs(expected[i] - actual[i]));
        return worst;
    }

    [SkippableFact]
    public void A_one_process_run_resumed_by_two_ranks_ends_with_the_weights_of_one_uninterrupted_process()
    {
        string data = WriteAdditionData();
        string whole = Path.Combine(dir, "whole"), resumed = Path.Combine(dir, "resumed");
        TrainSftCommand.Run(ResumableSettings(data, whole), TextWriter.Null);
        // One process stops after step 3 as if killed: its newest checkpoint is step 2, its log already holds step 3.
        Assert.Throws<TrainingInterruptedException>(() => TrainSftCommand.Run(ResumableSettings(data, resumed) with { InterruptAfterStep = 3 }, TextWriter.Null));

        var (rc, output) = MpiJobs.Run(dir, 2, ResumableArguments(data, resumed) + " --resume");
        Assert.True(rc == 0, $"mpirun exited with {rc}:\n{output}");
        // Rank 0 alone logs; every rank read the checkpoint of --out (rank 1 from a fresh model or the first batches
        // would move its half of each gradient by ~lr = 5e-3, far outside the tolerance).
        Assert.Single(output.Split('\n'), l => l == $"resuming {resumed} after step 2");
        Assert.Contains("data-parallel over 2 ranks", output);
        // Steps 3 and 4 summed over two ranks: within the 2e-5 derived in Two_ranks_end_with_the_weights_of_one_process.
        double worst = WorstDifference(whole, resumed);
        log.WriteLine($"resumed by 2 ranks: largest |Δw| {worst:G3}");
        Assert.True(worst <= 2e-5, $"largest weight difference {worst:G3} > 2e-5");
        MpiJobs.RequireWholeRun(resumed, Enumerable.Range(1, Steps), ["step-000002", "step-000004"], dir);
    }

    [SkippableFact]
    public void A_rank_that_dies_mid_run_ends_the_job_naming_it_and_one_process_resumes_to_the_uninterrupted_weights()
    {
        string data = WriteAdditionData();
        string whole = Path.Combine(dir, "whole"), killed = Path.Combine(dir, "killed");
        TrainSftCommand.Run(ResumableSettings(data, whole), TextWriter.Null);

        // Rank 1 SIGKILLs itself after step 3 (the test hook), before any save; rank 0 is then in step 4's gradient sum.
        var delay = MpiJobs.RunKillingRank1(dir, ResumableArguments(data, killed), step: 3);
        log.WriteLine($"the job ended {delay.TotalSeconds:F1} s after rank 1 died");

        var resumeLog = new StringWriter();
        TrainSftCommand.Run(ResumableSettings(data, killed) with { Resume = true }, resumeLog);
        Assert.Contains($"resuming {killed} after step 2", resumeLog.ToString());
        double worst = WorstDifference(whole, killed);   // steps 1-2 on two ranks, 3-4 on one: within the same 2e-5
        log.WriteLine($"resumed by 1 process: largest |Δw| {worst:G3}");
        Assert.True(worst <= 2e-5, $"largest weight difference {worst:G3} > 2e-5");
        MpiJobs.RequireWholeRun(killed, Enumerable.Range(1, Steps), ["step-000002", "step-000004"], dir);
    }

    /// <summary>The process id of rank <paramref name="rank"/> of the job whose ranks carry <paramref name="marker"/> in their environment.</summary>
    static int RankPid(string marker, int rank)
    {
        foreach (var proc in Directory.GetDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(proc), out int pid)) continue;
            string environ;
            try { environ = File.ReadAllText(Path.Combine(proc, "environ")); } catch (IOException) { continue; } catch (UnauthorizedAccessException) { continue; }
            var vars = environ.Split('\0');
            if (vars.Contains($"ARCHER_TEST_MARKER={marker}") && vars.Contains($"OMPI_COMM_WORLD_RANK={rank}")) return pid;
        }
        throw new InvalidOperationException($"no process of rank {rank} found");
    }

    /// <summary>40 one-digit additions, seeded: a fixed data set that needs no other test's files.</summary>
    string WriteAdditionData()
    {
        var rng = new Random(1);
        var text = new StringBuilder();
        for (int i = 0; i < 40; i++)
        {
            int a = rng.Next(10), b = rng.Next(10);
            text.Append($"{{\"prompt\": \"{a}+{b}=\", \"completion\": \"{a + b}\"}}\n");
        }
        string path = Path.Combine(dir, "add.jsonl");
        File.WriteAllText(path, text.ToString());
        return path;
    }
}
