using System.CommandLine;
using ArcherIlgpu.Cli.Demo;
using ArcherIlgpu.Distributed;
using ArcherIlgpu.Runs;

namespace ArcherIlgpu.Cli;

/// <summary>
/// <c>archer demo</c>: the whole pipeline in one command with no arguments: SFT a small model on a task,
/// evaluate it, run Archer, evaluate again, print the table and where the run folder is.
/// <c>--preset</c>, <c>--config FILE.json</c> and <c>--set key=value</c> change it (in that order);
/// <c>--resume RUN_DIR</c> continues a run from its newest checkpoint.
/// </summary>
public static class DemoCommand
{
    public static Command Create()
    {
        var preset = new Option<string>("--preset")
        {
            Description = "starting config: " + string.Join("; ", RunPresets.Registry.Select(p => $"{p.Name} ({p.Description})")),
            DefaultValueFactory = _ => "demo",
        };
        var configFile = new Option<string?>("--config") { Description = "JSON config file applied over the preset (a run's config.json works)" };
        var set = RlCommandSupport.KeyValueOption("--set", "override one setting, e.g. rl.steps=50 rl.group_size=8 seed=2; every algorithm setting is rl.KEY, as in train-rl (rl.low.clip_high=0.3) (repeatable; see config.json for the run's keys)");
        var resume = new Option<string?>("--resume") { Description = "continue the run in this folder from its newest checkpoint (--set may change only rl.steps, device, precision, checkpoint_every, keep_checkpoints and name)" };
        var runsDir = new Option<string>("--runs-dir") { Description = "where new run folders go", DefaultValueFactory = _ => "runs" };
        var device = new Option<string?>("--device") { Description = "device: auto, cpu, ilgpu-cpu, cuda, opencl (default: the config's, auto)" };
        var precision = new Option<string?>("--precision") { Description = "matmul operands: fp32, tf32 or bf16 (tensor cores; default: the config's, fp32)" };
        var command = new Command("demo", "SFT a small model, evaluate, train it with Archer, evaluate again: the whole pipeline in one command")
        {
            preset, configFile, set, resume, runsDir, device, precision,
        };
        command.WithExamples("demo", "demo --preset quick --set rl.algorithm=grpo rl.steps=50 rl.low.clip_high=0.3 seed=2");
        command.SetAction(parse => MpiJob.Run(parse.InvocationConfiguration.Error, world => CliErrors.Guard(parse, (stdout, _) =>
        {
            var sets = (parse.GetValue(set) ?? []).ToList();
            if (parse.GetValue(device) is string d) sets.Add("device=" + d);
            if (parse.GetValue(precision) is string p) sets.Add("precision=" + p);
            string? resumeDir = parse.GetValue(resume);
            bool interactive = ReferenceEquals(stdout, Console.Out) && !Console.IsOutputRedirected;
            RunConfig config;
            RunFolder? resumed = null;
            if (resumeDir is not null)
            {
                if (parse.GetResult(preset) is { Implicit: false } || parse.GetValue(configFile) is not null)
                    throw new CliInputException("--resume continues a run with its own config.json; give changes with --set, not --preset or --config");
                resumed = RunFolder.Open(resumeDir);
                if (!File.Exists(resumed.ConfigPath)) throw new CliInputException($"'{resumeDir}' has no config.json, so it cannot be resumed");
                var saved = RunConfig.Bind(own => ConfigBinder.Bind(RunPresets.Demo, resumed.ConfigPath, own), []);
                config = RunConfig.Bind(own => ConfigBinder.Bind(RunPresets.Demo, resumed.ConfigPath, own), sets);
                RequireResumable(resumed, saved, config);
            }
            else config = RunConfig.Bind(own => RunPresets.Registry.Bind(parse.GetValue(preset)!, parse.GetValue(configFile), own), sets);
            MemoryChecks.RequireDemoFits(config);
            RequireSplittable(config, world);
            // Rank 0 (or one process) writes the run folder and prints; another rank trains the same replica into its
            // scratch folder, silent, reading a resumed run's checkpoint from the run folder.
            return MpiJob.AsReplica(world, stdout, (log, scratch) =>
            {
                var run = scratch is not null ? RunFolder.At(scratch) : resumed ?? RunFolder.Create(parse.GetValue(runsDir)!, config.Name);
                using var runLock = TrainingCheckpoint.Lock(run, run.Path, log);
                PrintConfig(config, log);
                run.WriteConfig(config);
                string resumeCommand = (world.IsDistributed ? $"mpirun -np {world.Size} " : "") + $"archer demo --resume {RelativeOrFull(run.Path)}" +
                                       (parse.GetValue(device) is string dev ? $" --device {dev}" : "");
                return StopRequest.Handle(log, () => resumeCommand, () =>
                {
                    var outcome = new DemoJob(config, run, log, interactive && scratch is null) { ResumeFrom = resumed, World = world }.Run();
                    log.WriteLine();
                    log.Write(DemoJob.Table(outcome.Sft, outcome.Rl, outcome.Algorithm));
                    log.WriteLine();
                    log.WriteLine($"done in {ProgressReporter.FormatDuration(outcome.Elapsed)} on {outcome.Device}. The run folder is {RelativeOrFull(run.Path)}");
                    log.WriteLine($"  summary.md, eval.json, metrics.jsonl, samples.jsonl, plots/*.svg, checkpoints/; redraw or compare with: archer report {RelativeOrFull(run.Path)}");
                    return 0;
                });
            });
        })));
        return command;
    }

    /// <summary>
    /// What a resume may change: the device, how often and how many checkpoints are kept (neither changes a
    /// number), the run's name, and rl.steps upwards (a finished run continues training; the README's
    /// <c>--set rl.steps=3000</c>). Every other key would make the run one that never happened; it is refused, named.
    /// </summary>
    static readonly string[] MayChangeOnResume = ["device", "precision", "checkpoint_every", "keep_checkpoints", "name", "rl.steps"];

    static void RequireResumable(RunFolder run, RunConfig saved, RunConfig now)
    {
        run.RequireSameSettings(ConfigWriter.Flatten(saved), ConfigWriter.Flatten(now), MayChangeOnResume);
        if (now.Rl.Steps < saved.Rl.Steps && run.Checkpoints().Latest() is { } latest && latest.Step > now.Sft.Steps + now.Rl.Steps)
            throw new CliInputException($"--resume: rl.steps={now.Rl.Steps} is behind the run's newest checkpoint (step {latest.Step} = " +
                                        $"{now.Sft.Steps} SFT + {latest.Step - now.Sft.Steps} RL steps); rl.steps may only grow");
    }

    /// <summary>Under mpirun: refused before any training when a step's SFT batch or RL prompts cannot give every rank a share.</summary>
    static void RequireSplittable(RunConfig config, World world)
    {
        if (config.Sft.Steps > 0 && config.Sft.BatchSize < world.Size)
            throw new CliInputException($"sft.batch_size {config.Sft.BatchSize} is smaller than the {world.Size} ranks: each rank needs at least one example per step");
        if (config.Rl.Steps > 0) MpiJob.RlReplicas(world)?.RequireSplittable(config.Algorithm());
    }

    /// <summary>The resolved config, one line per section.</summary>
    static void PrintConfig(RunConfig config, TextWriter output)
    {
        output.WriteLine("config:");
        foreach (var group in ConfigWriter.Flatten(config).GroupBy(kv => kv.Key.Contains('.') ? kv.Key[..kv.Key.IndexOf('.')] : ""))
        {
            string items = string.Join("  ", group.Select(kv => $"{(group.Key.Length == 0 ? kv.Key : kv.Key[(group.Key.Length + 1)..])}={kv.Value}"));
            output.WriteLine($"  {(group.Key.Length == 0 ? "" : group.Key + ": ")}{items}");
        }
    }

    internal static string RelativeOrFull(string path)
    {
        string relative = Path.GetRelativePath(Environment.CurrentDirectory, path);
        return relative.StartsWith("..", StringComparison.Ordinal) ? path : relative;
    }
}
