using System.Collections;

namespace ArcherIlgpu.Runs;

/// <summary>
/// Named config presets (name → value, names compared without case). An unknown name fails with the list
/// of valid ones. Collection-initialiser friendly:
/// <code>new PresetRegistry&lt;RunConfig&gt;("run preset") { { "tiny", tinyConfig, "seconds on CPU" } }</code>
/// </summary>
public sealed class PresetRegistry<T> : IEnumerable<PresetRegistry<T>.Preset> where T : notnull
{
    public sealed record Preset(string Name, T Value, string Description);

    readonly List<Preset> presets = [];
    readonly string what;

    /// <param name="what">What the presets are, for messages ("preset", "model size").</param>
    public PresetRegistry(string what = "preset") => this.what = what;

    public IReadOnlyList<string> Names => presets.Select(p => p.Name).ToList();

    public void Add(string name, T value, string description = "")
    {
        if (string.IsNullOrWhiteSpace(name)) throw new ArgumentException($"{what} name must not be empty", nameof(name));
        if (Find(name) != null) throw new ArgumentException($"{what} '{name}' is already registered", nameof(name));
        presets.Add(new Preset(name, value, description));
    }

    public bool TryGet(string name, out T value)
    {
        var preset = Find(name);
        value = preset == null ? default! : preset.Value;
        return preset != null;
    }

    /// <summary>The preset called <paramref name="name"/>; <see cref="ConfigException"/> listing the valid names otherwise.</summary>
    public T Get(string name)
    {
        if (TryGet(name, out var value)) return value;
        var closest = ConfigSchema.Closest(name, Names, 1);
        string hint = closest.Count > 0 ? $" Did you mean '{closest[0]}'?" : "";
        throw new ConfigException($"unknown {what} '{name}'.{hint} Valid: {string.Join(", ", Names)}", name);
    }

    public T this[string name] => Get(name);

    /// <summary>Preset, then JSON file, then --set overrides, then Validate().</summary>
    public T Bind(string name, string? jsonFile = null, IEnumerable<string>? sets = null) =>
        ConfigBinder.Bind(Get(name), jsonFile, sets);

    /// <summary>One line per preset, "name  description", for --help.</summary>
    public string Describe()
    {
        int width = presets.Count == 0 ? 0 : presets.Max(p => p.Name.Length);
        return string.Join("\n", presets.Select(p => $"{p.Name.PadRight(width)}  {p.Description}".TrimEnd()));
    }

    Preset? Find(string name) => presets.FirstOrDefault(p => string.Equals(p.Name, name, StringComparison.OrdinalIgnoreCase));

    public IEnumerator<Preset> GetEnumerator() => presets.GetEnumerator();
    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();
}
