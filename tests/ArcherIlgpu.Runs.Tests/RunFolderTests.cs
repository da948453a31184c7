namespace ArcherIlgpu.Runs.Tests;

public class RunFolderTests : IDisposable
{
    readonly string root = Directory.CreateTempSubdirectory("runs-folder-").FullName;
    public void Dispose() => Directory.Delete(root, recursive: true);

    static readonly DateTime When = new(2026, 11, 22, 23, 15, 7);

    [Fact]
    public void CreateNamesByTimeAndNeverReusesAFolder()
    {
        var a = RunFolder.Create(root, "demo", When);
        var b = RunFolder.Create(root, "demo", When);
        var c = RunFolder.Create(root, "my run/../x", When);
        Assert.Equal("2026-11-22_2315_demo", a.Name);
        Assert.Equal("2026-11-22_2315_demo_2", b.Name);
        Assert.Equal("2026-11-22_2315_my-run-..-x", c.Name); // no path separators survive
        Assert.Equal(root, Path.GetDirectoryName(c.Path));
        Assert.True(File.Exists(a.MarkerPath));
        Assert.True(Directory.Exists(a.CheckpointsDir));
        Assert.True(Directory.Exists(a.PlotsDir));
        Assert.Empty(Directory.GetDirectories(root, "*.tmp")); // the temporary creation folders are gone
    }

    [Fact]
    public void OpenRejectsWhatIsNotARun()
    {
        var run = RunFolder.Create(root, "demo", When);
        Assert.Equal(run.Path, RunFolder.Open(run.Path).Path);
        var plain = Directory.CreateDirectory(Path.Combine(root, "plain")).FullName;
        var e = Assert.Throws<ArgumentException>(() => RunFolder.Open(plain));
        Assert.Contains("is not a run folder", e.Message);
        Assert.Contains(plain, e.Message);
        Assert.Throws<DirectoryNotFoundException>(() => RunFolder.Open(Path.Combine(root, "missing")));
        // a folder with only metrics.jsonl (e.g. from another tool) still opens for reports
        File.WriteAllText(Path.Combine(plain, "metrics.jsonl"), "{\"step\":1}\n");
        Assert.True(RunFolder.IsRunFolder(plain));
    }

    [Fact]
    public void ConfigIsWrittenAtomicallyAndReadBack()
    {
        var run = RunFolder.Create(root, "cfg", When);
        var config = new TestConfig { Steps = 77, Low = new ClipSettings(0.1, 0.3) };
        run.WriteConfig(config);
        run.WriteConfig(config with { Steps = 78 }); // replaced, no temp files left
        Assert.Equal(config with { Steps = 78 }, run.ReadConfig(new TestConfig()));
        Assert.Empty(Directory.GetFiles(run.Path, "*.tmp"));
    }

    [Fact]
    public void JsonStateFilesRoundTripAndCorruptionIsNamed()
    {
        var path = Path.Combine(root, "state.json");
        var state = new TrainerState(120, [1UL, ulong.MaxValue], 4567, "arithmetic");
        Json.WriteAtomic(path, state);
        Assert.Contains("\"data_cursor\": 4567", File.ReadAllText(path));
        var back = Json.Read<TrainerState>(path);
        Assert.Equal(state.Step, back.Step);
        Assert.Equal(state.RngState, back.RngState);
        File.WriteAllText(path, "{\"step\": 12, \"rng_st");
        var e = Assert.Throws<InvalidDataException>(() => Json.Read<TrainerState>(path));
        Assert.Contains(path, e.Message);
    }

    public sealed record TrainerState(long Step, ulong[] RngState, long DataCursor, string Task);
}

public class MetricsTests : IDisposable
{
    readonly string dir = Directory.CreateTempSubdirectory("runs-metrics-").FullName;
    public void Dispose() => Directory.Delete(dir, recursive: true);
    string PathOf(string name) => Path.Combine(dir, name);

    static Dictionary<string, double> Values(double loss, double reward) => new() { ["loss"] = loss, ["reward/mean"] = reward };

    [Fact]
    public void EachLineIsOnDiskAsSoonAsItIsWritten()
    {
        string path = PathOf("metrics.jsonl");
        using var writer = new MetricsWriter(path);
        writer.Write(1, Values(2.5, 0.1));
        // read while the writer is still open: nothing buffered in the process
        string text = File.ReadAllText(path);
        Assert.Equal("{\"step\":1,\"loss\":2.5,\"reward/mean\":0.1}\n", text);
    }

    [Fact]
    public void NonFiniteValuesRoundTrip()
    {
        string path = PathOf("metrics.jsonl");
        using (var writer = new MetricsWriter(path))
            writer.Write(3, new Dictionary<string, double> { ["a"] = double.NaN, ["b"] = double.PositiveInfinity, ["c"] = double.NegativeInfinity, ["d"] = 1e-300 });
        var row = Assert.Single(MetricsLog.Read(path).Rows);
        Assert.Equal(3, row.Step);
        Assert.True(double.IsNaN(row["a"]));
        Assert.Equal(double.PositiveInfinity, row["b"]);
        Assert.Equal(double.NegativeInfinity, row["c"]);
        Assert.Equal(1e-300, row["d"]);
    }

    [Fact]
    public void ReaderSkipsATruncatedLastLine()
    {
        string path = PathOf("metrics.jsonl");
        File.WriteAllText(path, "{\"step\":1,\"loss\":2}\n{\"step\":2,\"loss\":1.5,\"text\":\"ignored\"}\n{\"step\":3,\"lo");
        var log = MetricsLog.Read(path);
        Assert.Equal([1L, 2L], log.Rows.Select(r => r.Step));
        Assert.Equal([3], log.MalformedLines);
        Assert.Equal(["loss"], log.Keys); // the string field is not a metric
        Assert.Equal(1.5, log.Final("loss"));
    }

    [Fact]
    public void AppendingAfterACrashDoesNotGlueLinesTogether()
    {
        string path = PathOf("metrics.jsonl");
        File.WriteAllText(path, "{\"step\":1,\"loss\":2}\n{\"step\":2,\"lo");
        using (var writer = new MetricsWriter(path)) writer.Write(2, Values(1, 0.5));
        Assert.Equal("{\"step\":1,\"loss\":2}\n{\"step\":2,\"loss\":1,\"reward/mean\":0.5}\n", File.ReadAllText(path));
    }

    [Fact]
    public void ResumeDropsStepsAfterTheCheckpoint()
    {
        string path = PathOf("metrics.jsonl");
        using (var writer = new MetricsWriter(path))
            for (int s = 1; s <= 7; s++) writer.Write(s, Values(10 - s, s / 10.0));
        File.AppendAllText(path, "{\"step\":8,\"loss\":"); // the kill happened mid-line
        using (var resumed = new MetricsWriter(path, resumeStep: 5))
        {
            resumed.Write(6, Values(-1, -1));
        }
        var log = MetricsLog.Read(path);
        Assert.Equal([1L, 2, 3, 4, 5, 6], log.Rows.Select(r => r.Step));
        Assert.Equal(-1, log.Final("loss"));
        Assert.Empty(log.MalformedLines);
    }

    [Fact]
    public void SamplesAreSnakeCaseJsonLinesAndResumeToo()
    {
        string path = PathOf("samples.jsonl");
        using (var w = new JsonlWriter(path))
        {
            w.Append(new Sample(1, "2+2=", "4", 1, true, "4"));
            w.Append(new Sample(2, "3*3=", "6\nwrong", 0, false));
        }
        var lines = File.ReadAllLines(path);
        Assert.Equal(2, lines.Length); // the newline inside the completion is escaped
        Assert.Equal("{\"step\":1,\"prompt\":\"2+2=\",\"completion\":\"4\",\"reward\":1,\"correct\":true,\"expected\":\"4\"}", lines[0]);
        using (new JsonlWriter(path, resumeStep: 1)) { }
        Assert.Single(File.ReadAllLines(path));
    }

    [Fact]
    public void FinalBestAndMeanOfLastSkipNonFinite()
    {
        var rows = new List<MetricRow>
        {
            new(1, new Dictionary<string, double> { ["r"] = 0.2 }),
            new(2, new Dictionary<string, double> { ["r"] = 0.9 }),
            new(3, new Dictionary<string, double> { ["r"] = 0.5 }),
            new(4, new Dictionary<string, double> { ["r"] = double.NaN, ["other"] = 1 }),
        };
        var log = new MetricsLog(rows);
        Assert.Equal(0.5, log.Final("r"));
        Assert.Equal(0.9, log.Best("r", higherIsBetter: true));
        Assert.Equal(0.2, log.Best("r", higherIsBetter: false));
        Assert.Equal((0.9 + 0.5) / 2, log.MeanOfLast("r", 2));
        Assert.True(double.IsNaN(log.Final("missing")));
        Assert.Equal(4, log.Series("r").Steps.Length); // the NaN stays: it is a gap in the chart
    }
}

public class CheckpointStoreTests : IDisposable
{
    readonly string run = Directory.CreateTempSubdirectory("runs-ckpt-").FullName;
    public void Dispose() => Directory.Delete(run, recursive: true);

    static Action<string> WriteWeights(string content) => dir => File.WriteAllText(Path.Combine(dir, "model.safetensors"), content);

    [Fact]
    public void SaveListsLatestAndKeepsTheLastK()
    {
        var store = new CheckpointStore(run, keepLast: 2);
        Assert.Null(store.Latest());
        foreach (var step in new[] { 10, 20, 5, 30 }) store.Save(step, WriteWeights($"w{step}"));
        Assert.Equal([20L, 30L], store.List().Select(c => c.Step));
        var latest = store.Latest()!;
        Assert.Equal(30, latest.Step);
        Assert.Equal(Path.Combine(run, "checkpoints", "step-000030"), latest.Path);
        Assert.Equal("w30", File.ReadAllText(latest.File("model.safetensors")));
    }

    [Fact]
    public void KeepZeroKeepsAllAndSameStepIsReplaced()
    {
        var store = new CheckpointStore(run, keepLast: 0);
        for (int s = 1; s <= 5; s++) store.Save(s, WriteWeights($"w{s}"));
        store.Save(3, WriteWeights("again"));
        Assert.Equal(5, store.List().Count);
        Assert.Equal("again", File.ReadAllText(store.Find(3)!.File("model.safetensors")));
        Assert.Empty(Directory.GetDirectories(store.Directory, "*.tmp"));
    }

    [Fact]
    public void ALeftoverTmpFolderIsIgnoredAndCleaned()
    {
        var store = new CheckpointStore(run, keepLast: 3);
        store.Save(100, WriteWeights("good"));
        // a crash while writing step 200 left its temporary folder behind
        var crashed = Directory.CreateDirectory(Path.Combine(store.Directory, "step-000200.tmp")).FullName;
        File.WriteAllText(Path.Combine(crashed, "model.safetensors"), "half");
        Assert.Equal(100, store.Latest()!.Step);
        Assert.Single(store.List());
        store.Save(110, WriteWeights("next"));
        Assert.False(Directory.Exists(crashed));
        Assert.Equal([100L, 110L], store.List().Select(c => c.Step));
    }

    [Fact]
    public void AWriterThatThrowsLeavesNothingBehind()
    {
        var store = new CheckpointStore(run, keepLast: 3);
        store.Save(1, WriteWeights("one"));
        Assert.Throws<IOException>(() => store.Save(2, dir =>
        {
            File.WriteAllText(Path.Combine(dir, "partial.bin"), "x");
            throw new IOException("disk full");
        }));
        Assert.Equal([1L], store.List().Select(c => c.Step));
        Assert.Empty(Directory.GetDirectories(store.Directory, "*.tmp"));
    }
}
