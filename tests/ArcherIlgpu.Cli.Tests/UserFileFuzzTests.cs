using System.Diagnostics;
using System.Text;
using ArcherIlgpu.Cli.Demo;
using ArcherIlgpu.Rl.Tasks;
using ArcherIlgpu.Runs;

namespace ArcherIlgpu.Cli.Tests;

/// <summary>
/// The readers of user files, fed randomly truncated and bit-flipped copies of valid files (fixed seeds,
/// a few hundred cases each): every case either loads or fails with the reader's own error type, whose
/// message names the file; nothing else escapes, and nothing hangs (each reader's total time is bounded).
/// </summary>
public class UserFileFuzzTests
{
    const int Cases = 300;

    /// <summary>Half truncations at a random length, half 1–4 random bit flips.</summary>
    static IEnumerable<byte[]> Mutations(byte[] valid, int seed)
    {
        var rng = new Random(seed);
        for (int i = 0; i < Cases; i++)
        {
            if (i % 2 == 0)
            {
                yield return valid[..rng.Next(valid.Length)];
                continue;
            }
            var copy = (byte[])valid.Clone();
            for (int f = rng.Next(1, 5); f > 0; f--) copy[rng.Next(copy.Length)] ^= (byte)(1 << rng.Next(8));
            yield return copy;
        }
    }

    static void Fuzz(byte[] valid, int seed, string path, Action<string> read, Func<Exception, bool> isClearError)
    {
        var clock = Stopwatch.StartNew();
        int loaded = 0, rejected = 0;
        foreach (var bytes in Mutations(valid, seed))
        {
            File.WriteAllBytes(path, bytes);
            try
            {
                read(path);
                loaded++;
            }
            catch (Exception e) when (isClearError(e))
            {
                Assert.DoesNotContain("   at ", e.Message);
                rejected++;
            }
        }
        Assert.Equal(Cases, loaded + rejected);
        Assert.True(rejected > Cases / 4, $"only {rejected} of {Cases} mutations were rejected: the mutations are too gentle to test anything");
        // A few hundred small files read in well under a second; a reader that loops would blow this.
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(60), $"{Cases} cases took {clock.Elapsed}");
    }

    [Fact]
    public void RunConfigJsonLoadsOrFailsWithAConfigError()
    {
        using var dir = new TempDir();
        var valid = Encoding.UTF8.GetBytes(ConfigWriter.ToJson(RunPresets.Quick));
        Fuzz(valid, seed: 20261123, dir.File("config.json"),
            path => ConfigBinder.Bind(RunPresets.Demo, path),
            // out-of-range values come from Validate(), which names the key (the value may come from --set) instead of the file
            e => e is ConfigException c && (c.Message.Contains("config.json") || c.Message.StartsWith("invalid RunConfig", StringComparison.Ordinal)));
    }

    [Fact]
    public void JsonlDatasetLoadsOrFailsNamingFileAndLine()
    {
        using var dir = new TempDir();
        var lines = Enumerable.Range(0, 20).Select(i => $"{{\"prompt\": \"{i}+{i}=\", \"answer\": \"{2 * i}\", \"solution\": \"{2 * i}\"}}");
        var valid = Encoding.UTF8.GetBytes(string.Join("\n", lines) + "\n");
        Fuzz(valid, seed: 7, dir.File("data.jsonl"),
            path => new JsonlMathTask(path),
            e => e is TaskDataException && (e.Message.Contains("data.jsonl:") || e.Message.Contains("is empty")));
    }

    [Fact]
    public void SftJsonlLoadsOrFailsNamingFileAndLine()
    {
        using var dir = new TempDir();
        var lines = Enumerable.Range(0, 20).Select(i => $"{{\"prompt\": \"{i}+{i}=\", \"completion\": \"{2 * i}\"}}");
        var valid = Encoding.UTF8.GetBytes(string.Join("\n", lines) + "\n");
        Fuzz(valid, seed: 11, dir.File("sft.jsonl"),
            path => SftJsonl.Read(path),
            e => e is CliInputException && e.Message.Contains("sft.jsonl"));
    }
}
