using System.Text.Json;
using System.Text.Json.Nodes;

namespace ArcherIlgpu.Model.IO;

/// <summary>
/// Typed reads of Hugging Face <c>config.json</c> fields. Every failure is a <see cref="ModelFormatException"/>
/// naming the file and the field. A field that is absent and one that is JSON <c>null</c> read the same
/// (transformers treats both as "use the default").
/// </summary>
internal static class ConfigJson
{
    public static JsonObject ParseObject(string json, string source)
    {
        JsonNode? root;
        // A key given twice is an error, not "the last one wins": a hand-edited config must say one thing.
        try { root = JsonNode.Parse(json, documentOptions: new JsonDocumentOptions { AllowDuplicateProperties = false }); }
        catch (JsonException e) { throw new ModelFormatException($"{source}: not valid JSON ({Describe(e)})", e); }
        return root as JsonObject ?? throw new ModelFormatException($"{source}: expected a JSON object");
    }

    /// <summary>
    /// A <see cref="JsonException"/> on one line: its message when that is one line (it names line and byte), else
    /// only the position (System.Text.Json quotes a bad literal with everything after it, newlines included).
    /// </summary>
    public static string Describe(JsonException e) => e.Message.AsSpan().IndexOfAny('\n', '\r') < 0 ? e.Message
        : $"at line {(e.LineNumber ?? 0) + 1}, byte {(e.BytePositionInLine ?? 0) + 1}";

    public static int RequiredInt(JsonObject obj, string field, string source) =>
        OptionalInt(obj, field, source) ?? throw new ModelFormatException($"{source}: required field '{field}' is missing");

    public static int? OptionalInt(JsonObject obj, string field, string source) =>
        Get(obj, field, source, "an integer", n => n.GetValue<int>());

    public static double? OptionalDouble(JsonObject obj, string field, string source) =>
        Get(obj, field, source, "a number", n => n.GetValue<double>());

    public static bool? OptionalBool(JsonObject obj, string field, string source) =>
        Get(obj, field, source, "true or false", n => n.GetValue<bool>());

    public static string? OptionalString(JsonObject obj, string field, string source) =>
        obj[field] is null ? null : Get(obj, field, source, "a string", n => n.GetValue<string>());

    /// <summary>
    /// Fails naming the field and <paramref name="why"/> when a boolean architecture key holds
    /// <paramref name="unsupported"/>, the value whose computation this project does not implement.
    /// </summary>
    public static void RejectFlag(JsonObject obj, string field, bool unsupported, string source, string why)
    {
        if (OptionalBool(obj, field, source) == unsupported)
            throw new ModelFormatException($"{source}: {field} is {(unsupported ? "true" : "false")}: {why}");
    }

    static T? Get<T>(JsonObject obj, string field, string source, string expected, Func<JsonNode, T> read) where T : struct
    {
        var node = obj[field];
        if (node is null) return null;
        try { return read(node); }
        catch (Exception e) when (e is FormatException or InvalidOperationException or OverflowException)
        {
            throw new ModelFormatException($"{source}: field '{field}' must be {expected}, got {node.ToJsonString()}", e);
        }
    }

    static string Get(JsonObject obj, string field, string source, string expected, Func<JsonNode, string> read)
    {
        var node = obj[field]!;
        try { return read(node); }
        catch (Exception e) when (e is FormatException or InvalidOperationException)
        {
            throw new ModelFormatException($"{source}: field '{field}' must be {expected}, got {node.ToJsonString()}", e);
        }
    }
}
