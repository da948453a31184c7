using System.Text.Json;

namespace ArcherIlgpu.Cli;

/// <summary>One {"prompt", "completion"} line as text, with "file:line" for messages.</summary>
public sealed record SftPair(string Prompt, string Completion, string Source);

/// <summary>
/// Reads SFT JSONL as text (the tokenizer may not exist yet: its alphabet comes from this text). One format
/// for SFT and evaluation files: {"prompt", "completion", "answer"}; SFT learns the "completion", or the
/// "answer" when a line has no completion (an evaluation file for <c>--task jsonl</c> trains as it is).
/// </summary>
public static class SftJsonl
{
    public static List<SftPair> Read(string path)
    {
        if (!File.Exists(path)) throw new CliInputException($"data file '{path}' not found");
        var pairs = new List<SftPair>();
        int lineNo = 0;
        foreach (var line in File.ReadLines(path))
        {
            lineNo++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            string where = $"{path}:{lineNo}";
            try
            {
                using var doc = JsonDocument.Parse(line);
                if (doc.RootElement.ValueKind != JsonValueKind.Object)
                    throw new CliInputException($"{where}: expected a JSON object with \"prompt\" and \"completion\" (or \"answer\")");
                var root = doc.RootElement;
                string target = root.TryGetProperty("completion", out _) || !root.TryGetProperty("answer", out _) ? "completion" : "answer";
                pairs.Add(new SftPair(Field(root, "prompt", where), Field(root, target, where), where));
            }
            catch (JsonException e)
            {
                throw new CliInputException($"{where}: not valid JSON ({e.Message})");
            }
        }
        if (pairs.Count == 0) throw new CliInputException($"{path}: no examples (the file has no non-blank lines)");
        return pairs;
    }

    static string Field(JsonElement obj, string name, string where)
    {
        if (!obj.TryGetProperty(name, out var v))
            throw new CliInputException($"{where}: missing field \"{name}\"" + (name == "completion" ? " (or \"answer\")" : ""));
        return v.ValueKind switch
        {
            JsonValueKind.String => v.GetString()!,
            JsonValueKind.Number when name == "answer" => v.GetRawText(),   // evaluation files may give the answer as a number
            _ => throw new CliInputException($"{where}: field \"{name}\" must be a string, got {v.ValueKind}"),
        };
    }
}
