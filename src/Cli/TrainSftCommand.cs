using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using ArcherIlgpu.Distributed;
using ArcherIlgpu.Model;
using ArcherIlgpu.Kernels;
using ArcherIlgpu.Model.Generation;
using ArcherIlgpu.Model.IO;
using ArcherIlgpu.Model.Tokenizers;
using ArcherIlgpu.Model.Training;
using ArcherIlgpu.Runs;

namespace ArcherIlgpu.Cli;

/// <summary>
/// <c>archer train-sft --data train.jsonl --out DIR</c>: supervised fine-tuning on {"prompt", "completion"}
/// lines (loss on completion tokens only). A fresh model gets a char tokenizer over the data's characters
/// and a preset's shape; <c>--init</c> starts from a model folder and its tokenizer instead. DIR is a run
/// folder: run.json, config.json (the settings a resume must repeat), metrics.jsonl and
/// checkpoints/step-NNNNNN/ (a model folder each: eval and generate load it), saved at every evaluation,
/// at the end and on Ctrl-C. Finishes with the held-out loss and greedy exact-match accuracy on the held-out prompts.
/// </summary>
public static class TrainSftCommand
{
    public static Command Create()
    {
        var data = new Option<string>("--data") { Description = "training JSONL, one {\"prompt\", \"completion\"} per line (\"answer\" stands in for a missing completion)", Required = true };
        var heldOut = new Option<string?>("--held-out") { Description = "held-out JSONL (default: a fraction of --data, see --held-out-fraction)" };
        var fraction = new Option<double?>("--held-out-fraction") { Description = "fraction of --data held out when no --held-out file is given (default 0.1)" };
        var output = new Option<string>("--out") { Description = "run folder to write (checkpoints in DIR/checkpoints/step-NNNNNN/)", Required = true };
        var preset = new Option<string>("--preset") { Description = $"model shape for a fresh model: {string.Join(", ", Models.PresetNames)} (the vocabulary comes from the tokenizer)", DefaultValueFactory = _ => "tiny" };
        var initOption = new Option<string?>("--init") { Description = "start from this model folder (weights, config and tokenizer), or a run folder's newest checkpoint, instead of a fresh model" };
        var steps = new Option<int>("--steps") { Description = "optimizer steps in all, a resumed run's earlier ones included", DefaultValueFactory = _ => 2000 };
        var batch = new Option<int>("--batch-size") { Description = "examples per step", DefaultValueFactory = _ => 32 };
        var lr = new Option<float?>("--lr") { Description = "peak learning rate, cosine decay to a tenth (default 0.005 for a fresh tiny model, else 0.001)" };
        var warmup = new Option<int?>("--warmup") { Description = "linear warm-up steps (default steps / 20)" };
        var seed = new Option<int>("--seed") { Description = "seed for initialisation, shuffling and the held-out split", DefaultValueFactory = _ => 1 };
        var evalEvery = new Option<int?>("--eval-every") { Description = "held-out loss, progress line and checkpoint every this many steps (default steps / 10)" };
        var resume = new Option<bool>("--resume") { Description = "continue the run in --out from its newest checkpoint (same data and settings; --steps is the total)" };
        var overwrite = TrainingCheckpoint.OverwriteOption();
        var device = Program.DeviceOption();
        var precision = Program.PrecisionOption();
        var allowExtra = ModelLoadOption.Create();
        var command = new Command("train-sft", "Supervised fine-tuning of a small model (GPT-2 or Llama/Qwen) on prompt/completion pairs")
        {
            data, heldOut, fraction, output, preset, initOption, steps, batch, lr, warmup, seed, evalEvery, resume, overwrite, device, precision, allowExtra,
        };
        command.WithExamples("train-sft --data runs/add.jsonl --held-out runs/add.heldout.jsonl --out runs/add-model", "train-sft --data runs/add.jsonl --held-out runs/add.heldout.jsonl --out runs/add-model --resume");
        command.SetAction(parse => MpiJob.Run(parse.InvocationConfiguration.Error, world => CliErrors.Guard(parse, (stdout, _) => StopRequest.Handle(stdout, () => StopRequest.ResumeCommand(parse), () =>
        {
            var s = new Settings(parse.GetValue(data)!, parse.GetValue(heldOut), parse.GetValue(fraction), parse.GetValue(output)!,
                parse.GetValue(preset)!, parse.GetValue(initOption), parse.GetValue(steps), parse.GetValue(batch), parse.GetValue(lr),
                parse.GetValue(warmup), parse.GetValue(seed), parse.GetValue(evalEvery), parse.GetValue(device)!, parse.GetValue(resume),
                Overwrite: parse.GetValue(overwrite), AllowExtraTensors: parse.GetValue(allowExtra), Precision: parse.GetValue(precision), World: world);
            Run(s, stdout);
            return 0;
        }))));
        return command;
    }

    /// <param name="InterruptAfterStep">test hook: stop right after this step's metrics line, before any save, as if killed.</param>
    /// <param name="Stop">test hook for Ctrl-C: once cancelled, the run saves after the current step and stops.</param>
    public sealed record Settings(string Data, string? HeldOut, double? HeldOutFraction, string Out, string Preset, string? Init,
        int Steps, int BatchSize, float? Lr, int? Warmup, int Seed, int? EvalEvery, string Device, bool Resume = false, int? InterruptAfterStep = null,
        bool Overwrite = false, CancellationToken Stop = default, bool AllowExtraTensors = false, string? Precision = null, World? World = null);

    /// <summary>What the run ended with.</summary>
    public sealed record Summary(double FirstLoss, double HeldOutLossBefore, double HeldOutLoss, int Correct, int HeldOutCount);

    const string DataKey = "data (--data, --held-out, --held-out-fraction)";
    /// <summary>Settings a resume may change: the budget (a total, checked against the run's step), the cadence and the device and its precision.</summary>
    static readonly string[] MayChange = ["--steps", "--eval-every", "--device", "--precision"];

    public static Summary Run(Settings s, TextWriter log)
    {
        var world = s.World ?? World.Single;
        if (s.BatchSize < world.Size) throw new CliInputException($"--batch-size {s.BatchSize} is smaller than the {world.Size} ranks: each rank needs at least one example per step");
        // Rank 0 alone writes --out and the log; the other ranks train the same replica into a scratch folder
        // (a resume's checkpoint read from --out, whichever number of ranks wrote it: it holds the global batch's state).
        return MpiJob.AsReplica(world, log, (replicaLog, scratch) => Train(s with { Out = scratch ?? s.Out }, RunFolder.At(s.Out), replicaLog, world));
    }

    /// <summary>One replica's run: the whole run on one process, or rank <c>world.Rank</c>'s share of every step.</summary>
    /// <param name="resumeFrom">the run a --resume continues: --out, also for the ranks that write into a scratch folder.</param>
    static Summary Train(Settings s, RunFolder resumeFrom, TextWriter log, World world)
    {
        // Everything the command line says is checked before the run folder is touched.
        if (s.Steps < 1) throw new CliInputException($"--steps must be at least 1, got {s.Steps}");
        if (s.BatchSize < 1) throw new CliInputException($"--batch-size must be at least 1, got {s.BatchSize}");
        if (s.EvalEvery is < 1) throw new CliInputException($"--eval-every must be at least 1, got {s.EvalEvery}");
        if (s.Warmup is < 0) throw new CliInputException($"--warmup must be >= 0, got {s.Warmup}");
        if (s.HeldOut is not null && s.HeldOutFraction is not null) throw new CliInputException("give either --held-out FILE or --held-out-fraction F, not both");
        TrainingCheckpoint.RequireResumeOrOverwrite(s.Resume, s.Overwrite);
        double fraction = s.HeldOutFraction ?? 0.1;
        if (!(fraction >= 0 && fraction < 1)) throw new CliInputException($"--held-out-fraction must be in [0, 1), got {fraction}");
        if (s.Lr is float given && (!(given > 0) || float.IsInfinity(given))) throw new CliInputException($"--lr must be a positive number, got {given}");
        string? init = s.Init is null || s.Resume ? null : ModelFolders.Resolve(s.Init);
        if (!s.Resume) Models.Preset(s.Preset);   // an unknown preset fails here, naming the valid ones

        var run = RunFolder.At(s.Out);
        var (checkpoint, saved) = s.Resume ? TrainingCheckpoint.Latest(resumeFrom, "train-sft") : (null, null);
        var savedSettings = s.Resume ? resumeFrom.ReadSettings() : null;
        if (!s.Resume) run.RequireFreshStart(s.Overwrite, "--resume");
        // Measured on 2-digit addition: tiny learns it at 5e-3; small stalls there and learns at 1e-3.
        float peakLr = s.Lr ?? (savedSettings?.TryGetValue("--lr", out var l) == true ? float.Parse(l, CultureInfo.InvariantCulture)
            : s.Init is null && s.Preset.Trim().Equals("tiny", StringComparison.OrdinalIgnoreCase) ? 5e-3f : 1e-3f);
        int warmupSteps = s.Warmup ?? (savedSettings?.TryGetValue("--warmup", out var w) == true ? int.Parse(w, CultureInfo.InvariantCulture) : s.Steps / 20);
        int evalEvery = Math.Max(1, s.EvalEvery ?? s.Steps / 10);

        var (trainPairs, heldPairs) = Split(SftJsonl.Read(s.Data), s.HeldOut is null ? null : SftJsonl.Read(s.HeldOut), fraction, s.Seed);
        var settings = SettingsOf(s, peakLr, warmupSteps, evalEvery, Fingerprint(trainPairs, heldPairs));
        if (saved is not null)
        {
            resumeFrom.RequireSameSettings(savedSettings!, settings, MayChange);
            TrainingCheckpoint.RequireStepsReach(s.Steps, saved.SftStep, resumeFrom.Path);
        }

        using var backend = Program.CreateBackend(s.Device, s.Precision);
        ITokenizer tokenizer;
        CausalLm model;
        string? from = checkpoint?.Path ?? init;
        if (from is not null)
        {
            tokenizer = TokenizerFiles.Load(from);
            model = Checkpoint.Load(backend, from, new LoadOptions(s.AllowExtraTensors));
            if (tokenizer.VocabSize > model.Config.VocabSize)
                throw new CliInputException($"{from}: the tokenizer has {tokenizer.VocabSize} tokens but the model only {model.Config.VocabSize}");
        }
        else
        {
            tokenizer = new CharTokenizer(Alphabet(trainPairs.Concat(heldPairs)));
            var shape = Models.Preset(s.Preset);
            model = Models.Create(backend, shape.WithVocabSize(tokenizer.VocabSize), s.Seed);
        }
        using var _ = model;
        var config = model.Config;
        var train = trainPairs.Select(p => SftData.Tokenize(p.Prompt, p.Completion, tokenizer, config.MaxT, p.Source)).ToList();
        var held = heldPairs.Select(p => SftData.Tokenize(p.Prompt, p.Completion, tokenizer, config.MaxT, p.Source)).ToList();
        MemoryChecks.Sft(config, s.BatchSize, train.Concat(held).Select(e => e.Length).DefaultIfEmpty(1).Max(), $"--batch-size {s.BatchSize}").RequireFits(backend);

        var options = new SftOptions(Steps: s.Steps, BatchSize: s.BatchSize, Lr: peakLr, WarmupSteps: warmupSteps, EvalEvery: evalEvery, Seed: s.Seed);
        using var trainer = new SftTrainer(model, train, held, tokenizer.EndOfText, options);
        MpiJob.ShareSteps(world, trainer);
        if (saved is not null)
        {
            TrainingCheckpoint.LoadOptimizer(trainer.Trainer.Optimizer, model, checkpoint!);
            trainer.ResumeAt(saved.SftStep);
        }

        // Only now, with every input read and checked, does the run folder change.
        using var runLock = TrainingCheckpoint.Lock(run, s.Out, log);
        if (saved is null)
        {
            run.Begin("train-sft", runLock);
            run.WriteSettings(settings);
        }
        else if (RunFolder.SettingsDiffer(savedSettings!, settings))
            run.WriteSettings(settings);   // a larger --steps or another device: config.json describes the run as it now is

        log.WriteLine($"train-sft: {train.Count} training / {held.Count} held-out examples, {Describe(tokenizer)}");
        log.WriteLine($"model: {config} ({model.ParameterCount / 1e6:F2}M parameters{(saved is not null || s.Init is null ? "" : ", from " + s.Init)}) on {backend.Name} ({Devices.PrecisionName(backend.Precision)})");
        log.WriteLine($"steps {s.Steps}, batch {s.BatchSize}, lr {peakLr.ToString(CultureInfo.InvariantCulture)}, warm-up {options.WarmupSteps}, " +
                      $"checkpoints in {Path.Combine(s.Out, "checkpoints")} every {evalEvery} steps");
        if (saved is not null) log.WriteLine($"resuming {s.Out} after step {saved.SftStep}");
        if (world.IsDistributed) log.WriteLine($"data-parallel over {world.Size} ranks: {s.BatchSize} examples per step split between them, gradients summed in rank order");

        double heldBefore = saved?.HeldOutLossStart ?? trainer.HeldOutLoss();
        if (saved is null && held.Count > 0) log.WriteLine($"step 0  held-out loss {heldBefore:F4}");
        var state = saved ?? new TrainingState("sft", 0) { HeldOutLossStart = heldBefore };
        var store = run.Checkpoints(TrainingCheckpoint.KeepLast);
        void Save(int step) => TrainingCheckpoint.Save(store, state = state with { Step = step, SftStep = step }, model, tokenizer, trainer.Trainer.Optimizer);

        double tokensPerStep = s.BatchSize * train.Average(e => (double)e.Length);
        var clock = Stopwatch.StartNew();
        double lossSum = 0, firstLoss = double.NaN;
        int lossCount = 0, startStep = saved?.SftStep ?? 0;
        using var stop = StopRequest.Listen(s.Stop);
        using (var metrics = run.OpenMetrics(saved?.Step))
        {
            TrainingDivergedException.NamingTheKey("--lr", () => trainer.Run(m =>
            {
                if (double.IsNaN(firstLoss)) firstLoss = m.Loss;
                if (!m.Skipped) { lossSum += m.Loss; lossCount++; }
                metrics.Write(m.Step, [new("loss", m.Loss), new("held_out_loss", m.HeldOutLoss), new("grad_norm", m.GradNorm), new("lr", m.Lr),
                    new("skipped", m.Skipped ? 1 : 0), new("skipped_total", m.SkippedSteps)]);
                if (s.InterruptAfterStep is int kill && m.Step >= kill) throw new TrainingInterruptedException(m.Step);
                MpiJob.KillPoint(world, m.Step);
                // SftTrainer measures the held-out loss every --eval-every steps and after the last: report and save there.
                if (m.Step % evalEvery == 0 || m.Step == s.Steps)
                {
                    if (!double.IsNaN(m.HeldOutLoss)) state = state with { HeldOutLoss = m.HeldOutLoss };
                    double elapsed = clock.Elapsed.TotalSeconds;
                    int done = m.Step - startStep;
                    double eta = elapsed / done * (s.Steps - m.Step);
                    log.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"step {m.Step}/{s.Steps}  loss {lossSum / Math.Max(1, lossCount):F4}  held-out {(held.Count > 0 ? m.HeldOutLoss.ToString("F4", CultureInfo.InvariantCulture) : "-")}  " +
                        $"{tokensPerStep * done / elapsed:F0} tok/s  elapsed {elapsed:F0}s  ETA {eta:F0}s{(m.SkippedSteps > 0 ? $"  skipped {m.SkippedSteps}" : "")}"));
                    lossSum = 0; lossCount = 0;
                    Save(m.Step);
                }
                if (stop.IsRequested && m.Step < s.Steps)
                {
                    if (state.Step != m.Step) Save(m.Step);
                    throw new RunInterruptedException(m.Step, store.Find(m.Step)!.Path);
                }
            }));
        }
        if (saved is not null && saved.SftStep == s.Steps) log.WriteLine($"the run was already at step {s.Steps}: nothing to train (a larger --steps continues it)");
        else log.WriteLine($"saved {Path.Combine(s.Out, "checkpoints", CheckpointStore.FolderName(state.Step))} ({clock.Elapsed.TotalSeconds:F0}s of training)");

        double lastHeld = state.HeldOutLoss;
        if (held.Count == 0)
        {
            log.WriteLine("no held-out examples: skipping held-out loss and accuracy");
            return new Summary(firstLoss, double.NaN, double.NaN, 0, 0);
        }
        var answers = Greedy(model, tokenizer, held);
        int correct = 0;
        for (int i = 0; i < held.Count; i++)
            if (answers[i].Trim() == heldPairs[i].Completion.Trim()) correct++;
        for (int i = 0; i < Math.Min(3, held.Count); i++)
            log.WriteLine($"  {Show(heldPairs[i].Prompt)} -> {Show(answers[i])}  (expected {Show(heldPairs[i].Completion)})");
        log.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"held-out loss {lastHeld:F4} (from {heldBefore:F4}), greedy exact match {correct}/{held.Count} = {100.0 * correct / held.Count:F1}%"));
        return new Summary(firstLoss, heldBefore, lastHeld, correct, held.Count);
    }

    // ==================================================================== settings of the run

    /// <summary>config.json of the run: everything the example order, the model and the schedule depend on.</summary>
    static Dictionary<string, string> SettingsOf(Settings s, float lr, int warmup, int evalEvery, string fingerprint)
    {
        var inv = CultureInfo.InvariantCulture;
        return new()
        {
            [DataKey] = fingerprint,
            ["--preset"] = s.Init is null ? s.Preset.Trim().ToLowerInvariant() : "(from --init)",
            ["--init"] = s.Init is null ? "(none)" : Path.GetFullPath(s.Init),
            ["--batch-size"] = s.BatchSize.ToString(inv),
            ["--seed"] = s.Seed.ToString(inv),
            ["--lr"] = lr.ToString(inv),
            ["--warmup"] = warmup.ToString(inv),
            ["--steps"] = s.Steps.ToString(inv),
            ["--eval-every"] = evalEvery.ToString(inv),
            ["--device"] = s.Device,
            ["--precision"] = s.Precision ?? "(default)",
        };
    }

    /// <summary>SHA-256 of the training and held-out pairs in order: a resume must see the same examples.</summary>
    static string Fingerprint(List<SftPair> train, List<SftPair> heldOut)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        void Add(string text) { sha.AppendData(Encoding.UTF8.GetBytes(text)); sha.AppendData([0]); }
        foreach (var p in train) { Add(p.Prompt); Add(p.Completion); }
        Add("--held-out--");
        foreach (var p in heldOut) { Add(p.Prompt); Add(p.Completion); }
        return $"{train.Count}+{heldOut.Count} examples, sha256 {Convert.ToHexStringLower(sha.GetHashAndReset())[..16]}";
    }

    /// <summary>The held-out file when given, else a seeded fraction of the data.</summary>
    static (List<SftPair> Train, List<SftPair> HeldOut) Split(List<SftPair> data, List<SftPair>? heldOut, double fraction, int seed)
    {
        if (heldOut is not null) return (data, heldOut);
        int count = (int)Math.Round(data.Count * fraction);
        if (count == 0) return (data, []);
        if (count >= data.Count) throw new CliInputException($"--held-out-fraction {fraction} leaves no training examples out of {data.Count}");
        var order = Enumerable.Range(0, data.Count).ToArray();
        new Random(seed).Shuffle(order);
        var heldSet = order.Take(count).Order().ToArray();
        var isHeld = new bool[data.Count];
        foreach (var i in heldSet) isHeld[i] = true;
        return (data.Where((_, i) => !isHeld[i]).ToList(), heldSet.Select(i => data[i]).ToList());
    }

    /// <summary>Every character of the prompts and completions, in ordinal order: ids that do not depend on the data's order.</summary>
    static string Alphabet(IEnumerable<SftPair> pairs)
    {
        var chars = new SortedSet<char>();
        foreach (var p in pairs) { chars.UnionWith(p.Prompt); chars.UnionWith(p.Completion); }
        if (chars.Count == 0) throw new CliInputException("the data has no characters at all (every prompt and completion is empty)");
        return string.Concat(chars);
    }

    /// <summary>Greedy completions of every example's prompt (end token excluded), a batch at a time.</summary>
    static List<string> Greedy(CausalLm model, ITokenizer tokenizer, IReadOnlyList<SftExample> examples)
    {
        const int PromptsPerBatch = 64;
        int maxNew = examples.Max(e => e.Completion.Length) + 2;
        using var generator = new Generator(model);
        var answers = new List<string>(examples.Count);
        foreach (var chunk in examples.Chunk(PromptsPerBatch))
        {
            var result = generator.Generate(chunk.Select(e => (IReadOnlyList<int>)e.Prompt).ToList(),
                new SamplingOptions(MaxNewTokens: maxNew, Temperature: 0, EndToken: tokenizer.EndOfText));
            answers.AddRange(result.Tokens.Select(t => tokenizer.Decode(t.Where(id => id != tokenizer.EndOfText))));
        }
        return answers;
    }

    static string Describe(ITokenizer t) => t is CharTokenizer c
        ? $"char tokenizer over {c.Alphabet.Length} characters \"{Show(c.Alphabet)}\""
        : $"{t.Name} tokenizer ({t.VocabSize} tokens)";

    static string Show(string text) => text.Replace("\\", "\\\\").Replace("\n", "\\n").Replace("\t", "\\t");
}
