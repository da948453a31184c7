using System.Collections;
using System.Globalization;
using System.Text;
using System.Text.Json;

namespace ArcherIlgpu.Runs;

/// <summary>
/// Writes a resolved config as indented snake_case JSON that <see cref="ConfigBinder"/> reads back to an
/// equal value. Enums are written as snake_case names; non-finite numbers as the strings "Infinity",
/// "-Infinity", "NaN" (JSON has no literal for them).
/// </summary>
public static class ConfigWriter
{
    public static string ToJson<T>(T config) where T : notnull
    {
        using var stream = new MemoryStream();
        using (var writer = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
            WriteSection(writer, config);
        return Encoding.UTF8.GetString(stream.ToArray()) + "\n";
    }

    /// <summary>Writes the JSON to <paramref name="path"/> atomically.</summary>
    public static void Save<T>(T config, string path) where T : notnull => AtomicFile.WriteAllText(path, ToJson(config));

    /// <summary>"key = value" for every leaf, dotted, in declaration order (for logs and <c>--help</c>).</summary>
    public static IReadOnlyList<(string Key, string Value)> Flatten<T>(T config) where T : notnull
    {
        var list = new List<(string, string)>();
        Flatten(config, "", list);
        return list;
    }

    static void Flatten(object section, string prefix, List<(string, string)> list)
    {
        foreach (var p in ConfigSchema.PropertiesOf(section.GetType()))
        {
            var value = p.Info.GetValue(section);
            if (p.Kind == ValueKind.Section && value != null) Flatten(value, prefix + p.Key + ".", list);
            else list.Add((prefix + p.Key, FormatText(value)));
        }
    }

    static string FormatText(object? value) => value switch
    {
        null => "null",
        string s => s,
        bool b => b ? "true" : "false",
        Enum e => ConfigSchema.KeyOf(e.ToString()),
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        IEnumerable items => string.Join(",", items.Cast<object?>().Select(FormatText)),
        _ => value.ToString() ?? "",
    };

    static void WriteSection(Utf8JsonWriter writer, object section)
    {
        writer.WriteStartObject();
        foreach (var p in ConfigSchema.PropertiesOf(section.GetType()))
        {
            writer.WritePropertyName(p.Key);
            WriteValue(writer, p.Info.GetValue(section), p.Kind);
        }
        writer.WriteEndObject();
    }

    static void WriteValue(Utf8JsonWriter writer, object? value, ValueKind kind)
    {
        switch (value)
        {
            case null: writer.WriteNullValue(); break;
            case string s: writer.WriteStringValue(s); break;
            case bool b: writer.WriteBooleanValue(b); break;
            case Enum e: writer.WriteStringValue(ConfigSchema.KeyOf(e.ToString())); break;
            case double d: WriteReal(writer, d, () => writer.WriteNumberValue(d)); break;
            case float f: WriteReal(writer, f, () => writer.WriteNumberValue(f)); break;
            case decimal m: writer.WriteNumberValue(m); break;
            case int or long or short or byte or uint or ulong:
                writer.WriteRawValue(Convert.ToString(value, CultureInfo.InvariantCulture)!); break;
            case IEnumerable items when kind == ValueKind.List:
                writer.WriteStartArray();
                foreach (var item in items) WriteValue(writer, item, ConfigSchema.Classify(item?.GetType() ?? typeof(string)));
                writer.WriteEndArray();
                break;
            default: WriteSection(writer, value); break;
        }
    }

    static void WriteReal(Utf8JsonWriter writer, double value, Action finite)
    {
        if (double.IsFinite(value)) finite();
        else writer.WriteStringValue(double.IsNaN(value) ? "NaN" : value > 0 ? "Infinity" : "-Infinity");
    }
}
