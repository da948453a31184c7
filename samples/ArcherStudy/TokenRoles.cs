using ArcherIlgpu.Kernels;
using ArcherIlgpu.Model;
using ArcherIlgpu.Model.Tokenizers;
using ArcherIlgpu.Rl.Losses;
using ArcherIlgpu.Rl.Tasks;
using ArcherIlgpu.Rl.Training;

namespace ArcherStudy;

/// <summary>
/// The check the Countdown story rests on: which tokens of a step-form response land in Archer's high-entropy class?
/// Each response token gets a role (operand digit, operator, '=', result digit, ';', end), the policy's entropy at
/// each token is measured (temperature 1, as in rollouts), the tokens are classified as Archer does (per response,
/// high iff H &gt; the response's 0.8-quantile), and per role the share of its tokens in the high class is reported.
/// Archer's premise holds if operand and operator choices are mostly high and result digits mostly low.
/// </summary>
public static class TokenRoles
{
    public const string Operand = "operand", Operator = "operator", EqualsSign = "equals", Result = "result", Separator = "separator", End = "end";
    public static readonly string[] Names = [Operand, Operator, EqualsSign, Result, Separator, End];
    /// <summary>Extra keys of <see cref="HighShare"/>: the mean entropy (nats) of the high-class and of the low-class tokens,
    /// so methods without classes (GRPO) are measured with the same classification as Archer (claim c).</summary>
    public const string EntropyHigh = "entropy_high", EntropyLow = "entropy_low";

    /// <summary>The role of every character of a step-form response, then "end" for the end token when it ended.
    /// Digits after '=' up to ';' are result digits; other digits are operands; any other character is an operator
    /// when it is one of + - * /, else it gets no role (null).</summary>
    public static string?[] Of(string text, bool ended)
    {
        var roles = new List<string?>(text.Length + 1);
        bool afterEquals = false;
        foreach (char ch in text)
        {
            roles.Add(ch switch
            {
                >= '0' and <= '9' => afterEquals ? Result : Operand,
                '+' or '-' or '*' or '/' => Operator,
                '=' => EqualsSign,
                ';' => Separator,
                _ => null,
            });
            if (ch == '=') afterEquals = true;
            if (ch == ';') afterEquals = false;
        }
        if (ended) roles.Add(End);
        return [.. roles];
    }

    /// <summary>Per role, the share of its tokens in the high-entropy class, over <paramref name="samples"/> responses to
    /// each of the first <paramref name="problems"/> held-out problems (sampled at T = 0.8, seed 5).</summary>
    public static Dictionary<string, double> HighShare(CausalLm model, CharTokenizer tokenizer, ITask task, int problems, int samples, int maxResponseTokens)
    {
        var set = Evaluator.HeldOut(task, problems);
        IReadOnlyList<EvalCompletion> completions;
        using (var sampler = new ModelSampler(model, tokenizer, maxResponseTokens, maxRows: Study.SamplerRows, measureEntropy: false))
            completions = sampler.Sample(set, samples, 0.8, 5);
        int B = completions.Count;
        var prompts = set.Select(p => tokenizer.Encode(p.Prompt).ToArray()).ToArray();
        var responses = completions.Select(c => tokenizer.Encode(c.Text).Concat(c.Ended ? [tokenizer.EndOfText] : Array.Empty<int>()).ToArray()).ToArray();
        int T = Enumerable.Range(0, B).Max(b => prompts[b / samples].Length + responses[b].Length) - 1;
        var inputs = new int[B * T]; var targets = new int[B * T];
        Array.Fill(inputs, tokenizer.EndOfText); Array.Fill(targets, tokenizer.EndOfText);
        var mask = new float[B * T];
        for (int b = 0; b < B; b++)
        {
            var seq = prompts[b / samples].Concat(responses[b]).ToArray();
            for (int t = 0; t + 1 < seq.Length; t++) { inputs[b * T + t] = seq[t]; targets[b * T + t] = seq[t + 1]; }
            int first = prompts[b / samples].Length - 1;   // the position that predicts the first response token
            for (int k = 0; k < responses[b].Length; k++) mask[b * T + first + k] = 1;
        }
        var logProbs = new float[B * T]; var entropies = new float[B * T];
        for (int b0 = 0; b0 < B; b0 += Study.SamplerRows)   // in pieces, so the forward's activations stay small
        {
            int rows = Math.Min(Study.SamplerRows, B - b0);
            model.ForwardTokenLogProbs(rows, T, inputs.AsSpan(b0 * T, rows * T), targets.AsSpan(b0 * T, rows * T), 1f,
                logProbs.AsSpan(b0 * T, rows * T), entropies.AsSpan(b0 * T, rows * T));
        }
        var classes = ClassifyPerResponse(model.Backend, entropies, mask, B, T);
        var high = Names.ToDictionary(n => n, _ => 0L); var all = Names.ToDictionary(n => n, _ => 0L);
        double hHigh = 0, hLow = 0; long nHigh = 0, nLow = 0;
        for (int i = 0; i < B * T; i++)
        {
            if (mask[i] == 0) continue;
            if (classes[i] == PolicyMath.ClassHigh) { hHigh += entropies[i]; nHigh++; } else { hLow += entropies[i]; nLow++; }
        }
        for (int b = 0; b < B; b++)
        {
            var roles = Of(completions[b].Text, completions[b].Ended);
            int first = prompts[b / samples].Length - 1;
            for (int k = 0; k < roles.Length && k < responses[b].Length; k++)
            {
                if (roles[k] is not string role) continue;
                all[role]++;
                if (classes[b * T + first + k] == PolicyMath.ClassHigh) high[role]++;
            }
        }
        var shares = Names.ToDictionary(n => n, n => all[n] > 0 ? high[n] / (double)all[n] : double.NaN);
        shares[EntropyHigh] = nHigh > 0 ? hHigh / nHigh : double.NaN;
        shares[EntropyLow] = nLow > 0 ? hLow / nLow : double.NaN;
        return shares;
    }

    /// <summary>Archer's per-response classes at ρ = 0.8 (ties low), by the trainer's device classifier.</summary>
    static int[] ClassifyPerResponse(Backend backend, float[] entropies, float[] mask, int B, int T)
    {
        using var h = backend.Allocate<float>(B * T); using var m = backend.Allocate<float>(B * T);
        using var tau = backend.Allocate<float>(B); using var cls = backend.Allocate<int>(B * T);
        backend.Upload(h.All, entropies); backend.Upload(m.All, mask);
        backend.ClassifyTokensPerResponse(h.All, m.All, B, T, 0.8, strictGreater: true, tau.All, cls.All);
        return backend.ToArray(cls.All);
    }
}
