using System.Text.Json;
using System.Text.Json.Serialization;
using ArcherStudy;
using Xunit;

namespace ArcherIlgpu.Distributed.Tests;

/// <summary>
/// <c>mpirun -np 2 ArcherStudy.dll</c>: the quick study with two methods and two seeds (4 runs) dealt to 2 ranks
/// against the same study in one process, then resumed after one finished run is deleted. Skipped, saying why,
/// where mpirun is not installed.
/// </summary>
public sealed class DistributedStudyTests : IDisposable
{
    /// <summary>The quick study cut to 2 methods (seeds 1 and 2, 6 RL steps, the quick SFT): ~4 s in one process.</summary>
    const string Arguments = "--quick --algorithms grpo,archer";

    readonly string dir = Directory.CreateTempSubdirectory("archer-mpi-study-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    [SkippableFact]
    public void Two_ranks_give_the_runs_of_one_process_and_a_resume_redoes_only_the_missing_run()
    {
        string one = Path.Combine(dir, "one"), two = Path.Combine(dir, "two");
        var single = Study.Run(StudyOptions.Parse([.. Arguments.Split(' '), "--out", one]));
        Assert.Equal(4, single.Runs.Count);
        // The comparison must be able to fail: the runs learn (optimizer steps taken) and differ between seeds.
        Assert.All(single.Runs, r => Assert.True(r.OptimizerSteps > 0, $"{r.Algorithm} seed {r.Seed} took no optimizer step"));
        Assert.NotEqual(Fingerprint(single.Runs[0]), Fingerprint(single.Runs[2]).Replace("\"Seed\":2", "\"Seed\":1"));

        var (rc, output) = MpiJobs.Run(dir, 2, $"{Arguments} --out {two}", "ArcherStudy.dll");
        Assert.True(rc == 0, $"mpirun exited with {rc}:\n{output}");
        // Run i of the 4 still to do goes to rank i mod 2 (order: seed 1 grpo, archer; seed 2 grpo, archer).
        Assert.Contains("[rank 0/2 ", output);
        Assert.Contains("4 of 4 runs to do over 2 ranks; this rank's: grpo seed 1, grpo seed 2", output);
        Assert.Contains("4 of 4 runs to do over 2 ranks; this rank's: archer seed 1, archer seed 2", output);
        AssertSameRuns(single, Reread(two));
        Assert.True(File.Exists(Path.Combine(two, "results.md")), "rank 0 wrote no report");

        // Resume: delete one finished run; the same command redoes it alone (on rank 0, the first of the runs still to do).
        var resultFiles = Directory.GetFiles(Path.Combine(two, "runs"), StudyRuns.ResultFile, SearchOption.AllDirectories)
            .ToDictionary(f => f, File.GetLastWriteTimeUtc);
        string deleted = Path.Combine(two, "runs", "archer-seed2");
        Directory.Delete(deleted, recursive: true);
        (rc, output) = MpiJobs.Run(dir, 2, $"{Arguments} --out {two}", "ArcherStudy.dll");
        Assert.True(rc == 0, $"mpirun (resume) exited with {rc}:\n{output}");
        Assert.Contains("1 of 4 runs to do over 2 ranks; this rank's: archer seed 2", output);
        Assert.Contains("1 of 4 runs to do over 2 ranks; this rank's: none", output);
        Assert.Equal(3, resultFiles.Keys.Count(f => !f.StartsWith(deleted, StringComparison.Ordinal)));
        foreach (var (file, written) in resultFiles.Where(kv => !kv.Key.StartsWith(deleted, StringComparison.Ordinal)))
            Assert.True(File.GetLastWriteTimeUtc(file) == written, $"{file} was written again");
        AssertSameRuns(single, Reread(two));
    }

    [SkippableFact]
    public void A_failing_rank_ends_the_study_naming_it()
    {
        string two = Path.Combine(dir, "two");
        // archer seed 1 is rank 1's run; a stray file in its folder makes rank 1 refuse to start it.
        Directory.CreateDirectory(Path.Combine(two, "runs", "archer-seed1"));
        File.WriteAllText(Path.Combine(two, "runs", "archer-seed1", "notes.txt"), "not a run");
        var (rc, output) = MpiJobs.Run(dir, 2, $"{Arguments} --seeds 1 --out {two}", "ArcherStudy.dll");
        Assert.NotEqual(0, rc);
        Assert.Contains("archer-seed1' is not empty and holds no run", output);
        Assert.Contains("ArcherStudy: rank 1 of 2 failed (exit code 2): ending every rank", output);
        Assert.False(File.Exists(Path.Combine(two, "results.md")), "a report was written although a rank failed");
    }

    /// <summary>The SFT start's evaluation and every run of the study in <paramref name="folder"/>, read back (each must be finished).</summary>
    static (EvalSummary Start, List<RunResult> Runs) Reread(string folder)
    {
        var o = StudyOptions.Parse([.. Arguments.Split(' '), "--out", folder]);
        var layout = new StudyRuns(o);
        Func<T> NotFinished<T>(string what) => () => throw new InvalidOperationException($"{what} in {folder} is not finished");
        var start = layout.Sft(_ => { }, NotFinished<(ArcherIlgpu.Model.CausalLm, SftResult)>("the SFT")).Result.Eval;
        var runs = o.SeedList.SelectMany(seed => o.AlgorithmList.Select(a => (a, seed)))
            .Select(r => layout.Rl(r.a, r.seed, _ => { }, NotFinished<RunResult>($"{r.a} seed {r.seed}"))).ToList();
        return (start, runs);
    }

    static void AssertSameRuns(StudyResult expected, (EvalSummary Start, List<RunResult> Runs) actual)
    {
        Assert.Equal(Json(expected.Start), Json(actual.Start));
        Assert.Equal(expected.Runs.Select(Fingerprint), actual.Runs.Select(Fingerprint));
    }

    /// <summary>Everything a run's result holds but its wall times (the run's seconds, each step's time/step_s).</summary>
    static string Fingerprint(RunResult r) => Json(new
    {
        r.Algorithm, r.Seed, r.Eval, r.GeneratedSamples, r.OptimizerSteps, r.SkippedSteps,
        Curve = r.Curve.Select(row => row.Where(kv => kv.Key != "time/step_s").OrderBy(kv => kv.Key, StringComparer.Ordinal).ToList()),
    });

    static readonly JsonSerializerOptions JsonOptions = new() { NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals };

    static string Json(object value) => JsonSerializer.Serialize(value, JsonOptions);
}
