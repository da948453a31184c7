using System.Text.Json;

namespace ArcherIlgpu.Cli.Tests;

/// <summary>
/// <c>archer loss</c> against golden numbers from independent implementations: Hugging Face transformers'
/// GPT2LMHeadModel in float64 (benchmarks/golden/make_tiny_gpt2.py), which saved the GPT-2 folder used here,
/// and a plain-Python float64 Llama/Qwen2 with its own autodiff (benchmarks/golden/make_tiny_llama.py; the
/// llama folder is BF16 in two shards).
/// </summary>
public class LossCommandTests
{
    /// <summary>cpu is the managed backend; ilgpu-cpu runs the GPU kernels on the ILGPU simulator.</summary>
    [Theory]
    [InlineData("gpt2", "cpu"), InlineData("gpt2", "ilgpu-cpu")]
    [InlineData("qwen2", "cpu"), InlineData("qwen2", "ilgpu-cpu"), InlineData("llama", "cpu")]
    public void GoldenLossAndGradientNormsMatchHuggingFace(string type, string device)
    {
        var folder = Archer.Golden(type);
        var r = Archer.Run("loss", "--model", folder, "--tokens", Path.Combine(folder, "tokens.txt"), "--grads", "--device", device);
        Assert.True(r.ExitCode == 0, r.ToString());
        var lines = r.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);
        using var ours = JsonDocument.Parse(lines[0]);
        using var golden = JsonDocument.Parse(File.ReadAllText(Path.Combine(folder, "golden.json")));
        var o = ours.RootElement; var g = golden.RootElement;

        Assert.Equal(g.GetProperty("tokens").GetInt32(), o.GetProperty("tokens").GetInt32());
        // float32 end to end against float64 (with float32 logits): measured 1.7e-7 relative on cpu;
        // 2e-6 leaves room for the kernels' other summation orders.
        AssertRelative(g.GetProperty("loss").GetDouble(), o.GetProperty("loss").GetDouble(), 2e-6, "loss");
        // Norms of float32 gradients against float64 ones: measured worst 3.8e-7 relative over GPT-2's 28
        // tensors (cpu) and 3.1e-7 (ilgpu-cpu), global norm 6e-8; 5e-6 leaves an order of magnitude for
        // other summation orders and is far below what a wrong term (a missing head contribution) would move.
        AssertRelative(g.GetProperty("grad_norm").GetDouble(), o.GetProperty("grad_norm").GetDouble(), 5e-6, "grad_norm");

        var goldenNorms = g.GetProperty("grad_norms").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetDouble());
        var ourNorms = o.GetProperty("grad_norms").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetDouble());
        Assert.Equal(goldenNorms.Keys.Order(), ourNorms.Keys.Order());
        foreach (var (name, expected) in goldenNorms) AssertRelative(expected, ourNorms[name], 5e-6, name);
    }

    static void AssertRelative(double expected, double actual, double rtol, string what) =>
        Assert.True(Math.Abs(actual - expected) <= rtol * Math.Abs(expected),
            $"{what}: {actual} vs golden {expected} (relative error {Math.Abs(actual - expected) / Math.Abs(expected):E2} > {rtol:E0})");

    [Fact]
    public void WithoutGradsPrintsOnlyLossAndTokens()
    {
        var r = Archer.Run("loss", "--model", Archer.GoldenDir, "--tokens", Path.Combine(Archer.GoldenDir, "tokens.txt"), "--device", "cpu");
        Assert.True(r.ExitCode == 0, r.ToString());
        using var doc = JsonDocument.Parse(r.Out.Trim());
        Assert.Equal(["loss", "tokens"], doc.RootElement.EnumerateObject().Select(p => p.Name).ToArray());
        double golden = JsonDocument.Parse(File.ReadAllText(Path.Combine(Archer.GoldenDir, "golden.json"))).RootElement.GetProperty("loss").GetDouble();
        Assert.Equal(golden, doc.RootElement.GetProperty("loss").GetDouble(), 2e-6 * golden);
    }

    CliResult RunWithTokens(TempDir dir, string text)
    {
        File.WriteAllText(dir.File("tokens.txt"), text);
        return Archer.Run("loss", "--model", Archer.GoldenDir, "--tokens", dir.File("tokens.txt"), "--device", "cpu");
    }

    static void AssertFails(CliResult r, params string[] fragments)
    {
        Assert.True(r.ExitCode != 0, "expected a failure:\n" + r);
        Assert.Equal("", r.Out);
        Assert.DoesNotContain("   at ", r.Err);    // a message, not a stack trace
        foreach (var f in fragments) Assert.Contains(f, r.Err);
    }

    [Fact]
    public void TokenOutsideTheVocabularyNamesFileLineValueAndRange()
    {
        using var dir = new TempDir();
        var r = RunWithTokens(dir, "1 2 3\n4 53 6\n");   // the golden model has vocab_size 53
        AssertFails(r, "tokens.txt:2", "53", "[0, 52]");
    }

    [Fact]
    public void NegativeTokenIsRejected()
    {
        using var dir = new TempDir();
        AssertFails(RunWithTokens(dir, "1 -2 3\n"), "tokens.txt:1", "-2", "[0, 52]");
    }

    [Fact]
    public void RaggedLinesNameTheLine()
    {
        using var dir = new TempDir();
        var r = RunWithTokens(dir, "1 2 3\n\n4 5\n");
        AssertFails(r, "tokens.txt:3", "2 tokens", "line 1 has 3");
    }

    [Fact]
    public void LineLongerThanTheContextIsRejected()
    {
        using var dir = new TempDir();
        // n_positions 16: 17 tokens (16 inputs) fit, 18 do not.
        Assert.Equal(0, RunWithTokens(dir, string.Join(' ', Enumerable.Range(0, 17)) + "\n").ExitCode);
        AssertFails(RunWithTokens(dir, string.Join(' ', Enumerable.Range(0, 18)) + "\n"), "tokens.txt:1", "18 tokens", "context", "2 to 17");
    }

    [Fact]
    public void NonIntegerTokenIsRejected()
    {
        using var dir = new TempDir();
        AssertFails(RunWithTokens(dir, "1 two 3\n"), "tokens.txt:1", "'two'");
    }

    [Fact]
    public void MissingModelFolderIsReported()
    {
        using var dir = new TempDir();
        var missing = dir.File("no-such-model");
        AssertFails(Archer.Run("loss", "--model", missing, "--tokens", Path.Combine(Archer.GoldenDir, "tokens.txt"), "--device", "cpu"),
            "no-such-model", "not found");
    }

    [Fact]
    public void MissingTokenFileIsReported()
    {
        using var dir = new TempDir();
        AssertFails(Archer.Run("loss", "--model", Archer.GoldenDir, "--tokens", dir.File("absent.txt"), "--device", "cpu"), "absent.txt", "not found");
    }

    [Fact]
    public void FolderWithoutWeightsIsReported()
    {
        using var dir = new TempDir();
        File.Copy(Path.Combine(Archer.GoldenDir, "config.json"), dir.File("config.json"));
        AssertFails(Archer.Run("loss", "--model", dir.Path, "--tokens", Path.Combine(Archer.GoldenDir, "tokens.txt"), "--device", "cpu"), "model.safetensors");
    }

    /// <summary>A copy of the golden GPT-2 folder with wte.weight changed by <paramref name="edit"/>.</summary>
    static void WriteWithEmbedding(TempDir dir, Action<float[]> edit)
    {
        foreach (var file in new[] { "config.json", "tokens.txt" }) File.Copy(Path.Combine(Archer.GoldenDir, file), dir.File(file));
        var tensors = Model.IO.SafeTensors.Read(Path.Combine(Archer.GoldenDir, "model.safetensors")).Values.ToList();
        edit(tensors.Single(t => t.Name == "wte.weight").Data);
        Model.IO.SafeTensors.Write(dir.File("model.safetensors"), tensors);
    }

    [Fact]
    public void NonFiniteWeightIsRefusedNamingTheTensor()
    {
        using var dir = new TempDir();
        WriteWithEmbedding(dir, wte => wte[5] = float.NaN);
        AssertFails(Archer.Run("loss", "--model", dir.Path, "--tokens", dir.File("tokens.txt"), "--device", "cpu"), "'wte.weight'", "NaN", "finite");
    }

    [Fact]
    public void NonFiniteLossIsAnErrorNotANull()
    {
        using var dir = new TempDir();
        // Finite weights whose logits overflow float32: the loss is not a number, which is no answer.
        WriteWithEmbedding(dir, wte => Array.Fill(wte, 3e38f));
        AssertFails(Archer.Run("loss", "--model", dir.Path, "--tokens", dir.File("tokens.txt"), "--device", "cpu"), "not a finite number");
    }

    [Fact]
    public void ExtraTensorsAreRefusedUnlessAllowed()
    {
        using var dir = new TempDir();
        WriteWithEmbedding(dir, _ => { });
        var path = dir.File("model.safetensors");
        var tensors = Model.IO.SafeTensors.Read(path).Values.Append(new Model.IO.NamedTensor("score.weight", [2], [1f, 2f]));
        Model.IO.SafeTensors.Write(path, tensors.ToList());
        string[] args = ["loss", "--model", dir.Path, "--tokens", dir.File("tokens.txt"), "--device", "cpu"];
        AssertFails(Archer.Run(args), "'score.weight'", "--allow-extra-tensors");
        var r = Archer.Run([.. args, "--allow-extra-tensors"]);
        Assert.True(r.ExitCode == 0, r.ToString());
        double golden = JsonDocument.Parse(File.ReadAllText(Path.Combine(Archer.GoldenDir, "golden.json"))).RootElement.GetProperty("loss").GetDouble();
        Assert.Equal(golden, JsonDocument.Parse(r.Out.Trim()).RootElement.GetProperty("loss").GetDouble(), 2e-6 * golden);
    }
}
