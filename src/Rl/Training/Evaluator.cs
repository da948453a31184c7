using System.Globalization;
using ArcherIlgpu.Model;
using ArcherIlgpu.Model.Generation;
using ArcherIlgpu.Model.Tokenizers;
using ArcherIlgpu.Rl.Metrics;
using ArcherIlgpu.Rl.Tasks;

namespace ArcherIlgpu.Rl.Training;

/// <summary>One sampled completion for evaluation.</summary>
/// <param name="Length">Generated tokens, the end token included.</param>
/// <param name="EntropySum">Sum over the generated tokens of the entropy of the distribution each was drawn from (0 if not measured).</param>
/// <param name="EntropyTokens">Tokens the entropy sum covers (0 if not measured).</param>
public sealed record EvalCompletion(string Text, int Length, bool Ended, double EntropySum = 0, int EntropyTokens = 0);

/// <summary>Something that answers problems: the model, or a scripted policy in tests.</summary>
public interface ICompletionSampler
{
    /// <summary><paramref name="n"/> completions per problem, problem-major (completion j of problem i at i·n + j).
    /// Temperature 0 is greedy. The same seed gives the same completions.</summary>
    IReadOnlyList<EvalCompletion> Sample(IReadOnlyList<TaskExample> problems, int n, double temperature, ulong seed);
}

/// <summary>Evaluation settings; defaults follow the Archer paper (§5.1: temperature 0.8, top-p 1).</summary>
/// <param name="Problems">Held-out problems.</param>
/// <param name="Samples">n, samples per problem for avg@n and pass@k.</param>
/// <param name="Greedy">Also measure greedy (temperature 0) accuracy, one completion per problem.</param>
/// <param name="ProblemSeed">Seed of the held-out problem stream (different from any training seed by default).</param>
public sealed record EvalOptions(int Problems = 100, int Samples = 8, double Temperature = 0.8, ulong Seed = 1,
    bool Greedy = true, long ProblemSeed = Evaluator.HeldOutSeed)
{
    public EvalOptions Validate()
    {
        if (Problems < 1) throw new ArgumentException($"eval problems must be >= 1, got {Problems}");
        if (Samples < 1) throw new ArgumentException($"eval samples per problem must be >= 1, got {Samples}");
        if (!(Temperature >= 0) || double.IsInfinity(Temperature)) throw new ArgumentException($"eval temperature must be finite and >= 0, got {Temperature}");
        return this;
    }
}

/// <summary>Evaluation numbers. PassAtK maps k (1, 2, 4, ... and n) to the unbiased pass@k averaged over problems.</summary>
/// <param name="VerdictShares">For a task with verdicts (<see cref="ITask.Verdicts"/>): each verdict's share of the sampled
/// completions (every verdict listed, 0 included); empty otherwise.</param>
public sealed record EvalResult(int Problems, int Samples, double Temperature, double AvgAtN, IReadOnlyDictionary<int, double> PassAtK,
    double GreedyAccuracy, double MeanResponseLength, double MeanEntropy, IReadOnlyList<int> CorrectCounts,
    IReadOnlyDictionary<string, double>? VerdictShares = null)
{
    /// <summary>Flat metrics: eval/avg@n, eval/pass@k, eval/greedy, eval/response_length, eval/entropy, and eval/verdict/NAME
    /// (share of the sampled completions with that verdict) for a task with verdicts.</summary>
    public IReadOnlyDictionary<string, double> ToMetrics(string prefix = "eval/")
    {
        var m = new SortedDictionary<string, double>(StringComparer.Ordinal)
        {
            [$"{prefix}avg@{Samples}"] = AvgAtN,
            [prefix + "greedy"] = GreedyAccuracy,
            [prefix + "response_length"] = MeanResponseLength,
            [prefix + "entropy"] = MeanEntropy,
        };
        foreach (var (k, v) in PassAtK) m[$"{prefix}pass@{k}"] = v;
        foreach (var (name, share) in VerdictShares ?? new Dictionary<string, double>()) m[$"{prefix}verdict/{name}"] = share;
        return m;
    }

    /// <summary>A plain-text table, one metric per line.</summary>
    public string ToTable()
    {
        var lines = new List<string> { $"{"metric",-22} value", $"{"problems",-22} {Problems}", $"{"samples",-22} {Samples} at temperature {Temperature.ToString("0.##", CultureInfo.InvariantCulture)}" };
        foreach (var (k, v) in ToMetrics("")) lines.Add($"{k,-22} {v.ToString("0.0000", CultureInfo.InvariantCulture)}");
        return string.Join(Environment.NewLine, lines);
    }
}

/// <summary>
/// Held-out evaluation of a task (problems of <see cref="Tasks.HeldOut.EvalSet"/>: never in any training stream,
/// each once): n samples per problem at temperature 0.8 (configurable) give avg@n
/// and the unbiased pass@k for k = 1, 2, 4, ..., n; one greedy completion per problem gives the greedy
/// accuracy; plus the mean response length and the mean entropy of the sampled tokens.
/// </summary>
public static class Evaluator
{
    /// <summary>Default seed of the order in which held-out problems are drawn.</summary>
    public const long HeldOutSeed = Tasks.HeldOut.EvalSeed;

    /// <summary><paramref name="count"/> distinct held-out problems (<see cref="Tasks.HeldOut.EvalSet"/>), of one named
    /// held-out group when <paramref name="group"/> is given.</summary>
    public static IReadOnlyList<TaskExample> HeldOut(ITask task, int count, long seed = HeldOutSeed, string? group = null) =>
        Tasks.HeldOut.EvalSet(task, count, seed, group);

    /// <summary>k = 1, 2, 4, ... up to n, and n itself.</summary>
    public static IReadOnlyList<int> KValues(int n)
    {
        var ks = new List<int>();
        for (int k = 1; k <= n; k *= 2) ks.Add(k);
        if (ks[^1] != n) ks.Add(n);
        return ks;
    }

    public static EvalResult Evaluate(CausalLm model, ITokenizer tokenizer, ITask task, EvalOptions options, int maxResponseTokens,
        double topP = 1.0, int topK = 0)
    {
        return Evaluate(model, tokenizer, task, HeldOut(task, options.Problems, options.ProblemSeed), options, maxResponseTokens, topP, topK);
    }

    /// <summary>Evaluates given problems (a user's problems file, a named held-out group); options.Problems is not used.</summary>
    public static EvalResult Evaluate(CausalLm model, ITokenizer tokenizer, ITask task, IReadOnlyList<TaskExample> problems, EvalOptions options,
        int maxResponseTokens, double topP = 1.0, int topK = 0)
    {
        using var sampler = new ModelSampler(model, tokenizer, maxResponseTokens, topP, topK);
        return Evaluate(sampler, task, problems, options);
    }

    public static EvalResult Evaluate(ICompletionSampler sampler, ITask task, IReadOnlyList<TaskExample> problems, EvalOptions options)
    {
        options.Validate();
        if (problems.Count == 0) throw new ArgumentException("no problems to evaluate");
        int n = options.Samples;
        var completions = sampler.Sample(problems, n, options.Temperature, options.Seed);
        if (completions.Count != problems.Count * n)
            throw new InvalidOperationException($"the sampler returned {completions.Count} completions for {problems.Count} problems × {n}");
        var correct = new int[problems.Count];
        double lengthSum = 0, entropySum = 0; long entropyTokens = 0;
        for (int i = 0; i < problems.Count; i++)
            for (int j = 0; j < n; j++)
            {
                var c = completions[i * n + j];
                if (task.Reward(problems[i], c.Text) > 0) correct[i]++;
                lengthSum += c.Length;
                entropySum += c.EntropySum; entropyTokens += c.EntropyTokens;
            }
        var passAtK = new SortedDictionary<int, double>();
        foreach (int k in KValues(n)) passAtK[k] = PassAtK.Mean(correct.Select(c => (n, c)), k);
        double avg = correct.Average(c => PassAtK.AverageAtN(n, c));

        double greedy = double.NaN;
        if (options.Greedy)
        {
            var g = sampler.Sample(problems, 1, 0.0, options.Seed);
            greedy = Enumerable.Range(0, problems.Count).Average(i => task.Reward(problems[i], g[i].Text) > 0 ? 1.0 : 0.0);
        }
        return new EvalResult(problems.Count, n, options.Temperature, avg, passAtK, greedy, lengthSum / completions.Count,
            entropyTokens > 0 ? entropySum / entropyTokens : double.NaN, correct,
            TaskVerdicts.Shares(task, completions.Select((c, r) => (problems[r / n], c.Text)).ToArray()));
    }
}

/// <summary>
/// Samples with the model's KV-cached generator; the entropy of each sampled token's distribution comes
/// from one extra training forward over the finished sequences (at the sampling temperature; greedy: 1).
/// </summary>
public sealed class ModelSampler : ICompletionSampler, IDisposable
{
    readonly CausalLm model;
    readonly ITokenizer tokenizer;
    readonly Generator generator;
    readonly int maxResponseTokens, topK, maxRows;
    readonly double topP;

    /// <param name="maxRows">most sequences per generator call.</param>
    /// <param name="measureEntropy">run the extra forward that measures token entropies.</param>
    public ModelSampler(CausalLm model, ITokenizer tokenizer, int maxResponseTokens, double topP = 1.0, int topK = 0, int maxRows = 512,
        bool measureEntropy = true)
    {
        if (maxResponseTokens < 1) throw new ArgumentException($"max response tokens must be >= 1, got {maxResponseTokens}");
        if (maxRows < 1) throw new ArgumentException($"max rows must be >= 1, got {maxRows}");
        this.model = model; this.tokenizer = tokenizer;
        this.maxResponseTokens = maxResponseTokens; this.topP = topP; this.topK = topK; this.maxRows = maxRows;
        MeasureEntropy = measureEntropy;
        generator = new Generator(model);
    }

    public bool MeasureEntropy { get; }

    public IReadOnlyList<EvalCompletion> Sample(IReadOnlyList<TaskExample> problems, int n, double temperature, ulong seed)
    {
        var prompts = problems.Select(p =>
        {
            var ids = tokenizer.Encode(p.Prompt).ToArray();
            return ids.Length == 0 ? [tokenizer.EndOfText] : ids;
        }).ToArray();
        int rows = problems.Count * n;
        var result = new List<EvalCompletion>(rows);
        for (int start = 0; start < rows; start += maxRows)
        {
            int count = Math.Min(maxRows, rows - start);
            var batch = new IReadOnlyList<int>[count];
            for (int i = 0; i < count; i++) batch[i] = prompts[(start + i) / n];
            var gen = generator.Generate(batch, new SamplingOptions(Math.Min(maxResponseTokens, model.Config.MaxT), (float)temperature, topK, (float)topP,
                seed, start, tokenizer.EndOfText));
            var entropy = MeasureEntropy ? Entropies(batch, gen.Tokens, temperature > 0 ? (float)temperature : 1f) : null;
            for (int i = 0; i < count; i++)
            {
                var t = gen.Tokens[i];
                string text = CompletionText.Decode(tokenizer, t, gen.Ended[i]);
                result.Add(new EvalCompletion(text, t.Length, gen.Ended[i], entropy?[i] ?? 0, entropy is null ? 0 : t.Length));
            }
        }
        return result;
    }

    /// <summary>Per row, the summed entropy over its generated tokens.</summary>
    double[] Entropies(IReadOnlyList<int>[] prompts, int[][] responses, float temperature)
    {
        int B = prompts.Length;
        int T = Enumerable.Range(0, B).Max(b => prompts[b].Count + responses[b].Length) - 1;
        var inputs = new int[B * T]; var targets = new int[B * T];
        Array.Fill(inputs, tokenizer.EndOfText); Array.Fill(targets, tokenizer.EndOfText);
        for (int b = 0; b < B; b++)
        {
            var seq = prompts[b].Concat(responses[b]).ToArray();
            for (int t = 0; t + 1 < seq.Length; t++) { inputs[b * T + t] = seq[t]; targets[b * T + t] = seq[t + 1]; }
        }
        var lp = new float[B * T]; var ent = new float[B * T];
        model.ForwardTokenLogProbs(B, T, inputs, targets, temperature, lp, ent);
        var sums = new double[B];
        for (int b = 0; b < B; b++)
        {
            int first = prompts[b].Count - 1;   // position predicting the first response token
            for (int k = 0; k < responses[b].Length; k++) sums[b] += ent[b * T + first + k];
        }
        return sums;
    }

    public void Dispose() => generator.Dispose();
}
