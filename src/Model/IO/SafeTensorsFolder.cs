using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace ArcherIlgpu.Model.IO;

/// <summary>
/// The weights of a Hugging Face model folder: one <c>model.safetensors</c>, or shards
/// <c>model-0000k-of-0000n.safetensors</c> listed by <c>model.safetensors.index.json</c>
/// (<c>{"metadata": {"total_size": bytes}, "weight_map": {tensor: shard file}}</c>), as transformers'
/// save_pretrained writes them. Reading prefers the single file when both forms are present, as
/// transformers does; writing removes the form it did not write.
/// </summary>
public static partial class SafeTensorsFolder
{
    public const string SingleFile = "model.safetensors";
    public const string IndexFile = "model.safetensors.index.json";

    /// <summary>transformers' default max_shard_size, "5GB".</summary>
    public const long DefaultMaxShardBytes = 5_000_000_000;

    // Every shard of one Write and its index carry the same id, so that a folder whose shards come from two
    // different saves (a crash while same-named shards were being replaced) fails to load instead of mixing weights.
    private const string SaveIdKey = "archer_save_id";
    private const string StagingSuffix = ".partial";

    [GeneratedRegex(@"^model-\d{5}-of-\d{5}\.safetensors$")]
    private static partial Regex ShardNamePattern();

    /// <summary>Whether the folder holds weights in either form.</summary>
    public static bool Exists(string dir) =>
        File.Exists(Path.Combine(dir, SingleFile)) || File.Exists(Path.Combine(dir, IndexFile));

    public static IReadOnlyDictionary<string, NamedTensor> Read(string dir) => Read(dir, out _);

    /// <summary>
    /// Every tensor of the folder by name, as float32 (see <see cref="SafeTensors.Read(string, out IReadOnlyDictionary{string, string})"/>
    /// for the dtype conversions). <paramref name="metadata"/> is the single file's metadata, or the union of the
    /// shards' (the first shard in index order wins a key they disagree on). A sharded folder must be consistent
    /// (see <see cref="ReadIndex"/>), which is checked before any tensor data is read.
    /// </summary>
    public static IReadOnlyDictionary<string, NamedTensor> Read(string dir, out IReadOnlyDictionary<string, string> metadata)
    {
        var files = ReadHeaders(dir);
        var result = new Dictionary<string, NamedTensor>(StringComparer.Ordinal);
        foreach (var file in files)
            foreach (var (name, tensor) in SafeTensors.Read(file.Path))
                result.Add(name, tensor);
        metadata = MergeMetadata(files.Select(f => f.Metadata));
        return result;
    }

    /// <summary>
    /// Every tensor's header entry (name, dtype, shape, offsets), of the single file or of every shard, without
    /// reading any tensor data. A sharded folder must be consistent: every shard the index names exists, every tensor
    /// sits in the shard the index names and in no other, no shard holds a tensor the index does not list, and
    /// every shard comes from the same save as the index.
    /// </summary>
    public static IReadOnlyList<TensorInfo> ReadIndex(string dir) => ReadHeaders(dir).SelectMany(f => f.Index).ToList();

    /// <summary>A weights file of the folder with its checked header.</summary>
    private sealed record HeaderOf(string Path, IReadOnlyList<TensorInfo> Index, IReadOnlyDictionary<string, string> Metadata);

    private static List<HeaderOf> ReadHeaders(string dir)
    {
        ArgumentException.ThrowIfNullOrEmpty(dir);
        var single = Path.Combine(dir, SingleFile);
        if (File.Exists(single)) return [new HeaderOf(single, SafeTensors.ReadIndex(single, out var singleMetadata), singleMetadata)];
        var indexPath = Path.Combine(dir, IndexFile);
        if (!File.Exists(indexPath))
            throw new ModelFormatException($"Model folder '{dir}': no weights: neither {SingleFile} nor {IndexFile} is there.");
        var index = ShardIndex.Parse(indexPath);

        var shards = new List<HeaderOf>();
        var foundIn = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (string file in index.Files)
        {
            var path = Path.Combine(dir, file);
            if (!File.Exists(path))
            {
                var needed = index.WeightMap.Where(e => e.Value == file).Select(e => e.Key).ToList();
                throw BadIndex(indexPath, $"shard '{file}' is missing; it should hold {needed.Count} tensor(s), e.g. '{needed[0]}'");
            }
            var header = new HeaderOf(path, SafeTensors.ReadIndex(path, out var shardMetadata), shardMetadata);
            shards.Add(header);
            foreach (var tensor in header.Index)
            {
                if (foundIn.TryGetValue(tensor.Name, out var other))
                    throw BadIndex(indexPath, $"tensor '{tensor.Name}' appears in two shards, '{other}' and '{file}'");
                foundIn.Add(tensor.Name, file);
            }
        }
        foreach (var (name, file) in index.WeightMap)
            if (!foundIn.TryGetValue(name, out var actual) || actual != file)
                throw BadIndex(indexPath, $"tensor '{name}' is listed in shard '{file}' but that shard does not hold it"
                    + (actual is null ? "" : $" (it is in '{actual}')"));
        foreach (var (name, file) in foundIn)
            if (!index.WeightMap.ContainsKey(name))
                throw BadIndex(indexPath, $"shard '{file}' holds tensor '{name}', which the index does not list");

        CheckSameSave(indexPath, index, shards.Select(s => (Path.GetFileName(s.Path), s.Metadata)));
        return shards;
    }

    /// <summary>
    /// Writes float32 tensors as one <c>model.safetensors</c> when their data fits in <paramref name="maxShardBytes"/>,
    /// otherwise as shards of at most that many data bytes (a tensor larger than the limit gets a shard of its
    /// own), filled in the given order, plus the index; then removes the files of the other form and stale shards.
    /// Every shard carries <paramref name="metadata"/>. Returns the file names written.
    /// Crash safety: every file is written to a temporary name and renamed. Switching form, or to a different
    /// shard count, changes the folder in one rename (the single file, or the index). Rewriting the same shard
    /// names is the one case that takes several renames; a crash inside them leaves a folder that <see cref="Read(string)"/>
    /// rejects as an interrupted save rather than one that mixes two saves' weights.
    /// </summary>
    public static IReadOnlyList<string> Write(string dir, IEnumerable<NamedTensor> tensors,
        IReadOnlyDictionary<string, string>? metadata = null, long maxShardBytes = DefaultMaxShardBytes)
    {
        ArgumentException.ThrowIfNullOrEmpty(dir);
        ArgumentNullException.ThrowIfNull(tensors);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxShardBytes, 1);
        var list = tensors.ToList();
        SafeTensors.ValidateForWriting(list, metadata);
        if (metadata is not null && metadata.ContainsKey(SaveIdKey))
            throw new ArgumentException($"metadata key '{SaveIdKey}' is reserved for sharded saves");
        Directory.CreateDirectory(dir);
        RemoveStagingLeftovers(dir);

        var groups = SplitIntoShards(list, maxShardBytes);
        if (groups.Count == 1)
        {
            SafeTensors.Write(Path.Combine(dir, SingleFile), list, metadata);
            // The single file is what a reader takes first, so from here on the folder already reads as the new save.
            TryDelete(Path.Combine(dir, IndexFile));
            RemoveShards(dir, keep: []);
            return [SingleFile];
        }
        return WriteShards(dir, groups, metadata);
    }

    private static List<string> WriteShards(string dir, List<List<NamedTensor>> groups, IReadOnlyDictionary<string, string>? metadata)
    {
        int n = groups.Count;
        if (n > 99_999) throw new ArgumentException($"{n} shards do not fit the model-0000k-of-0000n naming; raise maxShardBytes");
        var names = Enumerable.Range(1, n).Select(k => string.Create(CultureInfo.InvariantCulture, $"model-{k:D5}-of-{n:D5}.safetensors")).ToList();
        string saveId = Guid.NewGuid().ToString("N");
        var shardMetadata = new Dictionary<string, string>(StringComparer.Ordinal);
        if (metadata is not null) foreach (var (k, v) in metadata) shardMetadata[k] = v;
        shardMetadata[SaveIdKey] = saveId;

        // All the data first, under staging names: the folder still reads as the previous save meanwhile.
        for (int i = 0; i < n; i++)
            SafeTensors.Write(Path.Combine(dir, names[i] + StagingSuffix), groups[i], shardMetadata);
        for (int i = 0; i < n; i++)
            File.Move(Path.Combine(dir, names[i] + StagingSuffix), Path.Combine(dir, names[i]), overwrite: true);

        var weightMap = new SortedDictionary<string, string>(StringComparer.Ordinal);
        long totalBytes = 0;
        for (int i = 0; i < n; i++)
            foreach (var t in groups[i])
            {
                weightMap.Add(t.Name, names[i]);
                totalBytes += DataBytes(t);
            }
        AtomicFile.WriteAllText(Path.Combine(dir, IndexFile), ShardIndex.ToJson(totalBytes, saveId, weightMap));

        TryDelete(Path.Combine(dir, SingleFile));
        RemoveShards(dir, keep: names);
        return [.. names, IndexFile];
    }

    /// <summary>Greedy, in order: a shard closes when the next tensor would take it past the limit.</summary>
    private static List<List<NamedTensor>> SplitIntoShards(List<NamedTensor> tensors, long maxShardBytes)
    {
        var groups = new List<List<NamedTensor>> { new() };
        long bytes = 0;
        foreach (var t in tensors)
        {
            long size = DataBytes(t);
            if (groups[^1].Count > 0 && bytes + size > maxShardBytes)
            {
                groups.Add([]);
                bytes = 0;
            }
            groups[^1].Add(t);
            bytes += size;
        }
        return groups;
    }

    private static long DataBytes(NamedTensor t) => 4L * t.Data.LongLength;

    private static void RemoveShards(string dir, IReadOnlyCollection<string> keep)
    {
        foreach (var path in Directory.EnumerateFiles(dir, "model-*-of-*.safetensors"))
        {
            string name = Path.GetFileName(path);
            if (ShardNamePattern().IsMatch(name) && !keep.Contains(name)) TryDelete(path);
        }
    }

    private static void RemoveStagingLeftovers(string dir)
    {
        foreach (var path in Directory.EnumerateFiles(dir, "model-*-of-*.safetensors" + StagingSuffix + "*"))
            TryDelete(path);
    }

    private static void TryDelete(string path)
    {
        try { File.Delete(path); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    private static void CheckSameSave(string indexPath, ShardIndex index, IEnumerable<(string File, IReadOnlyDictionary<string, string> Metadata)> shards)
    {
        if (index.SaveId is null) return;   // written by another tool: nothing to compare
        foreach (var (file, meta) in shards)
            if (!meta.TryGetValue(SaveIdKey, out var id) || id != index.SaveId)
                throw BadIndex(indexPath, $"shard '{file}' was written by a different save than the index (an interrupted save?); "
                    + "save the model again or restore the folder from a copy");
    }

    private static Dictionary<string, string> MergeMetadata(IEnumerable<IReadOnlyDictionary<string, string>> all)
    {
        var merged = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var meta in all)
            foreach (var (k, v) in meta)
                if (k != SaveIdKey) merged.TryAdd(k, v);
        return merged;
    }

    private static ModelFormatException BadIndex(string indexPath, string what, Exception? inner = null) =>
        new($"Sharded weights '{indexPath}': {what}.", inner);

    /// <summary>The parsed <c>model.safetensors.index.json</c>.</summary>
    private sealed record ShardIndex(IReadOnlyDictionary<string, string> WeightMap, IReadOnlyList<string> Files, string? SaveId)
    {
        public static ShardIndex Parse(string path)
        {
            JsonDocument doc;
            var bytes = File.ReadAllBytes(path);
            // JsonDocument checks UTF-8 only when a string is read, which would throw InvalidOperationException later.
            if (!System.Text.Unicode.Utf8.IsValid(bytes)) throw BadIndex(path, "not valid JSON: it is not valid UTF-8 text");
            try { doc = JsonDocument.Parse(bytes); }
            catch (JsonException e) { throw BadIndex(path, $"not valid JSON ({ConfigJson.Describe(e)})", e); }
            using (doc)
            {
                if (doc.RootElement.ValueKind != JsonValueKind.Object)
                    throw BadIndex(path, "expected a JSON object with \"weight_map\"");
                if (!doc.RootElement.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
                    throw BadIndex(path, "missing object field \"weight_map\" (tensor name -> shard file)");

                var weightMap = new Dictionary<string, string>(StringComparer.Ordinal);
                var files = new List<string>();
                foreach (var entry in map.EnumerateObject())
                {
                    if (entry.Value.ValueKind != JsonValueKind.String)
                        throw BadIndex(path, $"weight_map entry '{entry.Name}' must be a shard file name, found {entry.Value.ValueKind}");
                    string file = entry.Value.GetString()!;
                    // A shard is a file beside the index; anything else could read outside the model folder.
                    if (file.Length == 0 || file != Path.GetFileName(file) || file is "." or "..")
                        throw BadIndex(path, $"weight_map entry '{entry.Name}' names '{file}', which is not a file name in the model folder");
                    if (!weightMap.TryAdd(entry.Name, file))
                        throw BadIndex(path, $"weight_map lists tensor '{entry.Name}' twice");
                    if (!files.Contains(file)) files.Add(file);
                }

                string? saveId = null;
                if (doc.RootElement.TryGetProperty("metadata", out var meta) && meta.ValueKind == JsonValueKind.Object
                    && meta.TryGetProperty(SaveIdKey, out var id) && id.ValueKind == JsonValueKind.String)
                    saveId = id.GetString();
                return new ShardIndex(weightMap, files, saveId);
            }
        }

        public static string ToJson(long totalBytes, string saveId, SortedDictionary<string, string> weightMap)
        {
            var map = new JsonObject();
            foreach (var (name, file) in weightMap) map[name] = file;
            var root = new JsonObject
            {
                ["metadata"] = new JsonObject { ["total_size"] = totalBytes, [SaveIdKey] = saveId },
                ["weight_map"] = map,
            };
            return root.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
        }
    }
}
