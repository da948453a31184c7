using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using ArcherIlgpu.Model;
using ArcherIlgpu.Kernels;
using ArcherIlgpu.Model.Generation;
using ArcherIlgpu.Model.IO;
using ArcherIlgpu.Model.Tokenizers;
using ArcherIlgpu.Model.Training;

namespace ArcherIlgpu.Cli;

/// <summary>
/// <c>archer train-sft --data train.jsonl --out DIR</c>: supervised fine-tuning on {"prompt", "completion"}
/// lines (loss on completion tokens only). A fresh model gets a char tokenizer over the data's characters
/// and a preset's shape; <c>--init</c> starts from a model folder and its tokenizer instead. Prints progress,
/// saves the folder (config.json, model.safetensors, tokenizer) at every evaluation, and finishes with the
/// held-out loss and greedy exact-match accuracy on the held-out prompts.
/// </summary>
public static class TrainSftCommand
{
    const string StateFile = "sft_state.json";
    const string MetricsFile = "metrics.jsonl";

    public static Command Create()
    {
        var data = new Option<string>("--data") { Description = "training JSONL, one {\"prompt\", \"completion\"} per line (\"answer\" stands in for a missing completion)", Required = true };
        var heldOut = new Option<string?>("--held-out") { Description = "held-out JSONL (default: a fraction of --data, see --held-out-fraction)" };
        var fraction = new Option<double?>("--held-out-fraction") { Description = "fraction of --data held out when no --held-out file is given (default 0.1)" };
        var output = new Option<string>("--out") { Description = "model folder to write", Required = true };
        var preset = new Option<string>("--preset") { Description = $"model shape for a fresh model: {string.Join(", ", Models.PresetNames)} (the vocabulary comes from the tokenizer)", DefaultValueFactory = _ => "tiny" };
        var init = new Option<string?>("--init") { Description = "start from this model folder (weights, config and tokenizer), or a run folder's newest checkpoint, instead of a fresh model" };
        var steps = new Option<int>("--steps") { Description = "optimizer steps in all, a resumed run's earlier ones included", DefaultValueFactory = _ => 2000 };
        var batch = new Option<int>("--batch-size") { Description = "examples per step", DefaultValueFactory = _ => 32 };
        var lr = new Option<float?>("--lr") { Description = "peak learning rate, cosine decay to a tenth (default 0.005 for a fresh tiny model, else 0.001)" };
        var warmup = new Option<int?>("--warmup") { Description = "linear warm-up steps (default steps / 20)" };
        var seed = new Option<int>("--seed") { Description = "seed for initialisation, shuffling and the held-out split", DefaultValueFactory = _ => 1 };
        var evalEvery = new Option<int?>("--eval-every") { Description = "held-out loss, progress line and checkpoint every this many steps (default steps / 10)" };
        var resume = new Option<bool>("--resume") { Description = "continue the run in --out from its last save (same data, batch size and seed; --steps is the total)" };
        var device = Program.DeviceOption();
        var allowExtra = ModelLoadOption.Create();
        var command = new Command("train-sft", "Supervised fine-tuning of a small model (GPT-2 or Llama/Qwen) on prompt/completion pairs")
        {
            data, heldOut, fraction, output, preset, init, steps, batch, lr, warmup, seed, evalEvery, resume, device, allowExtra,
        };
        command.WithExamples("train-sft --data runs/add.jsonl --held-out runs/add.heldout.jsonl --out runs/add-model", "train-sft --data runs/add.jsonl --held-out runs/add.heldout.jsonl --out runs/add-model --resume");
        command.SetAction(parse => CliErrors.Guard(parse, (stdout, _) =>
        {
            var s = new Settings(parse.GetValue(data)!, parse.GetValue(heldOut), parse.GetValue(fraction), parse.GetValue(output)!,
                parse.GetValue(preset)!, parse.GetValue(init) is string i ? ModelFolders.Resolve(i) : null, parse.GetValue(steps), parse.GetValue(batch), parse.GetValue(lr),
                parse.GetValue(warmup), parse.GetValue(seed), parse.GetValue(evalEvery), parse.GetValue(device)!, parse.GetValue(resume),
                AllowExtraTensors: parse.GetValue(allowExtra));
            Run(s, stdout);
            return 0;
        }));
        return command;
    }

    /// <param name="InterruptAfterStep">test hook: stop right after this step's metrics line, before any save, as if killed.</param>
    public sealed record Settings(string Data, string? HeldOut, double? HeldOutFraction, string Out, string Preset, string? Init,
        int Steps, int BatchSize, float? Lr, int? Warmup, int Seed, int? EvalEvery, string Device, bool Resume = false, int? InterruptAfterStep = null,
        bool AllowExtraTensors = false);

    /// <summary>What the run ended with.</summary>
    public sealed record Summary(double FirstLoss, double HeldOutLossBefore, double HeldOutLoss, int Correct, int HeldOutCount);

    /// <summary>
    /// sft_state.json, written after the weights and moments of each save: how far the run is and what must
    /// not change for a resume to continue it exactly (the data's fingerprint, batch size, seed, schedule).
    /// </summary>
    sealed record SavedRun(int Step, int BatchSize, int Seed, float Lr, int Warmup, string Data, double HeldOutLossStart);

    public static Summary Run(Settings s, TextWriter log)
    {
        if (s.Steps < 1) throw new CliInputException($"--steps must be at least 1, got {s.Steps}");
        if (s.BatchSize < 1) throw new CliInputException($"--batch-size must be at least 1, got {s.BatchSize}");
        if (s.HeldOut is not null && s.HeldOutFraction is not null) throw new CliInputException("give either --held-out FILE or --held-out-fraction F, not both");
        double fraction = s.HeldOutFraction ?? 0.1;
        if (!(fraction >= 0 && fraction < 1)) throw new CliInputException($"--held-out-fraction must be in [0, 1), got {fraction}");
        var saved = s.Resume ? ReadSave(s.Out) : null;
        if (s.Init is not null && saved is null) CliErrors.RequireModelDir(s.Init);
        // Measured on 2-digit addition: tiny learns it at 5e-3; small stalls there and learns at 1e-3.
        float peakLr = s.Lr ?? saved?.Lr ?? (s.Init is null && s.Preset.Trim().Equals("tiny", StringComparison.OrdinalIgnoreCase) ? 5e-3f : 1e-3f);
        if (!(peakLr > 0) || float.IsInfinity(peakLr)) throw new CliInputException($"--lr must be a positive number, got {peakLr}");
        int warmupSteps = s.Warmup ?? saved?.Warmup ?? s.Steps / 20;

        var (trainPairs, heldPairs) = Split(SftJsonl.Read(s.Data), s.HeldOut is null ? null : SftJsonl.Read(s.HeldOut), fraction, s.Seed);
        string fingerprint = Fingerprint(trainPairs, heldPairs);
        if (saved is not null) CheckSameRun(s, saved, peakLr, warmupSteps, fingerprint);

        using var backend = Devices.Create(s.Device);
        ITokenizer tokenizer;
        CausalLm model;
        string? from = saved is not null ? s.Out : s.Init;
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

        int evalEvery = Math.Max(1, s.EvalEvery ?? s.Steps / 10);
        var options = new SftOptions(Steps: s.Steps, BatchSize: s.BatchSize, Lr: peakLr, WarmupSteps: warmupSteps, EvalEvery: evalEvery, Seed: s.Seed);
        using var trainer = new SftTrainer(model, train, held, tokenizer.EndOfText, options);
        int startStep = saved?.Step ?? 0;
        if (saved is not null)
        {
            if (!Checkpoint.LoadOptimizer(trainer.Trainer.Optimizer, model, s.Out))
                throw new CliInputException($"{Path.Combine(s.Out, Checkpoint.OptimizerFile)}: not found");
            trainer.ResumeAt(saved.Step);
        }

        log.WriteLine($"train-sft: {train.Count} training / {held.Count} held-out examples, {Describe(tokenizer)}");
        log.WriteLine($"model: {config} ({model.ParameterCount / 1e6:F2}M parameters{(saved is not null ? "" : s.Init is null ? "" : ", from " + s.Init)}) on {backend.Name}");
        log.WriteLine($"steps {s.Steps}, batch {s.BatchSize}, lr {peakLr.ToString(CultureInfo.InvariantCulture)}, warm-up {options.WarmupSteps}, saving to {s.Out} every {evalEvery} steps");
        if (saved is not null)
            log.WriteLine($"resuming {s.Out} after step {saved.Step}{(s.Init is null ? "" : " (--init is only used by a fresh run)")}");

        double heldBefore;
        if (saved is null)
        {
            heldBefore = trainer.HeldOutLoss();
            if (held.Count > 0) log.WriteLine($"step 0  held-out loss {heldBefore:F4}");
            StartFresh(s.Out);
            try { TokenizerFiles.Save(tokenizer, s.Out); }
            catch (InvalidOperationException e) { throw new CliInputException($"--out {s.Out}: {e.Message}"); }
        }
        else heldBefore = saved.HeldOutLossStart;
        var run = new SavedRun(startStep, s.BatchSize, s.Seed, peakLr, warmupSteps, fingerprint, heldBefore);

        double tokensPerStep = s.BatchSize * train.Average(e => (double)e.Length);
        var clock = Stopwatch.StartNew();
        double lossSum = 0, firstLoss = double.NaN, lastHeld = heldBefore;
        int lossCount = 0;
        using (var metrics = new Runs.MetricsWriter(Path.Combine(s.Out, MetricsFile), saved?.Step))
        {
            trainer.Run(m =>
            {
                if (double.IsNaN(firstLoss)) firstLoss = m.Loss;
                if (!m.Skipped) { lossSum += m.Loss; lossCount++; }
                metrics.Write(m.Step, [new("loss", m.Loss), new("held_out_loss", m.HeldOutLoss), new("grad_norm", m.GradNorm), new("lr", m.Lr),
                    new("skipped", m.Skipped ? 1 : 0), new("skipped_total", m.SkippedSteps)]);
                if (s.InterruptAfterStep is int stop && m.Step >= stop) throw new TrainingInterruptedException(m.Step);
                if (double.IsNaN(m.HeldOutLoss)) return;
                lastHeld = m.HeldOutLoss;
                double elapsed = clock.Elapsed.TotalSeconds;
                int done = m.Step - startStep;
                double eta = elapsed / done * (s.Steps - m.Step);
                log.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"step {m.Step}/{s.Steps}  loss {lossSum / Math.Max(1, lossCount):F4}  held-out {(held.Count > 0 ? m.HeldOutLoss.ToString("F4", CultureInfo.InvariantCulture) : "-")}  " +
                    $"{tokensPerStep * done / elapsed:F0} tok/s  elapsed {elapsed:F0}s  ETA {eta:F0}s{(m.SkippedSteps > 0 ? $"  skipped {m.SkippedSteps}" : "")}"));
                lossSum = 0; lossCount = 0;
                Save(model, trainer.Trainer.Optimizer, s.Out, run with { Step = m.Step });
            });
        }
        if (saved is not null && saved.Step == s.Steps) log.WriteLine($"the run was already at step {s.Steps}: nothing to train (a larger --steps continues it)");
        else log.WriteLine($"saved model to {s.Out} ({clock.Elapsed.TotalSeconds:F0}s of training)");

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

    // ==================================================================== saves and resume

    /// <summary>A fresh run overwrites the folder: an earlier save there stops being resumable and its log starts over.</summary>
    static void StartFresh(string dir)
    {
        Directory.CreateDirectory(dir);
        File.Delete(Path.Combine(dir, StateFile));
        File.Delete(Path.Combine(dir, MetricsFile));
    }

    /// <summary>Weights and moments tagged with the step, then the state file: written last, it marks the save complete.</summary>
    static void Save(CausalLm model, AdamWOptimizer optimizer, string dir, SavedRun run)
    {
        Checkpoint.Save(model, dir, optimizer, TrainingResume.Tag(run.Step));
        var o = new JsonObject
        {
            ["step"] = run.Step, ["batch_size"] = run.BatchSize, ["seed"] = run.Seed, ["lr"] = (double)run.Lr, ["warmup"] = run.Warmup,
            ["data"] = run.Data, ["held_out_loss_start"] = double.IsFinite(run.HeldOutLossStart) ? run.HeldOutLossStart : null,
        };
        AtomicFile.WriteAllText(Path.Combine(dir, StateFile), o.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
    }

    static SavedRun ReadSave(string dir)
    {
        string path = Path.Combine(dir, StateFile);
        var o = TrainingResume.ReadObject(path, $"--resume needs a run saved in {dir} (train-sft saves every --eval-every steps and at the end)");
        var run = new SavedRun(TrainingResume.Field<int>(o, "step", path), TrainingResume.Field<int>(o, "batch_size", path),
            TrainingResume.Field<int>(o, "seed", path), (float)TrainingResume.Field<double>(o, "lr", path), TrainingResume.Field<int>(o, "warmup", path),
            TrainingResume.Field<string>(o, "data", path), o["held_out_loss_start"] is null ? double.NaN : TrainingResume.Field<double>(o, "held_out_loss_start", path));
        TrainingResume.RequireWholeSave(dir, run.Step, path);
        return run;
    }

    /// <summary>Everything the example order and the schedule depend on must be the run's; --steps may grow.</summary>
    static void CheckSameRun(Settings s, SavedRun saved, float lr, int warmup, string fingerprint)
    {
        TrainingResume.RequireStepsAtLeast(s.Steps, saved.Step, s.Out);
        var inv = CultureInfo.InvariantCulture;
        var differences = TrainingResume.Differences(
            [("--batch-size", saved.BatchSize.ToString(inv)), ("--seed", saved.Seed.ToString(inv)), ("--lr", saved.Lr.ToString(inv)),
             ("--warmup", saved.Warmup.ToString(inv)), ("data (--data, --held-out, --held-out-fraction)", saved.Data)],
            [("--batch-size", s.BatchSize.ToString(inv)), ("--seed", s.Seed.ToString(inv)), ("--lr", lr.ToString(inv)),
             ("--warmup", warmup.ToString(inv)), ("data (--data, --held-out, --held-out-fraction)", fingerprint)]);
        if (differences.Count > 0)
            throw new CliInputException($"--resume: this command is not the run in {s.Out} ({string.Join("; ", differences)}); " +
                                        "repeat the run's data and settings, or start a new run with another --out");
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
