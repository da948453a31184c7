using ArcherIlgpu.Cli;
using ArcherIlgpu.Cli.Demo;
using ArcherIlgpu.Runs;
using Xunit;

namespace ArcherIlgpu.Distributed.Tests;

/// <summary>
/// <c>mpirun -np 2 archer demo</c> against one process: the quick preset cut to 40 SFT steps and 3 Archer steps
/// (each SFT step's 32 examples and each RL step's 4 prompts split between the ranks). Skipped, saying why, where
/// mpirun is not installed.
/// </summary>
public sealed class DataParallelDemoTests : IDisposable
{
    readonly string dir = Directory.CreateTempSubdirectory("archer-mpi-demo-test-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    static string[] DemoArgs(string runsDir, params string[] more) =>
        ["demo", "--preset", "quick", "--device", "cpu", "--runs-dir", runsDir, "--set", "sft.steps=40", "rl.steps=3", .. more];

    [SkippableFact]
    public void Two_ranks_run_the_demo_of_one_process_and_rank_0_alone_writes_and_prints()
    {
        string one = Path.Combine(dir, "one"), two = Path.Combine(dir, "two");
        var single = new StringWriter();
        Assert.Equal(0, Program.Run(DemoArgs(one), single, single));
        var (rc, output) = MpiJobs.Run(dir, 2, string.Join(" ", DemoArgs(two)));
        Assert.True(rc == 0, $"mpirun exited with {rc}:\n{output}");
        Assert.Contains("data-parallel over 2 ranks", output);
        // Rank 0 alone prints the table and writes one run folder; rank 1 removed its scratch folder.
        Assert.Single(output.Split('\n'), l => l.StartsWith("| held-out metric", StringComparison.Ordinal));
        string run = Assert.Single(Directory.GetDirectories(two));
        Assert.False(Directory.EnumerateDirectories(dir, "archer-rank*").Any(), "rank 1 left its scratch run folder behind");

        // The same table: the SFT model and the RL rollouts of one process (the samples are drawn with every sample's
        // global row as RNG stream, and the weights differ only in float32 summation order; see the SFT and RL tests).
        Assert.Equal(Table(single.ToString()), Table(output));
        RequireSameMetrics(Assert.Single(Directory.GetDirectories(one)), run);
        Assert.Contains(MpiJobs.Metrics(run), m => m.TryGetValue("reward/mean", out var r) && r > 0);   // RL saw rewards: its steps really updated
    }

    [SkippableFact]
    public void A_one_process_demo_stopped_in_RL_resumes_on_two_ranks_to_the_same_table()
    {
        string one = Path.Combine(dir, "one");
        var single = new StringWriter();
        Assert.Equal(0, Program.Run(DemoArgs(one), single, single));

        // One process stops as if killed after RL's first step (global step 41): the newest checkpoint is SFT's end, step 40.
        var config = RunPresets.Registry.Bind("quick", sets: ["device=cpu", "sft.steps=40", "rl.steps=3"]);
        var folder = RunFolder.Create(Path.Combine(dir, "stopped"), config.Name);
        folder.WriteConfig(config);
        Assert.Throws<DemoInterruptedException>(() => new DemoJob(config, folder, TextWriter.Null, interactive: false) { InterruptAfterStep = 41 }.Run());

        var (rc, output) = MpiJobs.Run(dir, 2, $"demo --resume {folder.Path} --device cpu");
        Assert.True(rc == 0, $"mpirun exited with {rc}:\n{output}");
        Assert.Single(output.Split('\n'), l => l.StartsWith($"resuming {folder.Path} from checkpoint step 40", StringComparison.Ordinal));
        // Both ranks continued from the run folder's checkpoint (rank 1 from a fresh model would draw other samples).
        Assert.Equal(Table(single.ToString()), Table(output));
        RequireSameMetrics(Assert.Single(Directory.GetDirectories(one)), folder.Path);
        Assert.False(Directory.EnumerateDirectories(dir, "archer-rank*").Any(), "rank 1 left its scratch run folder behind");
    }

    [SkippableFact]
    public void A_demo_sft_batch_smaller_than_the_ranks_is_refused_before_training()
    {
        string runs = Path.Combine(dir, "runs");
        var (rc, output) = MpiJobs.Run(dir, 2, string.Join(" ", DemoArgs(runs, "sft.batch_size=1")));
        Assert.NotEqual(0, rc);
        Assert.Contains("archer demo: error: sft.batch_size 1 is smaller than the 2 ranks", output);
        Assert.False(Directory.Exists(runs));
    }

    /// <summary>
    /// Every logged number of <paramref name="actual"/>, step by step, is <paramref name="expected"/>'s: the same SFT losses
    /// and RL rewards, the rest up to summation order (the RL test's 1e-4 relative + 1e-6 absolute; rewards and counts
    /// are exact there and here).
    /// </summary>
    static void RequireSameMetrics(string expected, string actual)
    {
        var want = MpiJobs.Metrics(expected);
        var got = MpiJobs.Metrics(actual);
        Assert.Equal(want.Select(m => m["step"]), got.Select(m => m["step"]));
        for (int i = 0; i < want.Count; i++)
            foreach (var (key, value) in want[i].Where(kv => !kv.Key.StartsWith("time/", StringComparison.Ordinal) && !kv.Key.StartsWith("perf/", StringComparison.Ordinal)))
                Assert.True(got[i].TryGetValue(key, out double other) && Math.Abs(other - value) <= 1e-4 * Math.Abs(value) + 1e-6,
                    $"step {want[i]["step"]} {key}: one process {value:R}, two ranks {(got[i].TryGetValue(key, out double g) ? g.ToString("R") : "missing")}");
    }

    /// <summary>The demo's table lines.</summary>
    static string[] Table(string output) => output.Split('\n').Where(l => l.StartsWith('|')).ToArray();
}
