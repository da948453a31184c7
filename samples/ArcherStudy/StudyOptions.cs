using System.Globalization;
using ArcherIlgpu.Rl.Algorithms;
using ArcherIlgpu.Rl.Tasks;

namespace ArcherStudy;

/// <summary>
/// Everything that fixes a study: the task, the SFT that makes the common starting checkpoint, the RL
/// budget shared by every algorithm, the seeds and the held-out evaluation. <see cref="Default"/> is the
/// study reported in README.md; <see cref="Quick"/> is the test-suite variant.
/// </summary>
/// <param name="MinDigits">Fewest digits of an addition operand.</param>
/// <param name="MaxDigits">Most digits of an addition operand.</param>
/// <param name="SftSteps">SFT optimizer steps (batch <paramref name="SftBatch"/>): deliberately short, so the start leaves room.</param>
/// <param name="SftCorrectShare">Share of SFT completions that are the right sum (the rest are the sum plus one); 1 = clean data.</param>
/// <param name="Steps">RL training steps per run, the same for every algorithm.</param>
/// <param name="Prompts">Prompts per training step (train batch), the same for every algorithm.</param>
/// <param name="GroupSize">Samples per prompt, the same for every algorithm.</param>
/// <param name="EvalProblems">Held-out problems (a stream no training run draws from).</param>
/// <param name="EvalSamples">Samples per held-out problem (n of avg@n and pass@k), temperature 0.8.</param>
/// <param name="CurveEvery">Held-out avg@n every this many steps for the pass@1 curve (a smaller evaluation); 0: only at the end.</param>
/// <param name="TaskName">addition (the quick study of README.md's first part) or countdown (step form; issue 12).</param>
/// <param name="SftMinNumbers">Countdown: fewest numbers of an SFT problem (3 = the 3-number curriculum mixed into SFT).</param>
/// <param name="Numbers">Countdown: numbers per RL and evaluation problem (and the most per SFT problem).</param>
public sealed record StudyOptions(
    int MinDigits = 2, int MaxDigits = 2,
    string TaskName = "addition", int SftMinNumbers = 3, int Numbers = 4, int SftValidation = 0,
    string ModelPreset = "tiny",
    int SftSteps = 1500, float SftLr = 3e-3f, int SftBatch = 64, int SftExamples = 4000, double SftCorrectShare = 0.35,
    int Steps = 100, int Prompts = 64, int GroupSize = 8, double LearningRate = 5e-5, int WarmupSteps = 2,
    int MaxResponseTokens = 8,
    int[]? Seeds = null,
    string[]? Algorithms = null,
    int EvalProblems = 400, int EvalSamples = 16, int CurveEvery = 20, int CurveProblems = 100, int CurveSamples = 4,
    int BootstrapResamples = 10000,
    string OutDir = "samples/ArcherStudy/results",
    string Variant = "default")
{
    /// <summary>The order in which methods are run and reported; archer last so it is compared with all before it.</summary>
    public static readonly string[] AllAlgorithms = ["grpo", "dapo", "entropy-mask", "ar-lopti", "archer"];

    /// <summary>
    /// Single-lever Archer ablations (not run by default; pass them with --algorithms): each changes one thing of the archer
    /// preset, to attribute a difference between archer and grpo. archer-no-kl: β_k = 0 (no KL anywhere).
    /// archer-narrow-high: high-entropy tokens clipped like low ones (0.2/0.2), so only the KL on low tokens remains dual.
    /// archer-grpo-clip: both classes clipped 0.2/0.28 as in grpo, KL 0.001 on low tokens kept.
    /// </summary>
    public static readonly string[] Ablations = ["archer-no-kl", "archer-narrow-high", "archer-grpo-clip", "grpo-qin"];

    /// <summary>
    /// The Countdown study (issue 12 item 6): the five methods plus the ablation archer-no-kl, which is archer with
    /// rl.low.kl_coef = 0 (archer's only KL is on the low-entropy, "knowledge" class: rl.high.kl_coef is 0 already),
    /// and grpo-qin, the GRPO of Qin et al. 2025 for the crossover reproduction (item 5).
    /// </summary>
    public static readonly string[] CountdownAlgorithms = ["grpo-qin", "grpo", "dapo", "entropy-mask", "ar-lopti", "archer-no-kl", "archer"];

    static StudyOptions()
    {
        var archer = AlgorithmRegistry.Get("archer");
        AlgorithmRegistry.Register("archer-no-kl", () => archer with { Name = "archer-no-kl", Low = archer.Low with { KlCoef = 0 } });
        AlgorithmRegistry.Register("archer-narrow-high", () => archer with { Name = "archer-narrow-high", High = archer.High with { ClipLow = 0.2, ClipHigh = 0.2 } });
        AlgorithmRegistry.Register("archer-grpo-clip", () => archer with
        {
            Name = "archer-grpo-clip",
            Low = archer.Low with { ClipLow = 0.2, ClipHigh = 0.28 },
            High = archer.High with { ClipLow = 0.2, ClipHigh = 0.28 },
        });
        // Qin et al.'s GRPO (verl/my_scripts/countdown/grpo_countdown_oft.yaml): clip 0.2 both sides, k3 KL 0.001 on every
        // token, rollout temperature 0.7, one PPO epoch (verl's default). Their entropy bonus 0.001 is left out: the trainer's
        // per-token loss has no gradient through the entropy (AlgorithmLoss refuses entropy_coef != 0); README lists it.
        var grpo = AlgorithmRegistry.Get("grpo");
        AlgorithmRegistry.Register("grpo-qin", () => grpo with
        {
            Name = "grpo-qin",
            Low = new ClassLossSettings(0.2, 0.2, 0.001),
            High = new ClassLossSettings(0.2, 0.2, 0.001),
            UseKl = true,
            Temperature = 0.7,
            PpoEpochs = 1,
        });
    }

    public int[] SeedList => Seeds ?? [1, 2, 3, 4, 5];
    public string[] AlgorithmList => Algorithms ?? (IsCountdown ? CountdownAlgorithms : AllAlgorithms);

    public bool IsCountdown => TaskName == "countdown";

    public static StudyOptions Default => new();

    /// <summary>
    /// The Countdown study's budget, set from the measured cost (README.md, "Countdown: cost and plan"): about 4 hours
    /// on 2 cores for 3 seeds × 7 runs. SFT on 3- and 4-number problems, RL and evaluation on 4 numbers.
    /// </summary>
    public static StudyOptions Countdown => new(TaskName: "countdown", ModelPreset: "countdown-3m",
        SftSteps: 2000, SftLr: 1e-3f, SftBatch: 64, SftExamples: 100_000, SftCorrectShare: 1, SftValidation: 500,
        Steps: 100, Prompts: 16, GroupSize: 8, LearningRate: 1e-5, WarmupSteps: 5, MaxResponseTokens: 36,
        Seeds: [1, 2, 3], EvalProblems: 500, EvalSamples: 64, CurveEvery: 25, CurveProblems: 100, CurveSamples: 8,
        OutDir: "samples/ArcherStudy/results-countdown", Variant: "countdown");

    /// <summary>Countdown in the test suite (&lt; 1 min): the tiny model, a few steps, every method once.</summary>
    public static StudyOptions CountdownQuick => Countdown with
    {
        ModelPreset = "qwen2-tiny", SftSteps = 60, SftLr = 3e-3f, SftBatch = 16, SftExamples = 400, SftValidation = 16,
        Steps = 2, Prompts = 4, GroupSize = 4, WarmupSteps = 1, Seeds = [1], EvalProblems = 12, EvalSamples = 8,
        CurveEvery = 2, CurveProblems = 4, CurveSamples = 2, BootstrapResamples = 200,
        OutDir = "samples/ArcherStudy/results-countdown-quick", Variant = "countdown-quick",
    };

    /// <summary>The test-suite variant: 2 seeds, a few steps, a small evaluation (&lt; 60 s on 2 cores).</summary>
    public static StudyOptions Quick => new(SftSteps: 300, Steps: 6, Prompts: 8, GroupSize: 4, Seeds: [1, 2],
        EvalProblems: 40, EvalSamples: 8, CurveEvery: 3, CurveProblems: 20, CurveSamples: 2, BootstrapResamples: 2000, OutDir: "samples/ArcherStudy/results-quick", Variant: "quick");

    /// <summary>The RL and evaluation task.</summary>
    public ITask Task => IsCountdown
        ? new CountdownTask(CountdownOptions.Steps with { MinNumbers = Numbers, MaxNumbers = Numbers })
        : new ArithmeticTask(new ArithmeticOptions(MinDigits, MaxDigits, "+"));

    /// <summary>The SFT task: for Countdown the 3-number curriculum mixed with the study's 4-number problems.</summary>
    public ITask SftTask => IsCountdown
        ? new CountdownTask(CountdownOptions.Steps with { MinNumbers = SftMinNumbers, MaxNumbers = Numbers })
        : Task;

    /// <summary>Longest prompt in tokens ("99 99 99 99>100:" is 16 characters).</summary>
    public int MaxPromptTokens => 16;

    public string TaskDescription => IsCountdown
        ? $"Countdown, step form, {Numbers} numbers (SFT on {SftMinNumbers}..{Numbers})"
        : MinDigits == MaxDigits ? $"{MinDigits}-digit addition" : $"addition of {MinDigits}- to {MaxDigits}-digit numbers";

    /// <summary>
    /// The algorithm's preset scaled to the toy. Only budget and scale change (the same for every method);
    /// clip ranges, dual clip, KL weights and where they apply, classification scope and tie rule, masking,
    /// aggregation, rewards, filter / dynamic sampling, PPO epochs and AR-Lopti's α, η and two passes stay as
    /// the preset has them. Every changed key is listed in README.md.
    /// </summary>
    public AlgorithmConfig Scaled(string algorithm)
    {
        var c = AlgorithmRegistry.Get(algorithm) with
        {
            GroupSize = GroupSize,
            TrainBatchPrompts = Prompts,
            MiniBatchPrompts = Math.Max(1, Prompts / 2),
            MaxPromptTokens = MaxPromptTokens,
            MaxResponseTokens = MaxResponseTokens,
            LearningRate = LearningRate,
            WarmupSteps = WarmupSteps,
            Warmup = WarmupRule.StepPlusOneOverWarmup,
        };
        // DAPO's overlong buffer is 4096 of 20480 tokens; here half the response budget, so only rambling answers are shaped.
        if (c.OverlongShaping) c = c with { OverlongBuffer = Math.Max(1, MaxResponseTokens / 2) };
        return c.Validate();
    }

    /// <summary>Parses <c>--quick</c>, <c>--seeds 1,2,3</c>, <c>--steps N</c>, <c>--out DIR</c>, ... over the defaults.</summary>
    public static StudyOptions Parse(string[] args)
    {
        bool quick = args.Contains("--quick");
        int taskAt = Array.IndexOf(args, "--task");
        string taskName = taskAt >= 0 && taskAt + 1 < args.Length ? args[taskAt + 1] : "addition";
        var o = taskName switch
        {
            "addition" => quick ? Quick : Default,
            "countdown" => quick ? CountdownQuick : Countdown,
            _ => throw new ArgumentException($"--task {taskName}: unknown; expected addition or countdown"),
        };
        for (int i = 0; i < args.Length; i++)
        {
            string a = args[i];
            if (a is "--quick" or "--resume") continue;
            if (a == "--task") { i++; continue; }
            if (i + 1 >= args.Length) throw new ArgumentException($"option {a} needs a value");
            string v = args[++i];
            int Int() => int.Parse(v, CultureInfo.InvariantCulture);
            double Dbl() => double.Parse(v, CultureInfo.InvariantCulture);
            o = a switch
            {
                "--seeds" => o with { Seeds = v.Split(',').Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToArray() },
                "--algorithms" => o with { Algorithms = v.Split(',') },
                "--steps" => o with { Steps = Int() },
                "--prompts" => o with { Prompts = Int() },
                "--group-size" => o with { GroupSize = Int() },
                "--lr" => o with { LearningRate = Dbl() },
                "--sft-steps" => o with { SftSteps = Int() },
                "--sft-lr" => o with { SftLr = (float)Dbl() },
                "--sft-correct-share" => o with { SftCorrectShare = Dbl() },
                "--digits" => o with { MinDigits = int.Parse(v.Split('-')[0], CultureInfo.InvariantCulture), MaxDigits = int.Parse(v.Split('-')[^1], CultureInfo.InvariantCulture) },
                "--model" => o with { ModelPreset = v },
                "--eval-problems" => o with { EvalProblems = Int() },
                "--eval-samples" => o with { EvalSamples = Int() },
                "--curve-every" => o with { CurveEvery = Int() },
                "--numbers" => o with { Numbers = Int() },
                "--curve-problems" => o with { CurveProblems = Int() },
                "--out" => o with { OutDir = v },
                "--variant" => o with { Variant = v },
                _ => throw new ArgumentException($"unknown option {a}; see samples/ArcherStudy/README.md"),
            };
        }
        foreach (var alg in o.AlgorithmList) AlgorithmRegistry.Get(alg);
        if (o.SeedList.Length < 1) throw new ArgumentException("at least one seed");
        return o;
    }
}
