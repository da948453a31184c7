using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace ArcherIlgpu.Rl.Training;

/// <summary>
/// One JSON object per line for metrics.jsonl and samples.jsonl. Keys keep their order; a non-finite
/// value (NaN when a class had no token, say) is written as null, since JSON has no NaN.
/// </summary>
public static class MetricsJson
{
    // Prompts are maths: keep '+', '<' and '&' readable instead of \u escapes (the lines are data files, never HTML).
    static readonly JsonWriterOptions Options = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static string Line(IEnumerable<KeyValuePair<string, double>> metrics) => Object(json =>
    {
        foreach (var (key, value) in metrics) WriteNumber(json, key, value);
    });

    public static string Line(SampleRecord s) => Object(json =>
    {
        json.WriteNumber("step", s.Step);
        json.WriteNumber("example", s.ExampleIndex);
        json.WriteString("prompt", s.Prompt);
        json.WriteString("completion", s.Completion);
        json.WriteString("answer", s.Answer);
        WriteNumber(json, "correct", s.Correct);
        WriteNumber(json, "reward", s.Reward);
        json.WriteNumber("length", s.Length);
        json.WriteBoolean("ended", s.Ended);
    });

    /// <summary>trainer_state.json: integers written exactly (a 64-bit seed does not survive a double).</summary>
    public static string Line(RlTrainerState s) => Object(json =>
    {
        json.WriteNumber("step", s.Step);
        json.WriteNumber("data_seed", s.DataSeed);
        json.WriteNumber("data_cursor", s.DataCursor);
        json.WriteNumber("seed", s.Seed);
        json.WriteNumber("rng_counter", s.RngCounter);
        json.WriteNumber("skipped_total", s.SkippedTotal);
    });

    /// <summary>One JSON object on one line, its members written by <paramref name="members"/>.</summary>
    static string Object(Action<Utf8JsonWriter> members)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer, Options))
        {
            json.WriteStartObject();
            members(json);
            json.WriteEndObject();
        }
        return Encoding.UTF8.GetString(buffer.ToArray());
    }

    static void WriteNumber(Utf8JsonWriter json, string key, double value)
    {
        if (double.IsFinite(value)) json.WriteNumber(key, value);
        else json.WriteNull(key);
    }
}
