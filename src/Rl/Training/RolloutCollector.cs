using System.Diagnostics;
using ArcherIlgpu.Model;
using ArcherIlgpu.Model.Generation;
using ArcherIlgpu.Model.Tokenizers;
using ArcherIlgpu.Rl.Algorithms;
using ArcherIlgpu.Rl.Losses;
using ArcherIlgpu.Rl.Tasks;

namespace ArcherIlgpu.Rl.Training;

/// <summary>One sampled completion of one prompt, scored.</summary>
/// <param name="Group">Index of its prompt group within the generation batch it came from.</param>
/// <param name="ExampleIndex">Stream index of the problem (<see cref="DataCursor"/>).</param>
/// <param name="ResponseTokens">Generated tokens, including the end token when <paramref name="Ended"/>.</param>
/// <param name="RolloutLogProbs">Log-prob of each generated token under the sampling policy (full vocabulary, ÷ temperature).</param>
/// <param name="Correct">The task's verdict, 0 or 1.</param>
/// <param name="Reward">The reward the advantages see: Correct mapped to reward_wrong/reward_correct, plus the overlong penalty if on.</param>
public sealed record Rollout(int Group, long ExampleIndex, TaskExample Example, int[] PromptTokens, int[] ResponseTokens,
    float[] RolloutLogProbs, bool Ended, string Completion, double Correct, float Reward)
{
    public int ResponseLength => ResponseTokens.Length;
}

/// <summary>What one training step's rollout produced.</summary>
/// <param name="Kept">Rollouts of the groups that survived the filter, group after group (GroupSize each), in generation order.</param>
/// <param name="Generated">Every rollout generated this step, kept or not (the reward and length metrics use these).</param>
/// <param name="Counts">Group counts of the filter over every generated group (Kept there = informative groups, before any trim
/// to the batch size), summed over generation batches.</param>
/// <param name="GenerationBatches">How many prompt batches were generated (more than 1 only under dynamic sampling).</param>
public sealed record RolloutBatch(IReadOnlyList<Rollout> Kept, IReadOnlyList<Rollout> Generated, int GroupSize,
    GroupFilterCounts Counts, int GenerationBatches, double Seconds)
{
    public int KeptGroups => Kept.Count / GroupSize;
    public long GeneratedTokens => Generated.Sum(r => (long)r.ResponseLength);

    readonly int? allKeptGroups;
    readonly IReadOnlyList<int>? keptGroupIds;
    /// <summary>Kept groups over every rank of a data-parallel run (<see cref="KeptGroups"/> in one process).</summary>
    public int AllKeptGroups { get => allKeptGroups ?? KeptGroups; init => allKeptGroups = value; }
    /// <summary>The place of each of this rank's kept groups among <see cref="AllKeptGroups"/> (0, 1, 2, … in one process).</summary>
    public IReadOnlyList<int> KeptGroupIds { get => keptGroupIds ?? Enumerable.Range(0, KeptGroups).ToArray(); init => keptGroupIds = value; }
}

/// <summary>
/// Samples G completions per prompt with the policy's KV-cached generator, scores them with the task,
/// applies DAPO's overlong shaping when configured, and filters all-equal groups (Archer: drop;
/// DAPO: drop and generate more prompt batches until the batch is full or the limit is reached).
/// Every draw is fixed by (seed, row, position): row ids come from a counter that the caller keeps, so
/// the same seed, data cursor and counter reproduce the same rollouts.
/// </summary>
public sealed class RolloutCollector : IDisposable
{
    readonly CausalLm model;
    readonly ITokenizer tokenizer;
    readonly ITask task;
    readonly Generator generator;

    /// <param name="maxRowsPerGeneration">most sequences per generator call (bounds the KV cache); 0: the whole batch at once.</param>
    public RolloutCollector(CausalLm model, ITokenizer tokenizer, ITask task, AlgorithmConfig config, int maxRowsPerGeneration = 0)
    {
        this.model = model; this.tokenizer = tokenizer; this.task = task;
        Config = config.Validate();
        if (maxRowsPerGeneration < 0) throw new ArgumentOutOfRangeException(nameof(maxRowsPerGeneration), maxRowsPerGeneration, "must be >= 0 (0: no limit)");
        MaxRowsPerGeneration = maxRowsPerGeneration;
        generator = new Generator(model);
    }

    public AlgorithmConfig Config { get; }
    public int MaxRowsPerGeneration { get; }
    /// <summary>Data-parallel runs: this rank generates its share of each prompt batch; the filter's decisions are shared (see <see cref="RlReplicas"/>).</summary>
    public RlReplicas? Replicas { get; set; }

    /// <summary>
    /// Draws prompts from <paramref name="data"/> and rolls them out. <paramref name="rowCounter"/> is the
    /// RNG stream id of the next sequence and advances by every sequence sampled.
    /// </summary>
    public RolloutBatch Collect(DataCursor data, ulong seed, ref long rowCounter)
    {
        var clock = Stopwatch.StartNew();
        var c = Config;
        int G = c.GroupSize;
        bool dynamic = c.Filter == GroupFilterMode.DynamicSampling;
        int promptsPerBatch = dynamic ? (int)Math.Ceiling(c.TrainBatchPrompts * c.OversampleFactor) : c.TrainBatchPrompts;
        int maxBatches = dynamic ? c.MaxGenerationBatches : 1;

        var kept = new List<Rollout>();
        var keptIds = new List<int>();
        var generated = new List<Rollout>();
        int none = 0, all = 0, informative = 0, keptGroups = 0, batches = 0;
        while (batches < maxBatches && keptGroups < c.TrainBatchPrompts)
        {
            var problems = new List<(long Index, TaskExample Example)>(promptsPerBatch);
            for (int i = 0; i < promptsPerBatch; i++) problems.Add(data.Next());
            // Data-parallel: this rank's prompts only, each row on the RNG stream it has in one process.
            var (from, to) = Replicas?.ShareOf(problems.Count) ?? (0, problems.Count);
            long firstRow = rowCounter + (long)from * G;
            var rollouts = Generate(problems.GetRange(from, to - from), seed, ref firstRow).Select(r => r with { Group = r.Group + from }).ToList();
            rowCounter += (long)problems.Count * G;
            batches++;
            generated.AddRange(rollouts);

            var correct = rollouts.Select(r => (float)r.Correct).ToArray();
            var keep = new bool[to - from];
            // Filter on the verdict, not the shaped reward: DAPO keeps groups by the std of accuracy.
            var counts = GroupFilter.KeepInformative(correct, G, keep);
            if (Replicas is not null) { keep = Replicas.AllFlags(keep, from, problems.Count); counts = Replicas.Sum(counts); }
            none += counts.SolveNone; all += counts.SolveAll; informative += counts.Kept;
            for (int g = 0; g < problems.Count; g++)
            {
                if (c.Filter != GroupFilterMode.None && !keep[g]) continue;
                if (keptGroups == c.TrainBatchPrompts) break;   // dynamic sampling trims to the batch size
                if (g >= from && g < to) { kept.AddRange(rollouts.Skip((g - from) * G).Take(G)); keptIds.Add(keptGroups); }
                keptGroups++;
            }
        }
        return new RolloutBatch(kept, generated, G, new GroupFilterCounts(none, all, informative), batches, clock.Elapsed.TotalSeconds)
        {
            AllKeptGroups = keptGroups, KeptGroupIds = keptIds,
        };
    }

    /// <summary>G completions of each problem, scored; row r of the result is completion r % G of problem r / G.</summary>
    public List<Rollout> Generate(IReadOnlyList<(long Index, TaskExample Example)> problems, ulong seed, ref long rowCounter)
    {
        var c = Config;
        int G = c.GroupSize;
        var prompts = problems.Select(p => EncodePrompt(p.Example)).ToArray();
        int rows = problems.Count * G;
        int chunk = MaxRowsPerGeneration > 0 ? MaxRowsPerGeneration : rows;
        var result = new List<Rollout>(rows);
        for (int start = 0; start < rows; start += chunk)
        {
            int n = Math.Min(chunk, rows - start);
            var batchPrompts = new IReadOnlyList<int>[n];
            for (int i = 0; i < n; i++) batchPrompts[i] = prompts[(start + i) / G];
            if (rowCounter + n > int.MaxValue) throw new InvalidOperationException("the rollout row counter has run out of 31-bit stream ids; start a new seed");
            var options = new SamplingOptions(
                MaxNewTokens: Math.Min(c.MaxResponseTokens, model.Config.MaxT),
                Temperature: (float)c.Temperature, TopK: c.TopK, TopP: (float)c.TopP,
                Seed: seed, RowOffset: (int)rowCounter, EndToken: tokenizer.EndOfText);
            var gen = generator.Generate(batchPrompts, options);
            rowCounter += n;
            for (int i = 0; i < n; i++)
            {
                int row = start + i;
                var (index, example) = problems[row / G];
                result.Add(Score(row / G, index, example, prompts[row / G], gen.Tokens[i], gen.LogProbs[i], gen.Ended[i]));
            }
        }
        return result;
    }

    Rollout Score(int group, long index, TaskExample example, int[] prompt, int[] tokens, float[] logProbs, bool ended)
    {
        var c = Config;
        string completion = CompletionText.Decode(tokenizer, tokens, ended);
        double correct = task.Reward(example, completion);
        double reward = c.RewardWrong + correct * (c.RewardCorrect - c.RewardWrong);
        if (c.OverlongShaping)
            reward += OverlongShaping.Penalty(tokens.Length, c.MaxResponseTokens, c.OverlongBuffer, (float)c.OverlongPenaltyFactor);
        return new Rollout(group, index, example, prompt, tokens, logProbs, ended, completion, correct, (float)reward);
    }

    /// <summary>The prompt's tokens ([end token] for an empty prompt, GPT-2's start of text).</summary>
    public int[] EncodePrompt(TaskExample example)
    {
        var p = tokenizer.Encode(example.Prompt).ToArray();
        if (p.Length == 0) p = [tokenizer.EndOfText];
        if (p.Length > Config.MaxPromptTokens)
            throw new TaskDataException($"task \"{task.Name}\": prompt \"{Shorten(example.Prompt)}\" has {p.Length} tokens; max_prompt_tokens is {Config.MaxPromptTokens}");
        if (p.Length >= model.Config.MaxT)
            throw new TaskDataException($"task \"{task.Name}\": prompt \"{Shorten(example.Prompt)}\" has {p.Length} tokens; the model's context is {model.Config.MaxT}, which leaves no room to answer");
        return p;
    }

    static string Shorten(string s) => s.Length <= 60 ? s : s[..57] + "...";

    public void Dispose() => generator.Dispose();
}

/// <summary>Decoding of sampled tokens, which may include ids the tokenizer does not know (a model's vocabulary is often padded).</summary>
public static class CompletionText
{
    /// <summary>The text of <paramref name="tokens"/> without a final end token; ids outside the tokenizer's vocabulary become U+FFFD.</summary>
    public static string Decode(ITokenizer tokenizer, IReadOnlyList<int> tokens, bool endsWithEndToken)
    {
        int count = endsWithEndToken && tokens.Count > 0 ? tokens.Count - 1 : tokens.Count;
        var sb = new System.Text.StringBuilder();
        int runStart = 0;
        for (int i = 0; i <= count; i++)
        {
            bool unknown = i < count && (uint)tokens[i] >= (uint)tokenizer.VocabSize;
            if (i == count || unknown)
            {
                if (i > runStart) sb.Append(tokenizer.Decode(tokens.Skip(runStart).Take(i - runStart)));
                if (unknown) sb.Append('\uFFFD');
                runStart = i + 1;
            }
        }
        return sb.ToString();
    }
}
