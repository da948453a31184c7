using System.Collections.Concurrent;
using System.Reflection;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace ArcherIlgpu.Runs;

/// <summary>Thrown for a bad config: unknown key, wrong type, unreadable file or a failed <c>Validate()</c>.</summary>
public sealed class ConfigException : ArgumentException
{
    /// <summary>The dotted key at fault, when there is one.</summary>
    public string? Key { get; }
    /// <summary>The config file at fault, when the problem came from a file.</summary>
    public string? File { get; }

    public ConfigException(string message, string? key = null, string? file = null, Exception? inner = null)
        : base(message, inner)
    {
        Key = key;
        File = file;
    }
}

/// <summary>How a property's type is bound.</summary>
internal enum ValueKind { Integer, Real, Boolean, Text, Enum, List, Section }

/// <summary>One bindable property: its snake_case key, type and kind.</summary>
internal sealed record ConfigProperty(string Key, PropertyInfo Info, ValueKind Kind, Type ValueType, bool AllowsNull)
{
    public Type Type => Info.PropertyType;
}

/// <summary>
/// The bindable shape of a config type, found by reflection: public instance properties with a public
/// getter and a public setter or init accessor, named in snake_case (or by [JsonPropertyName]),
/// skipping [JsonIgnore]. Cached per type.
/// </summary>
internal static class ConfigSchema
{
    static readonly ConcurrentDictionary<Type, IReadOnlyList<ConfigProperty>> cache = new();
    static readonly NullabilityInfoContext nullability = new();

    public static IReadOnlyList<ConfigProperty> PropertiesOf(Type type) => cache.GetOrAdd(type, Discover);

    public static string KeyOf(string propertyName) => JsonNamingPolicy.SnakeCaseLower.ConvertName(propertyName);

    /// <summary>Keys compare without case, '-' or '_', so "clip-low", "ClipLow" and "clip_low" are one key.</summary>
    public static string Normalize(string key) => key.Replace("_", "").Replace("-", "").ToLowerInvariant();

    public static ConfigProperty? Find(Type type, string key)
    {
        var properties = PropertiesOf(type);
        foreach (var p in properties) if (p.Key == key) return p;
        string normal = Normalize(key);
        ConfigProperty? match = null;
        foreach (var p in properties)
        {
            if (Normalize(p.Key) != normal) continue;
            if (match != null) return null; // ambiguous: insist on the exact key
            match = p;
        }
        return match;
    }

    /// <summary>Every leaf key under <paramref name="type"/>, dotted, in declaration order.</summary>
    public static IEnumerable<string> LeafKeys(Type type, string prefix = "", int depth = 0)
    {
        foreach (var p in PropertiesOf(type))
        {
            if (p.Kind == ValueKind.Section && depth < 8)
                foreach (var k in LeafKeys(p.ValueType, prefix + p.Key + ".", depth + 1)) yield return k;
            else
                yield return prefix + p.Key;
        }
    }

    public static string Describe(ConfigProperty p) => p.Kind switch
    {
        ValueKind.Integer => $"an integer ({p.ValueType.Name})",
        ValueKind.Real => "a number",
        ValueKind.Boolean => "true or false",
        ValueKind.Text => "a string",
        ValueKind.Enum => "one of: " + string.Join(", ", EnumNames(p.ValueType)),
        ValueKind.List => $"a list of {ElementDescription(ElementType(p.ValueType)!)}",
        _ => "a section (a JSON object)",
    };

    static string ElementDescription(Type t) =>
        Classify(t) switch
        {
            ValueKind.Integer => "integers",
            ValueKind.Real => "numbers",
            ValueKind.Boolean => "booleans",
            ValueKind.Enum => "names (" + string.Join(", ", EnumNames(t)) + ")",
            _ => "strings",
        };

    public static IEnumerable<string> EnumNames(Type enumType) => Enum.GetNames(enumType).Select(KeyOf);

    static IReadOnlyList<ConfigProperty> Discover(Type type)
    {
        var list = new List<ConfigProperty>();
        foreach (var info in type.GetProperties(BindingFlags.Public | BindingFlags.Instance))
        {
            if (info.GetMethod is not { IsPublic: true } || info.SetMethod is not { IsPublic: true }) continue;
            if (info.GetIndexParameters().Length > 0) continue;
            if (info.GetCustomAttribute<JsonIgnoreAttribute>() != null) continue;
            string key = info.GetCustomAttribute<JsonPropertyNameAttribute>()?.Name ?? KeyOf(info.Name);
            var valueType = Nullable.GetUnderlyingType(info.PropertyType) ?? info.PropertyType;
            bool allowsNull = !info.PropertyType.IsValueType
                ? nullability.Create(info).WriteState != NullabilityState.NotNull
                : Nullable.GetUnderlyingType(info.PropertyType) != null;
            var kind = Classify(valueType);
            if (kind == ValueKind.List && Classify(ElementType(valueType)!) is ValueKind.List or ValueKind.Section)
                throw new NotSupportedException($"config property {type.Name}.{info.Name}: only lists of scalars are supported");
            list.Add(new ConfigProperty(key, info, kind, valueType, allowsNull));
        }
        return list;
    }

    public static ValueKind Classify(Type t)
    {
        t = Nullable.GetUnderlyingType(t) ?? t;
        if (t.IsEnum) return ValueKind.Enum;
        if (t == typeof(int) || t == typeof(long) || t == typeof(short) || t == typeof(byte) || t == typeof(uint) || t == typeof(ulong))
            return ValueKind.Integer;
        if (t == typeof(double) || t == typeof(float) || t == typeof(decimal)) return ValueKind.Real;
        if (t == typeof(bool)) return ValueKind.Boolean;
        if (t == typeof(string)) return ValueKind.Text;
        if (ElementType(t) != null) return ValueKind.List;
        return ValueKind.Section;
    }

    /// <summary>The element type of T[], List&lt;T&gt;, IReadOnlyList&lt;T&gt;, IList&lt;T&gt; or IEnumerable&lt;T&gt;; null otherwise.</summary>
    public static Type? ElementType(Type t)
    {
        if (t == typeof(string)) return null;
        if (t.IsArray) return t.GetElementType();
        if (!t.IsGenericType) return null;
        var def = t.GetGenericTypeDefinition();
        if (def == typeof(List<>) || def == typeof(IReadOnlyList<>) || def == typeof(IList<>)
            || def == typeof(IEnumerable<>) || def == typeof(IReadOnlyCollection<>) || def == typeof(ICollection<>))
            return t.GetGenericArguments()[0];
        return null;
    }

    /// <summary>A shallow copy to modify without touching the original (records: their Clone, else MemberwiseClone).</summary>
    public static object Clone(object value)
    {
        var type = value.GetType();
        if (type.IsValueType) return value; // already a fresh box
        var recordClone = type.GetMethod("<Clone>$", BindingFlags.Public | BindingFlags.Instance, Type.EmptyTypes);
        if (recordClone != null) return recordClone.Invoke(value, null)!;
        var memberwise = typeof(object).GetMethod("MemberwiseClone", BindingFlags.NonPublic | BindingFlags.Instance)!;
        return memberwise.Invoke(value, null)!;
    }

    /// <summary>A default instance of a section type: parameterless constructor, or one whose parameters all have defaults.</summary>
    public static object CreateDefault(Type type, string key)
    {
        if (type.IsValueType) return Activator.CreateInstance(type)!;
        var parameterless = type.GetConstructor(Type.EmptyTypes);
        if (parameterless != null) return parameterless.Invoke(null);
        foreach (var ctor in type.GetConstructors())
        {
            var parameters = ctor.GetParameters();
            if (parameters.Length == 0 || !parameters.All(p => p.HasDefaultValue)) continue;
            var args = parameters.Select(p => p.ParameterType.IsEnum && p.DefaultValue != null
                ? Enum.ToObject(p.ParameterType, p.DefaultValue) : p.DefaultValue).ToArray();
            return ctor.Invoke(args);
        }
        throw new ConfigException($"config section '{key}' has no default value and {type.Name} has no constructor without required arguments; give the whole section as a JSON object", key);
    }

    /// <summary>Levenshtein distance, for "did you mean".</summary>
    public static int Distance(string a, string b)
    {
        var previous = new int[b.Length + 1];
        var current = new int[b.Length + 1];
        for (int j = 0; j <= b.Length; j++) previous[j] = j;
        for (int i = 1; i <= a.Length; i++)
        {
            current[0] = i;
            for (int j = 1; j <= b.Length; j++)
                current[j] = Math.Min(Math.Min(current[j - 1] + 1, previous[j] + 1), previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
            (previous, current) = (current, previous);
        }
        return previous[b.Length];
    }

    /// <summary>The candidates closest to <paramref name="wanted"/>, best first, only those plausibly meant.</summary>
    public static IReadOnlyList<string> Closest(string wanted, IEnumerable<string> candidates, int max = 3)
    {
        string w = Normalize(wanted);
        return candidates
            .Select(c => (c, d: Distance(w, Normalize(c)), contains: Normalize(c).Contains(w) || w.Contains(Normalize(c))))
            .Where(x => x.contains || x.d <= Math.Max(2, w.Length / 3))
            .OrderBy(x => x.contains ? Math.Min(x.d, 1) : x.d)
            .Take(max).Select(x => x.c).ToList();
    }
}
