using System.CommandLine;
using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using ArcherIlgpu.Model;
using ArcherIlgpu.Model.IO;
using ArcherIlgpu.Model.Tokenizers;
using ArcherIlgpu.Model.Training;
using ArcherIlgpu.Rl.Training;
using ArcherIlgpu.Runs;

namespace ArcherIlgpu.Cli;

/// <summary>
/// state.json of a checkpoint, for every command that writes runs (train-sft, train-rl, demo): how far the
/// run is and what the weights alone do not say. <see cref="Step"/> is the checkpoint's step (its folder
/// name); <see cref="Phase"/> is the command's stage ("sft", "rl", or "done" once a demo has finished).
/// </summary>
public sealed record TrainingState(string Phase, long Step)
{
    /// <summary>SFT optimizer steps taken (the SFT schedule and example order continue from here).</summary>
    public int SftStep { get; init; }
    /// <summary>The RL trainer's step, data cursor and RNG counter, once RL has started.</summary>
    public RlTrainerState? Rl { get; init; }
    /// <summary>train-sft: the held-out loss before training, and the newest one measured.</summary>
    public double HeldOutLossStart { get; init; } = double.NaN;
    public double HeldOutLoss { get; init; } = double.NaN;
    /// <summary>demo: the evaluations already done, so a resume never repeats one.</summary>
    public JsonObject? SftEval { get; init; }
    public JsonObject? RlEval { get; init; }
}

/// <summary>
/// The checkpoints of train-sft, train-rl and the demo, all through one <see cref="CheckpointStore"/>: a
/// checkpoint is a model folder (config.json, model.safetensors, tokenizer, so eval and generate load it)
/// plus optimizer.safetensors, state.json and, for algorithms with a KL term, reference.safetensors. It
/// is written under a temporary name and renamed when complete, so a kill at any moment leaves the
/// previous checkpoints whole and a resume never sees a mixture of two saves.
/// </summary>
public static class TrainingCheckpoint
{
    public const string StateFile = "state.json";
    public const string ReferenceFile = "reference.safetensors";
    /// <summary>train-sft and train-rl keep the two newest checkpoints (the demo's keep_checkpoints decides for it).</summary>
    public const int KeepLast = 2;

    public static CheckpointInfo Save(CheckpointStore store, TrainingState state, CausalLm model, ITokenizer tokenizer,
        AdamWOptimizer optimizer, float[]? reference = null) =>
        store.Save(state.Step, dir =>
        {
            Checkpoint.Save(model, dir, optimizer);
            TokenizerFiles.Save(tokenizer, dir);
            if (reference is not null) SafeTensors.Write(Path.Combine(dir, ReferenceFile), Models.ToFileTensors(model.Config, reference));
            // state.json last is not needed for safety (the folder is renamed only when complete), but it keeps the
            // file order of a checkpoint the same for the kill-during-save tests.
            Json.WriteAtomic(Path.Combine(dir, StateFile), state);
        });

    public static TrainingState ReadState(CheckpointInfo checkpoint) => Json.Read<TrainingState>(checkpoint.File(StateFile));

    /// <summary>The newest checkpoint of <paramref name="run"/> and its state, or a clear error naming the folder.</summary>
    public static (CheckpointInfo Checkpoint, TrainingState State) Latest(RunFolder run, string command)
    {
        var latest = run.Checkpoints().Latest()
            ?? throw new CliInputException($"--resume: '{run.Path}' has no checkpoint to resume (expected {run.CheckpointsDir}/step-NNNNNN/; " +
                                           $"{command} saves one periodically, at the end and on Ctrl-C); start the run again with --overwrite");
        return (latest, ReadState(latest));
    }

    /// <summary>--overwrite of train-sft and train-rl.</summary>
    public static Option<bool> OverwriteOption() => new("--overwrite") { Description = "start a fresh run even if --out holds one (its files are deleted)" };

    /// <summary>Refuses --resume with --overwrite: one continues the run in --out, the other replaces it.</summary>
    public static void RequireResumeOrOverwrite(bool resume, bool overwrite)
    {
        if (resume && overwrite) throw new CliInputException("give either --resume (continue the run in --out) or --overwrite (replace it), not both");
    }

    /// <summary>Takes the run's writer lock; says so when it took over the lock of a process that died (shown as <paramref name="shownAs"/>).</summary>
    public static RunLock Lock(RunFolder run, string shownAs, TextWriter log)
    {
        var held = run.Lock();
        if (held.TookOverFrom is int dead) log.WriteLine($"note: took over the lock of {shownAs} from pid {dead}, which is no longer running");
        return held;
    }

    /// <summary>A resume's --steps is a total: refused below the step the run has reached.</summary>
    public static void RequireStepsReach(int steps, long done, string shownAs)
    {
        if (steps < done)
            throw new CliInputException($"the run in {shownAs} is already at step {done}; --steps is the total number of steps, so give --steps {done} or more");
    }

    public static void LoadOptimizer(AdamWOptimizer optimizer, CausalLm model, CheckpointInfo checkpoint)
    {
        if (!Checkpoint.LoadOptimizer(optimizer, model, checkpoint.Path))
            throw new CliInputException($"{checkpoint.File(Checkpoint.OptimizerFile)}: not found; the checkpoint cannot be resumed exactly without the optimizer moments");
    }

    /// <summary>The checkpoint's KL reference weights; an error when the algorithm needs them and they are missing.</summary>
    public static float[] ReadReference(CheckpointInfo checkpoint, IModelConfig config)
    {
        string path = checkpoint.File(ReferenceFile);
        if (!File.Exists(path)) throw new CliInputException($"{path}: not found; the algorithm's KL term needs the run's reference weights to resume");
        return Checkpoint.ReadParameters(config, path);
    }
}

/// <summary>Thrown by a command's test hook (InterruptAfterStep): it stopped right after this step, as if killed.</summary>
public sealed class TrainingInterruptedException(int step) : Exception($"interrupted after step {step}")
{
    public int Step { get; } = step;
}

/// <summary>Ctrl-C stopped a run after a step; the checkpoint of that step is saved.</summary>
public sealed class RunInterruptedException(long step, string checkpoint) : Exception($"interrupted after step {step}")
{
    public long Step { get; } = step;
    public string Checkpoint { get; } = checkpoint;
}

/// <summary>
/// Ctrl-C for the commands that train: the first SIGINT asks the loop to stop after the current step, save
/// a checkpoint and print the command that resumes (exit code 130, as for a shell's Ctrl-C); a second one
/// kills the process at once (the newest complete checkpoint is still there). Tests pass a token instead.
/// </summary>
public sealed class StopRequest : IDisposable
{
    public const int ExitCode = 130;

    readonly PosixSignalRegistration? sigint;
    readonly CancellationToken token;
    volatile bool requested;

    StopRequest(CancellationToken token, bool listen)
    {
        this.token = token;
        if (listen) sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSigint);
    }

    /// <summary>Listens for SIGINT while the run lasts; <paramref name="token"/> is an extra (test) stop signal.</summary>
    public static StopRequest Listen(CancellationToken token = default) => new(token, listen: true);

    public bool IsRequested => requested || token.IsCancellationRequested;

    void OnSigint(PosixSignalContext context)
    {
        if (requested) return;   // the second Ctrl-C: let the default action end the process
        requested = true;
        context.Cancel = true;
        Console.Error.WriteLine("archer: stopping after this step to save a checkpoint (Ctrl-C again to kill at once)");
    }

    /// <summary>
    /// Runs a command's body; a <see cref="RunInterruptedException"/> becomes the resume instructions and exit 130.
    /// <paramref name="resumeArgs"/> is the command line that continues the run.
    /// </summary>
    public static int Handle(TextWriter output, Func<string> resumeCommand, Func<int> body)
    {
        try
        {
            return body();
        }
        catch (RunInterruptedException e)
        {
            output.WriteLine($"interrupted after step {e.Step}; saved the checkpoint {e.Checkpoint}");
            output.WriteLine($"resume with: {resumeCommand()}");
            return ExitCode;
        }
    }

    /// <summary>
    /// "archer COMMAND ARGS --resume" from what the user typed: --overwrite dropped (a resume must not
    /// replace the run), --resume added when missing. Arguments are quoted for a POSIX shell where needed.
    /// </summary>
    public static string ResumeCommand(ParseResult parse)
    {
        var args = parse.Tokens.Select(t => t.Value).Where(a => a != "--overwrite").ToList();
        if (!args.Contains("--resume")) args.Add("--resume");
        return "archer " + string.Join(" ", args.Select(Quote));
    }

    static string Quote(string arg) =>
        arg.Length > 0 && arg.All(c => char.IsAsciiLetterOrDigit(c) || "-_=.,/:+@%".Contains(c)) ? arg : "'" + arg.Replace("'", "'\\''") + "'";

    public void Dispose() => sigint?.Dispose();
}
