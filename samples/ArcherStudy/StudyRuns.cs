using System.Globalization;
using ArcherIlgpu.Model;
using ArcherIlgpu.Model.Tokenizers;
using ArcherIlgpu.Runs;

namespace ArcherStudy;

/// <summary>
/// The study folder on the run system: <c>OUT/sft/</c> is the SFT run and <c>OUT/runs/ALGORITHM-seedN/</c> one run
/// per method and seed, each a <see cref="RunFolder"/> (run.json, run.lock, config.json with the settings that
/// decide its result, metrics.jsonl, and checkpoints/ written through <see cref="CheckpointStore"/>: whole folders
/// renamed when complete). A run whose checkpoint holds <c>result.json</c> is finished and read back; a run started
/// but not finished (killed) is started again from its beginning; a run whose settings differ from the study's
/// now is refused, naming every differing setting. The SFT checkpoint keeps the weights (every RL run starts from
/// them); an RL run's checkpoint keeps only its result, so a finished study stays small enough to commit.
/// </summary>
public sealed class StudyRuns(StudyOptions o)
{
    public const string ResultFile = "result.json";

    public string SftDir => Path.Combine(o.OutDir, "sft");
    public string RunDir(string algorithm, int seed) => Path.Combine(o.OutDir, "runs", $"{algorithm}-seed{seed}");

    static string S(double v) => v.ToString("R", CultureInfo.InvariantCulture);

    /// <summary>Everything that decides the SFT checkpoint and its evaluation.</summary>
    public Dictionary<string, string> SftSettings() => new(StringComparer.Ordinal)
    {
        ["task"] = o.TaskDescription, ["model"] = o.ModelPreset,
        ["sft_steps"] = $"{o.SftSteps}", ["sft_lr"] = S(o.SftLr), ["sft_batch"] = $"{o.SftBatch}", ["sft_examples"] = $"{o.SftExamples}",
        ["sft_correct_share"] = S(o.SftCorrectShare), ["sft_validation"] = $"{o.SftValidation}",
        ["eval_problems"] = $"{o.EvalProblems}", ["eval_samples"] = $"{o.EvalSamples}", ["max_response_tokens"] = $"{o.MaxResponseTokens}",
    };

    /// <summary>The SFT settings plus everything that decides one RL run.</summary>
    public Dictionary<string, string> RlSettings(string algorithm, int seed)
    {
        var s = SftSettings();
        s["algorithm"] = algorithm; s["seed"] = $"{seed}";
        s["steps"] = $"{o.Steps}"; s["prompts"] = $"{o.Prompts}"; s["group_size"] = $"{o.GroupSize}";
        s["lr"] = S(o.LearningRate); s["warmup_steps"] = $"{o.WarmupSteps}";
        s["curve_every"] = $"{o.CurveEvery}"; s["curve_problems"] = $"{o.CurveProblems}"; s["curve_samples"] = $"{o.CurveSamples}";
        return s;
    }

    /// <summary>The SFT stage: read back when finished, else trained (<paramref name="train"/>) and saved. Returns its result and weights.</summary>
    public (SftResult Result, float[] Weights) Sft(Action<string> log, Func<(CausalLm Model, SftResult Result)> train)
    {
        var run = RunFolder.At(SftDir);
        var finished = Finished<SftResult>(run, SftSettings());
        if (finished is not null)
        {
            var checkpoint = run.Checkpoints().Latest()!;
            log($"SFT: done earlier ({run.Path}), {finished.Seconds:F0} s");
            var config = Models.LoadConfig(checkpoint.Path);
            return (finished, Checkpoint.ReadParameters(config, checkpoint.File(Checkpoint.WeightsFile)));
        }
        using var held = Start(run, "study-sft", SftSettings(), log);
        var (model, result) = train();
        using (model.Backend)
        using (model)
        {
            run.Checkpoints(keepLast: 1).Save(o.SftSteps, dir =>
            {
                Checkpoint.Save(model, dir);
                TokenizerFiles.Save(CharTokenizer.ForArithmetic(), dir);
                Json.WriteAtomic(Path.Combine(dir, ResultFile), result);
            });
            return (result, model.DownloadParameters());
        }
    }

    /// <summary>Replaces the finished SFT stage's result (completed with measurements added later); its weights stay.</summary>
    public SftResult SaveSftResult(SftResult result)
    {
        var checkpoint = RunFolder.At(SftDir).Checkpoints().Latest()
            ?? throw new RunFolderException($"'{SftDir}' holds no finished SFT checkpoint to update");
        Json.WriteAtomic(checkpoint.File(ResultFile), result);
        return result;
    }

    /// <summary>One RL run: read back when finished, else computed and its result saved; the curve goes to metrics.jsonl.</summary>
    public RunResult Rl(string algorithm, int seed, Action<string> log, Func<RunResult> compute)
    {
        var run = RunFolder.At(RunDir(algorithm, seed));
        var settings = RlSettings(algorithm, seed);
        var finished = Finished<RunResult>(run, settings);
        if (finished is not null)
        {
            log($"{algorithm} seed {seed}: done earlier ({run.Path}), {finished.Seconds:F0} s");
            return finished;
        }
        using var held = Start(run, $"study-{algorithm}", settings, log);
        var result = compute();
        using (var metrics = run.OpenMetrics())
            foreach (var row in result.Curve) metrics.Write((long)row["step"], row.Where(kv => kv.Key != "step"));
        run.Checkpoints(keepLast: 1).Save(o.Steps, dir => Json.WriteAtomic(Path.Combine(dir, ResultFile), result));
        return result;
    }

    /// <summary>Whether the run is finished; one with other settings than the study's now is refused (as when read back).</summary>
    public bool Finished(string algorithm, int seed) => Finished<RunResult>(RunFolder.At(RunDir(algorithm, seed)), RlSettings(algorithm, seed)) is not null;

    /// <summary>Whether the SFT stage's result is saved (a check for ranks that wait for it).</summary>
    public bool SftSaved() => ResultSaved(SftDir);

    /// <summary>Whether the run's result is saved (a check for ranks that wait for it while other ranks write their runs).</summary>
    public bool Saved(string algorithm, int seed) => ResultSaved(RunDir(algorithm, seed));

    static bool ResultSaved(string dir)
    {
        try
        {
            return RunFolder.At(dir).Checkpoints().Latest() is { } latest && File.Exists(latest.File(ResultFile));
        }
        catch (IOException)
        {
            return false;   // another rank is (re)starting this run folder right now
        }
    }

    /// <summary>The finished run's result, or null when the folder holds no finished run; a run with other settings is refused.</summary>
    static T? Finished<T>(RunFolder run, Dictionary<string, string> settings) where T : class
    {
        if (!run.HoldsRun || !File.Exists(run.ConfigPath)) return null;
        run.RequireSameSettings(Pairs(run.ReadSettings()), Pairs(settings), []);
        var latest = run.Checkpoints().Latest();
        return latest is not null && File.Exists(latest.File(ResultFile)) ? Json.Read<T>(latest.File(ResultFile)) : null;
    }

    /// <summary>Takes the run's lock and starts it afresh (a run killed before its result was saved starts again).</summary>
    static RunLock Start(RunFolder run, string name, Dictionary<string, string> settings, Action<string> log)
    {
        if (!run.IsEmpty && !run.HoldsRun)
            throw new RunFolderException($"'{run.Path}' is not empty and holds no run ({RunFolder.MarkerFile} is missing); move it away to run the study here");
        var held = run.Lock();
        if (run.HoldsRun) log($"{run.Path}: unfinished (stopped before its result was saved); starting it again");
        run.Begin(name, held);
        run.WriteSettings(settings);
        return held;
    }

    static IEnumerable<(string Key, string Value)> Pairs(Dictionary<string, string> d) => d.Select(kv => (kv.Key, kv.Value));
}
