using ArcherIlgpu.Kernels;
using ArcherIlgpu.Model.IO;
using ArcherIlgpu.Model.Tests.Gpt2;
using Xunit;
using Xunit.Abstractions;

namespace ArcherIlgpu.Model.Tests.IO;

/// <summary>
/// Whole model folders with one file randomly truncated or bit-flipped (fixed seeds, a few hundred cases): every
/// case either loads the golden weights unchanged, or fails with a one-line <see cref="ModelFormatException"/>
/// naming the folder's file. Nothing else escapes and nothing hangs. safetensors has no checksum, so a flip inside
/// a tensor's data can only be caught when it makes a value non-finite; otherwise it must change that one value
/// and nothing else. <see cref="SafeTensorsCorruptionTests"/> fuzzes the safetensors reader alone.
/// </summary>
public class ModelFolderFuzzTests(ITestOutputHelper output)
{
    const int Cases = 120;

    static Backend Cpu => ModelBackends.Get("cpu");

    enum Mutation { Truncated, HeaderFlips, DataFlips }

    [Theory]
    [InlineData("gpt2", "model.safetensors", 1)]
    [InlineData("gpt2", "config.json", 2)]
    [InlineData("llama", "model-00002-of-00002.safetensors", 3)]   // a BF16 shard
    [InlineData("llama", "model.safetensors.index.json", 4)]
    [InlineData("llama", "config.json", 5)]
    public async Task MutatedFileLoadsTheSameWeightsOrFailsWithOneLine(string type, string file, int seed)
    {
        using var tmp = new TempDir();
        var dir = ModelFolderFiles.CopyGolden(type, tmp);
        float[] golden = Load(dir);
        string path = Path.Combine(dir, file);
        byte[] pristine = File.ReadAllBytes(path);
        bool safetensors = file.EndsWith(".safetensors", StringComparison.Ordinal);
        int dataStart = safetensors ? ModelFolderFiles.DataStart(pristine) : pristine.Length;

        var counts = new Dictionary<string, int>();
        void Count(string outcome) => counts[outcome] = counts.GetValueOrDefault(outcome) + 1;
        var rng = new Random(seed);
        var run = Task.Run(() =>
        {
            for (int i = 0; i < Cases; i++)
            {
                var kind = (Mutation)(i % (safetensors ? 3 : 2));
                var (bytes, flips) = Mutate(pristine, kind, dataStart, rng);
                File.WriteAllBytes(path, bytes);
                string what = $"case {i} ({kind}, {flips} flips)";
                try
                {
                    float[] loaded = Load(dir);
                    int changed = Enumerable.Range(0, golden.Length).Count(k => BitConverter.SingleToInt32Bits(golden[k]) != BitConverter.SingleToInt32Bits(loaded[k]));
                    // A flip in a value changes that value alone (wherever the layout puts it); anything else must not move a weight.
                    Assert.True(changed == 0 || (kind == Mutation.DataFlips && changed <= flips), $"{what}: loaded with {changed} weights changed");
                    Count(changed == 0 ? "identical" : "one value per flip changed");
                }
                catch (ModelFormatException e)
                {
                    Assert.False(e.Message.Contains('\n'), $"{what}: the message has several lines: {e.Message}");
                    Assert.Contains(dir, e.Message);
                    Count("refused");
                }
                catch (Exception e) when (e is not Xunit.Sdk.XunitException)
                {
                    Assert.Fail($"{what}: {e.GetType().Name} escaped instead of ModelFormatException: {e}");
                }
            }
        });
        // Well under a second per file on an idle machine; the bound turns a hang into a failure (a TimeoutException).
        await run.WaitAsync(TimeSpan.FromSeconds(60));
        string summary = string.Join(", ", counts.Select(kv => $"{kv.Value} {kv.Key}"));
        output.WriteLine($"{type} {file}: {summary}");
        // Mutations gentle enough to load every time would test nothing. (All refused is fine: nearly every byte of the
        // index is a tensor or shard name; the untouched folder loading, above, shows the setup is sound.)
        Assert.True(counts.GetValueOrDefault("refused") > Cases / 4, summary);
    }

    static float[] Load(string dir)
    {
        using var model = Checkpoint.Load(Cpu, dir);
        return model.DownloadParameters();
    }

    /// <summary>A truncation anywhere, or 1–3 bit flips before <paramref name="dataStart"/> (length field, header,
    /// or all of a JSON file) or from it on (a safetensors data section).</summary>
    static (byte[] Bytes, int Flips) Mutate(byte[] pristine, Mutation kind, int dataStart, Random rng)
    {
        if (kind == Mutation.Truncated) return (pristine[..rng.Next(pristine.Length)], 0);
        var bytes = (byte[])pristine.Clone();
        int flips = rng.Next(1, 4);
        for (int f = 0; f < flips; f++)
        {
            int at = kind == Mutation.HeaderFlips ? rng.Next(dataStart) : rng.Next(dataStart, bytes.Length);
            bytes[at] ^= (byte)(1 << rng.Next(8));
        }
        return (bytes, flips);
    }
}
