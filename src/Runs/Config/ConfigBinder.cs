using System.Collections;
using System.Globalization;
using System.Reflection;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace ArcherIlgpu.Runs;

/// <summary>
/// Binds a config record from defaults, then a JSON file, then <c>--set key=value</c> overrides, in that
/// order, by reflection over public init/set properties. Keys are the snake_case property names, dotted
/// for nested records (<c>algo.low.clip_low=0.2</c>). Supported values: integers, floating point
/// (also "inf", "-inf", "nan"), bool, string, enums by name (any case, '_' or '-' optional), lists of
/// those, nullable versions, and nested records/classes. The defaults object is never modified.
/// Unknown keys and wrong types throw <see cref="ConfigException"/> naming the key, the file and JSON
/// path, the value, and the valid keys or the expected type. Afterwards the root's public
/// parameterless <c>Validate()</c> runs if there is one: it may throw <see cref="ArgumentException"/>,
/// return problems as strings (non-empty means invalid), or return anything else (ignored).
/// </summary>
public static class ConfigBinder
{
    static readonly JsonDocumentOptions jsonOptions = new() { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true };

    public static T Bind<T>(T defaults, string? jsonFile = null, IEnumerable<string>? sets = null) where T : notnull
    {
        object target = ConfigSchema.Clone(defaults);
        if (jsonFile != null) target = ApplyJsonFile(target, jsonFile);
        foreach (var set in sets ?? [])
            target = ApplySet(target, set);
        var result = (T)target;
        Validate(result);
        return result;
    }

    /// <summary>Binds JSON text (no file), e.g. a config.json read back; <paramref name="source"/> names it in errors.</summary>
    public static T BindJson<T>(T defaults, string json, string source = "<json>", IEnumerable<string>? sets = null) where T : notnull
    {
        object target = ApplyJsonText(ConfigSchema.Clone(defaults), json, source);
        foreach (var set in sets ?? []) target = ApplySet(target, set);
        var result = (T)target;
        Validate(result);
        return result;
    }

    /// <summary>Every leaf key of <typeparamref name="T"/>, dotted, in declaration order (for help text).</summary>
    public static IReadOnlyList<string> Keys<T>() => ConfigSchema.LeafKeys(typeof(T)).ToList();

    /// <summary>" Did you mean 'a' or 'b'?" for an unknown <paramref name="key"/>, from the <paramref name="valid"/> keys close to it; empty when none is.</summary>
    public static string DidYouMean(string key, IEnumerable<string> valid)
    {
        var closest = ConfigSchema.Closest(key, valid);
        return closest.Count > 0 ? $" Did you mean {string.Join(" or ", closest.Select(c => $"'{c}'"))}?" : "";
    }

    /// <summary>Runs the type's public parameterless Validate(), turning its complaints into <see cref="ConfigException"/>.</summary>
    public static void Validate(object config)
    {
        var method = config.GetType().GetMethod("Validate", BindingFlags.Public | BindingFlags.Instance, Type.EmptyTypes);
        if (method == null) return;
        object? returned;
        try { returned = method.Invoke(config, null); }
        catch (TargetInvocationException e) when (e.InnerException is ArgumentException inner)
        {
            if (inner is ConfigException) throw inner;
            throw new ConfigException(inner.Message, inner: inner);
        }
        if (returned is IEnumerable<string> problems && returned is not string)
        {
            var list = problems.ToList();
            if (list.Count > 0)
                throw new ConfigException($"invalid {config.GetType().Name}:\n  " + string.Join("\n  ", list));
        }
    }

    // ------------------------------------------------------------------ JSON

    static object ApplyJsonFile(object target, string path)
    {
        if (Directory.Exists(path))
            throw new ConfigException($"config file '{path}' is a folder; expected a JSON file (e.g. a run's config.json)", file: path);
        string text;
        try { text = System.IO.File.ReadAllText(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ConfigException($"cannot read config file '{path}': {e.Message}", file: path, inner: e);
        }
        return ApplyJsonText(target, text, path);
    }

    static object ApplyJsonText(object target, string text, string source)
    {
        JsonNode? root;
        try
        {
            using (var document = JsonDocument.Parse(text, jsonOptions))
                if (DuplicateKey(document.RootElement, "$") is string path)
                    throw new ConfigException($"config file '{source}': key '{path[(path.LastIndexOf('.') + 1)..]}' is given twice (at {path}); give each key once",
                        file: source);
            root = JsonNode.Parse(text, documentOptions: jsonOptions);
        }
        catch (JsonException e)
        {
            string where = e.LineNumber is long line ? $" (line {line + 1}, byte {e.BytePositionInLine + 1})" : "";
            throw new ConfigException($"config file '{source}' is not valid JSON{where}: {e.Message}", file: source, inner: e);
        }
        if (root is not JsonObject obj)
            throw new ConfigException($"config file '{source}' must hold a JSON object {{...}}, got {Kind(root)}", file: source);
        ApplyObject(target, obj, "", "$", source);
        return target;
    }

    /// <summary>The JSON path of the first key that an object of <paramref name="element"/> holds twice, or null:
    /// which of the two was meant cannot be known, and a JSON object would silently keep one.</summary>
    static string? DuplicateKey(JsonElement element, string path)
    {
        if (element.ValueKind == JsonValueKind.Object)
        {
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var p in element.EnumerateObject())
            {
                string at = $"{path}.{p.Name}";
                if (!seen.Add(p.Name)) return at;
                if (DuplicateKey(p.Value, at) is string inner) return inner;
            }
        }
        else if (element.ValueKind == JsonValueKind.Array)
        {
            int i = 0;
            foreach (var item in element.EnumerateArray())
                if (DuplicateKey(item, $"{path}[{i++}]") is string found) return found;
        }
        return null;
    }

    /// <summary>Applies each member of <paramref name="obj"/> to the (already cloned) <paramref name="target"/>.</summary>
    static void ApplyObject(object target, JsonObject obj, string keyPrefix, string jsonPath, string source)
    {
        var type = target.GetType();
        foreach (var (name, node) in obj)
        {
            string key = keyPrefix + name;
            string path = jsonPath + "." + name;
            var property = ConfigSchema.Find(type, name)
                ?? throw Unknown(type, key, keyPrefix, $"in '{source}' at {path}", source);
            string where = $"'{source}' at {path} (key '{keyPrefix + property.Key}')";
            property.Info.SetValue(target, FromJson(property, target, node, keyPrefix + property.Key, path, where, source));
        }
    }

    static object? FromJson(ConfigProperty p, object owner, JsonNode? node, string key, string path, string where, string source)
    {
        if (node == null)
        {
            if (p.AllowsNull) return null;
            throw new ConfigException($"{where}: expected {ConfigSchema.Describe(p)}, got null", key, source);
        }
        if (p.Kind == ValueKind.Section)
        {
            if (node is not JsonObject section)
                throw new ConfigException($"{where}: expected a section (a JSON object with keys {string.Join(", ", ConfigSchema.PropertiesOf(p.ValueType).Select(q => q.Key))}), got {Kind(node)} {Short(node)}", key, source);
            object child = CurrentOrDefault(p, owner, key);
            ApplyObject(child, section, key + ".", path, source);
            return child;
        }
        if (p.Kind == ValueKind.List)
        {
            var elementType = ConfigSchema.ElementType(p.ValueType)!;
            if (node is not JsonArray array)
                throw new ConfigException($"{where}: expected {ConfigSchema.Describe(p)} (a JSON array), got {Kind(node)} {Short(node)}", key, source);
            var items = array.Select((item, i) => ScalarFromJson(elementType, item, key, $"{where}[{i}]", source)).ToList();
            return MakeList(p.ValueType, elementType, items);
        }
        return ScalarFromJson(p.ValueType, node, key, where, source);
    }

    static object? ScalarFromJson(Type type, JsonNode? node, string key, string where, string source)
    {
        var kind = ConfigSchema.Classify(type);
        string Expected() => kind == ValueKind.Enum ? "one of: " + string.Join(", ", ConfigSchema.EnumNames(type)) : kind switch
        {
            ValueKind.Integer => $"an integer ({type.Name})",
            ValueKind.Real => "a number",
            ValueKind.Boolean => "true or false",
            _ => "a string",
        };
        ConfigException Wrong() => new($"{where}: expected {Expected()}, got {Kind(node)} {Short(node)}", key, source);

        if (node is not JsonValue value) throw Wrong();
        var element = value.GetValue<JsonElement>();
        switch (kind)
        {
            case ValueKind.Integer:
                if (element.ValueKind != JsonValueKind.Number) throw Wrong();
                return ConvertInteger(type, element.GetRawText()) ?? throw Wrong();
            case ValueKind.Real:
                if (element.ValueKind == JsonValueKind.Number) return ConvertReal(type, element.GetRawText()) ?? throw Wrong();
                if (element.ValueKind == JsonValueKind.String && SpecialReal(element.GetString()!) is double special)
                    return ConvertReal(type, special.ToString("R", CultureInfo.InvariantCulture));
                throw Wrong();
            case ValueKind.Boolean:
                if (element.ValueKind is JsonValueKind.True or JsonValueKind.False) return element.GetBoolean();
                throw Wrong();
            case ValueKind.Enum:
                if (element.ValueKind == JsonValueKind.String && ParseEnum(type, element.GetString()!) is object e) return e;
                throw Wrong();
            default:
                if (element.ValueKind == JsonValueKind.String) return element.GetString();
                throw Wrong();
        }
    }

    // ------------------------------------------------------------------ --set key=value

    static object ApplySet(object target, string set)
    {
        int eq = set.IndexOf('=');
        if (eq <= 0)
            throw new ConfigException($"--set expects key=value, got '{set}'; valid keys: {string.Join(", ", ConfigSchema.LeafKeys(target.GetType()))}");
        string key = set[..eq].Trim();
        string raw = set[(eq + 1)..];
        SetPath(target, key.Split('.'), 0, raw, "");
        return target;
    }

    static void SetPath(object target, string[] segments, int index, string raw, string prefix)
    {
        var type = target.GetType();
        string fullKey = string.Join('.', segments);
        var p = ConfigSchema.Find(type, segments[index])
            ?? throw Unknown(type, fullKey, prefix, $"in --set {fullKey}={raw}", null);
        string key = prefix + p.Key;
        bool last = index == segments.Length - 1;
        if (!last)
        {
            if (p.Kind != ValueKind.Section)
                throw new ConfigException($"--set {fullKey}={raw}: '{key}' is not a section (it is {ConfigSchema.Describe(p)}), so it has no key '{segments[index + 1]}'", key);
            object child = CurrentOrDefault(p, target, key);
            SetPath(child, segments, index + 1, raw, key + ".");
            p.Info.SetValue(target, child);
            return;
        }
        p.Info.SetValue(target, FromText(p, target, raw, key));
    }

    static object? FromText(ConfigProperty p, object owner, string raw, string key)
    {
        string where = $"--set {key}={raw}";
        string text = raw.Trim();
        if (p.AllowsNull && p.Kind != ValueKind.Text && text == "null") return null;
        switch (p.Kind)
        {
            case ValueKind.Section:
                if (!text.StartsWith('{'))
                    throw new ConfigException($"{where}: '{key}' is a section; set one of its keys ({string.Join(", ", ConfigSchema.LeafKeys(p.ValueType, key + "."))}) or give a JSON object", key);
                JsonNode? node;
                try { node = JsonNode.Parse(text, documentOptions: jsonOptions); }
                catch (JsonException e) { throw new ConfigException($"{where}: not a valid JSON object: {e.Message}", key, inner: e); }
                return FromJson(p, owner, node, key, "$", where, "--set");
            case ValueKind.List:
                var elementType = ConfigSchema.ElementType(p.ValueType)!;
                if (text.StartsWith('['))
                {
                    JsonNode? list;
                    try { list = JsonNode.Parse(text, documentOptions: jsonOptions); }
                    catch (JsonException e) { throw new ConfigException($"{where}: not a valid JSON array: {e.Message}", key, inner: e); }
                    return FromJson(p, owner, list, key, "$", where, "--set");
                }
                var parts = text.Length == 0 ? [] : text.Split(',');
                var items = parts.Select(object? (part) => ScalarFromText(elementType, part.Trim(), key, where, $"{ConfigSchema.Describe(p)}, comma-separated or a JSON array")).ToList();
                return MakeList(p.ValueType, elementType, items);
            case ValueKind.Text:
                return raw;
            default:
                return ScalarFromText(p.ValueType, text, key, where, ConfigSchema.Describe(p));
        }
    }

    static object ScalarFromText(Type type, string text, string key, string where, string expected)
    {
        object? value = ConfigSchema.Classify(type) switch
        {
            ValueKind.Integer => ConvertInteger(type, text),
            ValueKind.Real => SpecialReal(text) is double special ? ConvertReal(type, special.ToString("R", CultureInfo.InvariantCulture)) : ConvertReal(type, text),
            ValueKind.Boolean => text.ToLowerInvariant() switch
            {
                "true" or "yes" or "on" or "1" => true,
                "false" or "no" or "off" or "0" => false,
                _ => null,
            },
            ValueKind.Enum => ParseEnum(type, text),
            _ => text,
        };
        return value ?? throw new ConfigException($"{where}: expected {expected}, got '{text}'", key);
    }

    // ------------------------------------------------------------------ conversions

    static object? ConvertInteger(Type type, string text)
    {
        if (!long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long v))
        {
            // "1e6" or "1000.0" for a step count is fine as long as it is a whole number in range.
            if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double d)
                || d != Math.Floor(d) || Math.Abs(d) > 9e15) return null;
            v = (long)d;
        }
        try
        {
            return Convert.ChangeType(v, type, CultureInfo.InvariantCulture);
        }
        catch (OverflowException) { return null; }
    }

    static object? ConvertReal(Type type, string text)
    {
        if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double d)) return null;
        if (type == typeof(float)) return (float)d;
        if (type == typeof(decimal)) return double.IsFinite(d) ? (decimal)d : null;
        return d;
    }

    static double? SpecialReal(string text) => text.Trim().ToLowerInvariant() switch
    {
        "inf" or "+inf" or "infinity" or "+infinity" => double.PositiveInfinity,
        "-inf" or "-infinity" => double.NegativeInfinity,
        "nan" => double.NaN,
        _ => null,
    };

    static object? ParseEnum(Type type, string text)
    {
        string wanted = ConfigSchema.Normalize(text);
        foreach (var name in Enum.GetNames(type))
            if (ConfigSchema.Normalize(name) == wanted) return Enum.Parse(type, name);
        return null;
    }

    static object MakeList(Type listType, Type elementType, List<object?> items)
    {
        var array = Array.CreateInstance(elementType, items.Count);
        for (int i = 0; i < items.Count; i++) array.SetValue(items[i], i);
        if (listType.IsArray || listType.IsInterface && listType.IsAssignableFrom(array.GetType())) return array;
        var list = (IList)Activator.CreateInstance(typeof(List<>).MakeGenericType(elementType))!;
        foreach (var item in items) list.Add(item);
        return list;
    }

    static object CurrentOrDefault(ConfigProperty p, object owner, string key)
    {
        var current = p.Info.GetValue(owner);
        return current == null ? ConfigSchema.CreateDefault(p.ValueType, key) : ConfigSchema.Clone(current);
    }

    // ------------------------------------------------------------------ messages

    static ConfigException Unknown(Type sectionType, string key, string prefix, string where, string? file)
    {
        var valid = ConfigSchema.LeafKeys(sectionType, prefix).ToList();
        string hint = DidYouMean(key, valid);
        string section = prefix.Length == 0 ? "" : $" in section '{prefix.TrimEnd('.')}'";
        return new ConfigException($"unknown config key '{key}' {where}.{hint} Valid keys{section}: {string.Join(", ", valid)}", key, file);
    }

    static string Kind(JsonNode? node) => node switch
    {
        null => "null",
        JsonObject => "an object",
        JsonArray => "an array",
        JsonValue v => v.GetValue<JsonElement>().ValueKind switch
        {
            JsonValueKind.String => "a string",
            JsonValueKind.Number => "a number",
            JsonValueKind.True or JsonValueKind.False => "a boolean",
            _ => "a value",
        },
        _ => "a value",
    };

    static string Short(JsonNode? node)
    {
        string s = node?.ToJsonString() ?? "null";
        return s.Length <= 60 ? s : s[..57] + "...";
    }
}
