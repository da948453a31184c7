using System.Text.Json;
using ArcherIlgpu.Model.Gpt2;
using ArcherIlgpu.Model.Tokenizers;

namespace ArcherIlgpu.Model.Training;

/// <summary>One tokenized SFT example: the loss covers Completion (which ends with the end token), never Prompt.</summary>
/// <param name="Source">"file:line" it came from, for messages.</param>
public sealed record SftExample(int[] Prompt, int[] Completion, string Source)
{
    /// <summary>Tokens of the whole sequence: prompt then completion.</summary>
    public int Length => Prompt.Length + Completion.Length;
}

/// <summary>Reads {"prompt": ..., "completion": ...} JSONL and turns examples into training batches.</summary>
public static class SftData
{
    /// <summary>
    /// Tokenizes every non-blank line of <paramref name="path"/>. The completion gets the tokenizer's end
    /// token appended (so the model learns to stop); an empty prompt becomes [end token] (GPT-2's
    /// convention for "start of text"). A line that does not parse, lacks a field, or does not fit
    /// <paramref name="maxT"/> + 1 tokens fails with the file and line number.
    /// </summary>
    public static List<SftExample> Load(string path, ITokenizer tokenizer, int maxT)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: SFT data file not found", path);
        var examples = new List<SftExample>();
        int lineNo = 0;
        foreach (var line in File.ReadLines(path))
        {
            lineNo++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            string where = $"{path}:{lineNo}";
            string prompt, completion;
            try
            {
                using var doc = JsonDocument.Parse(line);
                if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"{where}: expected a JSON object with \"prompt\" and \"completion\"");
                prompt = Field(doc.RootElement, "prompt", where);
                completion = Field(doc.RootElement, "completion", where);
            }
            catch (JsonException e)
            {
                throw new InvalidDataException($"{where}: not valid JSON ({e.Message})", e);
            }
            examples.Add(Tokenize(prompt, completion, tokenizer, maxT, where));
        }
        if (examples.Count == 0) throw new InvalidDataException($"{path}: no examples (the file has no non-blank lines)");
        return examples;
    }

    public static SftExample Tokenize(string prompt, string completion, ITokenizer tokenizer, int maxT, string source)
    {
        var p = tokenizer.Encode(prompt).ToArray();
        if (p.Length == 0) p = [tokenizer.EndOfText];
        var c = tokenizer.Encode(completion).Append(tokenizer.EndOfText).ToArray();
        // A sequence of n tokens gives n-1 (input, target) pairs, which must fit the context.
        if (p.Length + c.Length - 1 > maxT)
            throw new InvalidDataException($"{source}: prompt + completion + end token is {p.Length + c.Length} tokens; at most {maxT + 1} fit the context length {maxT}");
        return new SftExample(p, c, source);
    }

    static string Field(JsonElement obj, string name, string where)
    {
        if (!obj.TryGetProperty(name, out var v)) throw new InvalidDataException($"{where}: missing field \"{name}\"");
        if (v.ValueKind != JsonValueKind.String) throw new InvalidDataException($"{where}: field \"{name}\" must be a string, got {v.ValueKind}");
        return v.GetString()!;
    }

    /// <summary>
    /// Packs examples into a right-padded batch of T = longest sequence - 1. Position t of a row predicts
    /// token t+1; its weight is 1 exactly when token t+1 belongs to the completion. Padding uses
    /// <paramref name="padToken"/> with weight 0.
    /// </summary>
    public static TrainingBatch MakeBatch(IReadOnlyList<SftExample> examples, int padToken)
    {
        int B = examples.Count;
        int T = examples.Max(e => e.Length) - 1;
        var inputs = new int[B * T]; var targets = new int[B * T]; var weights = new float[B * T];
        Array.Fill(inputs, padToken); Array.Fill(targets, padToken);
        for (int b = 0; b < B; b++)
        {
            var e = examples[b];
            var seq = e.Prompt.Concat(e.Completion).ToArray();
            for (int t = 0; t + 1 < seq.Length; t++)
            {
                inputs[b * T + t] = seq[t];
                targets[b * T + t] = seq[t + 1];
                weights[b * T + t] = t + 1 >= e.Prompt.Length ? 1f : 0f;
            }
        }
        return new TrainingBatch(B, T, inputs, targets, weights);
    }
}
