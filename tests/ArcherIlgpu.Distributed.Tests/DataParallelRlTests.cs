using ArcherIlgpu.Cli;
using Xunit;
using Xunit.Abstractions;

namespace ArcherIlgpu.Distributed.Tests;

/// <summary>A tiny model briefly SFT-trained on 1-digit addition: right on some problems and wrong on others, so RL groups have mixed rewards and RL steps really update.</summary>
public sealed class RlStartModel : IDisposable
{
    readonly string dir = Directory.CreateTempSubdirectory("archer-mpi-rl-start-").FullName;
    /// <summary>The train-sft run folder (train-rl's --model takes its newest checkpoint).</summary>
    public string Folder => Path.Combine(dir, "start");

    public RlStartModel()
    {
        string data = Path.Combine(dir, "add.jsonl");
        Archer("make-sft-data", "--task", "arithmetic", "--task-option", "operators=+", "min_digits=1", "max_digits=1", "--count", "80", "--out", data);
        // 60 steps of 16 leave the tiny model right on about a third of the problems (Cli.Tests' ResumeFixture measured it).
        Archer("train-sft", "--data", data, "--held-out-fraction", "0", "--out", Folder, "--steps", "60", "--batch-size", "16", "--seed", "1", "--device", "cpu");
    }

    /// <summary>Runs the archer command in this process (one process: no MPI).</summary>
    public static void Archer(params string[] args)
    {
        var output = new StringWriter();
        int rc = Program.Run(args, output, output);
        Assert.True(rc == 0, $"archer {string.Join(" ", args)} exited with {rc}:\n{output}");
    }

    public void Dispose() => Directory.Delete(dir, recursive: true);
}

/// <summary>
/// <c>mpirun -np 2 archer train-rl</c> against one process with the same global batch: the same rollouts (each
/// sample's RNG stream is its global row id), the same filter decisions and, up to float32 summation order, the
/// same weights. Skipped, saying why, where mpirun is not installed.
/// </summary>
public sealed class DataParallelRlTests(RlStartModel start, ITestOutputHelper log) : IClassFixture<RlStartModel>, IDisposable
{
    const int Steps = 3;
    readonly string dir = Directory.CreateTempSubdirectory("archer-mpi-rl-test-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    /// <summary>
    /// An algorithm at toy scale: 4 prompts × 4 samples a step, mini-batches of 2 prompts, no warm-up and a large rate so
    /// every optimizer step moves the weights. With 2 ranks each generates half of every prompt batch; a mini-batch may
    /// hold groups of one rank only, so the other joins its sums with no rows. Archer: KL to the frozen start, groups
    /// dropped without refill, sequence-mean loss. DAPO: no KL, dynamic sampling (3× oversampling, refill batches until 4
    /// informative groups), token-mean loss (divided by the mini-batch's valid tokens over all ranks).
    /// </summary>
    string[] RlArgs(string outDir, string algo = "archer", int promptsPerStep = 4, int microBatch = 4, int steps = Steps) =>
    [
        "train-rl", "--algo", algo, "--model", start.Folder, "--task", "arithmetic", "--task-option", "operators=+", "min_digits=1", "max_digits=1",
        "--steps", $"{steps}", "--group-size", "4", "--prompts-per-step", $"{promptsPerStep}", "--set", $"rl.mini_batch_prompts={Math.Min(2, promptsPerStep)}", "rl.warmup_steps=0",
        "rl.learning_rate=1e-3", "--sample-every", "0", "--micro-batch", $"{microBatch}", "--seed", "3", "--out", outDir, "--device", "cpu",
    ];

    [SkippableTheory]
    [InlineData("archer")]
    [InlineData("dapo")]
    public void Two_ranks_train_rl_to_the_weights_of_one_process(string algo)
    {
        string one = Path.Combine(dir, "one"), two = Path.Combine(dir, "two");
        RlStartModel.Archer(RlArgs(one, algo));
        // The ranks with the whole mini-batch per micro-batch (each pads only to its largest share), one process with 4 rows.
        var (rc, output) = MpiJobs.Run(dir, 2, string.Join(" ", RlArgs(two, algo, microBatch: 0)));
        Assert.True(rc == 0, $"mpirun exited with {rc}:\n{output}");
        // Rank 0 alone logs: the last step's line appears once, and the run says it is data-parallel.
        Assert.Single(output.Split('\n'), l => l.StartsWith($"step {Steps}/{Steps} ", StringComparison.Ordinal));
        Assert.Contains("data-parallel over 2 ranks", output);

        // The same samples and the same filter decisions, step by step: rewards are 0/1, so the means over 16 rollouts agree exactly.
        var expected = MpiJobs.Metrics(one);
        var actual = MpiJobs.Metrics(two);
        Assert.Equal(Steps, actual.Count);
        foreach (var key in new[] { "reward/mean", "batch/generated_groups", "batch/generation_batches", "batch/kept_groups", "response_length/mean", "optim/steps", "batch/valid_tokens" })
            Assert.True(expected.Select(m => m[key]).SequenceEqual(actual.Select(m => m[key])),
                $"{key}: one process {string.Join(", ", expected.Select(m => m[key]))}, two ranks {string.Join(", ", actual.Select(m => m[key]))}");
        Assert.True(expected.Sum(m => m["optim/steps"]) > 0, "no optimizer step was taken: the test would compare two untouched models");
        // Every other metric, reduced over the ranks (weighted means, maxima, sums), is one process's up to the weights'
        // rounding-level difference: measured within 2e-6 relative; 1e-4 leaves room, a wrong weighting is off by far more.
        // Metrics that measure rounding themselves (|ℓ_old − ℓ_rollout|, a few 1e-7) are held to 1e-6 absolute.
        for (int step = 0; step < Steps; step++)
            foreach (var (key, single) in expected[step].Where(kv => !kv.Key.StartsWith("time/", StringComparison.Ordinal) && !kv.Key.StartsWith("perf/", StringComparison.Ordinal)))
            {
                double reduced = actual[step][key];
                Assert.True(double.IsNaN(single) ? double.IsNaN(reduced) : Math.Abs(reduced - single) <= 1e-4 * Math.Abs(single) + 1e-6,
                    $"step {step} {key}: one process {single:R}, two ranks {reduced:R}");
            }

        // Not bit-identical, and no choice of micro-batches makes it so: the backward adds row after row into the gradient
        // buffer (the cpu MatMulBackward accumulates), so one process computes ((a₁ + a₂) + b₁) + b₂ where two ranks compute
        // (a₁ + a₂) + (b₁ + b₂); float32 rounding then differs by a few ulp per element (padding every rank to the same T
        // was tried: still 6e-4 for archer with 4-row micro-batches on both sides). AdamW
        // (which divides by sqrt(v)) and 18 optimizer steps amplify that. The yardstick is the same amplification of
        // the same kind of difference inside one process: the one-process run with the whole mini-batch in one
        // backward (--micro-batch 0) against the one with 4-row micro-batches is the same update summed in another
        // order. Measured (‖Δw‖, 2 ranks vs 1 process / micro-batch 0 vs 4 / moved by RL): archer 8.7e-4 / 5.6e-4 / 0.62,
        // dapo 4.0e-4 / 3.2e-4 / 0.37. A wrong update is far outside 4×: dapo with each rank dividing by its own valid
        // tokens gives 2.6e-2; without the gradient sum the ranks' rollouts already part at step 2.
        string reordered = Path.Combine(dir, "reordered");
        RlStartModel.Archer(RlArgs(reordered, algo, microBatch: 0));
        float[] want = MpiJobs.Weights(one), got = MpiJobs.Weights(two), before = MpiJobs.Weights(start.Folder), other = MpiJobs.Weights(reordered);
        double difference = Distance(want, got), yardstick = Distance(want, other), moved = Distance(want, before);
        log.WriteLine($"{algo}: ‖Δw‖ 2 ranks vs 1 process {difference:G3}, micro-batch 0 vs 4 in one process {yardstick:G3}, moved by RL {moved:G3}; " +
                      $"generation batches {string.Join(",", expected.Select(m => m["batch/generation_batches"]))}, kept groups {string.Join(",", expected.Select(m => m["batch/kept_groups"]))}");
        Assert.True(moved > 100 * yardstick, $"RL moved the weights by {moved:G3}: too little to tell a wrong update from rounding ({yardstick:G3})");
        Assert.True(difference <= 4 * yardstick, $"‖w(2 ranks) − w(1 process)‖ = {difference:G3} > 4 × {yardstick:G3}, the spread of summation order alone");
        Assert.False(Directory.EnumerateDirectories(dir, "archer-rank1-*").Any(), "rank 1 left its scratch run folder behind");
    }

    [SkippableFact]
    public void Fewer_prompts_per_step_than_ranks_fails_with_one_line()
    {
        string outDir = Path.Combine(dir, "x");
        var (rc, output) = MpiJobs.Run(dir, 2, string.Join(" ", RlArgs(outDir, promptsPerStep: 1)));
        Assert.NotEqual(0, rc);
        const string Expected = "train-rl: error: prompts_per_step 1 is smaller than the 2 ranks: each rank needs at least one whole prompt group per step";
        Assert.True(output.Contains(Expected, StringComparison.Ordinal), output);
        Assert.False(Directory.Exists(outDir));
    }

    /// <summary>
    /// The resume tests' references, archer with its KL reference: one process's uninterrupted run with the whole
    /// mini-batch per backward (the resumed runs' --micro-batch 0), and ‖Δw‖ to the same run with 4-row micro-batches,
    /// the spread of summation order alone (the yardstick of <see cref="Two_ranks_train_rl_to_the_weights_of_one_process"/>).
    /// </summary>
    (string Whole, double Yardstick) Uninterrupted()
    {
        string whole = Path.Combine(dir, "whole"), reordered = Path.Combine(dir, "reordered");
        RlStartModel.Archer(RlArgs(whole, microBatch: 0));
        RlStartModel.Archer(RlArgs(reordered, microBatch: 4));
        return (whole, Distance(MpiJobs.Weights(whole), MpiJobs.Weights(reordered)));
    }

    /// <summary>‖w(run) − w(whole)‖ within 4 × the yardstick, as the two-rank run's; and RL really moved the weights.</summary>
    void RequireNearWhole(string run, string whole, double yardstick, string what)
    {
        double difference = Distance(MpiJobs.Weights(whole), MpiJobs.Weights(run)), moved = Distance(MpiJobs.Weights(whole), MpiJobs.Weights(start.Folder));
        log.WriteLine($"{what}: ‖Δw‖ to one uninterrupted process {difference:G3}, micro-batch 0 vs 4 {yardstick:G3}, moved by RL {moved:G3}");
        Assert.True(moved > 100 * yardstick, $"RL moved the weights by {moved:G3}: too little to tell a wrong update from rounding ({yardstick:G3})");
        Assert.True(difference <= 4 * yardstick, $"{what}: ‖Δw‖ = {difference:G3} > 4 × {yardstick:G3}, the spread of summation order alone");
    }

    [SkippableFact]
    public void A_one_process_run_resumed_by_two_ranks_ends_near_the_weights_of_one_uninterrupted_process()
    {
        var (whole, yardstick) = Uninterrupted();
        string resumed = Path.Combine(dir, "resumed");
        // One step in one process; the same run, --steps being the total, resumed to 3 by two ranks. (RL's schedule
        // does not depend on --steps: one process resumed this way ends bit-identical, Cli.Tests' ResumeTests.)
        RlStartModel.Archer(RlArgs(resumed, microBatch: 0, steps: 1));
        var (rc, output) = MpiJobs.Run(dir, 2, string.Join(" ", RlArgs(resumed, microBatch: 0)) + " --resume");
        Assert.True(rc == 0, $"mpirun exited with {rc}:\n{output}");
        Assert.Single(output.Split('\n'), l => l.Contains($"resuming {resumed} after step 1", StringComparison.Ordinal));
        Assert.Contains("data-parallel over 2 ranks", output);
        // Both ranks read the checkpoint's weights, AdamW moments, KL reference and data cursor from --out: a rank that
        // started elsewhere would draw other prompts or compute its half of the gradient at other weights.
        RequireNearWhole(resumed, whole, yardstick, "1 step in 1 process, 2 on 2 ranks");
        MpiJobs.RequireWholeRun(resumed, Enumerable.Range(0, Steps), ["step-000002", "step-000003"], dir);
    }

    [SkippableFact]
    public void A_rank_that_dies_mid_run_ends_the_job_naming_it_and_one_process_resumes_near_the_uninterrupted_weights()
    {
        var (whole, yardstick) = Uninterrupted();
        string killed = Path.Combine(dir, "killed");
        // Rank 1 SIGKILLs itself after step 2 (the test hook), before its save; rank 0 saves step 2 (or is ended while
        // saving: the save is atomic) and then waits in step 3's first collective call.
        var delay = MpiJobs.RunKillingRank1(dir, string.Join(" ", RlArgs(killed, microBatch: 0)), step: 2);
        log.WriteLine($"the job ended {delay.TotalSeconds:F1} s after rank 1 died");

        RlStartModel.Archer(RlArgs(killed, microBatch: 0).Append("--resume").ToArray());
        RequireNearWhole(killed, whole, yardstick, "2 ranks killed after step 2, resumed by 1 process");
        MpiJobs.RequireWholeRun(killed, Enumerable.Range(0, Steps), ["step-000002", "step-000003"], dir);
    }

    static double Distance(float[] a, float[] b) => Math.Sqrt(a.Zip(b).Sum(p => (double)(p.First - p.Second) * (p.First - p.Second)));
}
