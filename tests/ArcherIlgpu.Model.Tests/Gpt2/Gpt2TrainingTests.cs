using ArcherIlgpu.Model.Gpt2;
using ArcherIlgpu.Model.Tokenizers;
using ArcherIlgpu.Model.Training;
using Xunit;

namespace ArcherIlgpu.Model.Tests.Gpt2;

[Collection(Gpt2Collection.Name)]
public sealed class Gpt2TrainingTests : IDisposable
{
    readonly string dir = Path.Combine(Path.GetTempPath(), "archer-gpt2-sft-" + Guid.NewGuid().ToString("N"));
    public Gpt2TrainingTests() => Directory.CreateDirectory(dir);
    public void Dispose() => Directory.Delete(dir, recursive: true);

    static readonly Gpt2Config Small = new(VocabSize: 23, MaxT: 10, Layers: 2, Heads: 2, Channels: 16);

    static TrainingBatch Batch(int seed, int B, int T) =>
        new(B, T, Gpt2TestData.Tokens(seed, B * T, Small.VocabSize), Gpt2TestData.Tokens(seed + 1, B * T, Small.VocabSize), Gpt2TestData.Mask(B, T));

    static TrainingBatch Rows(TrainingBatch b, int from, int count) => new(count, b.T,
        b.Inputs[(from * b.T)..((from + count) * b.T)], b.Targets[(from * b.T)..((from + count) * b.T)], b.Weights[(from * b.T)..((from + count) * b.T)]);

    [Fact]
    public void MicroBatchesGiveTheStepOfTheFullBatch()
    {
        var flat = Gpt2TestData.RandomParameters(new ParameterLayout(Small), 41);
        var cpu = ModelBackends.Get("cpu");
        var batch = Batch(1, 4, 7);
        var schedule = new LrSchedule(1e-2f, Kind: "constant");
        using var m1 = new Gpt2Model(cpu, Small, flat);
        using var t1 = new ModelTrainer(m1, schedule);
        var r1 = t1.TrainStep(batch);
        using var m2 = new Gpt2Model(cpu, Small, flat);
        using var t2 = new ModelTrainer(m2, schedule);
        var r2 = t2.TrainStep([Rows(batch, 0, 1), Rows(batch, 1, 3)]);
        // Same gradient summed in another order: float32 rounding, 1e-5 relative.
        Assert.Equal(r1.Loss, r2.Loss, 1e-5);
        Assert.Equal(r1.GradNorm, r2.GradNorm, 1e-5);
        // The accumulated gradients (still in the buffer after the step) are the full batch's, to float32 rounding
        // relative to the largest entry. Parameters are not compared: Adam maps a gradient that is zero in
        // exact arithmetic (e.g. the key bias, which softmax ignores) but rounding noise in float32 to a full
        // +-lr step, so they can legitimately differ there.
        var g1 = m1.DownloadGradients(); var g2 = m2.DownloadGradients();
        double max = g1.Max(Math.Abs);
        Close.All(Array.ConvertAll(g1, v => (double)v), g2, 1e-5 * max, 1e-4, "accumulated gradients");
        Assert.False(r1.Skipped);
        Assert.Equal(1, t1.Optimizer.Step);
    }

    [Fact]
    public void TrainingStepsReduceTheLossOfARepeatedBatch()
    {
        using var model = new Gpt2Model(ModelBackends.Get("cpu"), Small, seed: 3);
        using var trainer = new ModelTrainer(model, new LrSchedule(1e-2f, WarmupSteps: 2, TotalSteps: 30));
        var batch = Batch(5, 4, 8);
        double first = trainer.TrainStep(batch).Loss, last = 0;
        for (int i = 0; i < 29; i++) last = trainer.TrainStep(batch).Loss;
        Assert.True(last < 0.5 * first, $"loss went from {first} to {last}");
    }

    [Fact]
    public void ANonFiniteGradientSkipsTheStepAndIsCounted()
    {
        var flat = Gpt2TestData.RandomParameters(new ParameterLayout(Small), 42);
        flat[new ParameterLayout(Small)["ln_f.bias"].Offset] = float.PositiveInfinity; // every logit becomes non-finite
        using var model = new Gpt2Model(ModelBackends.Get("cpu"), Small, flat);
        using var trainer = new ModelTrainer(model, new LrSchedule(1e-2f, Kind: "constant"));
        var r = trainer.TrainStep(Batch(7, 2, 5));
        Assert.True(r.Skipped);
        Assert.False(double.IsFinite(r.GradNorm));
        Assert.Equal(1, trainer.Optimizer.SkippedSteps);
        Assert.Equal(0, trainer.Optimizer.Step);
        Assert.Equal(flat, model.DownloadParameters());
    }

    // ---------------------------------------------------------------- SFT

    [Fact]
    public void SftBatchWeightsOnlyTheCompletionAndTheEndToken()
    {
        var tok = CharTokenizer.ForArithmetic();
        var e = SftData.Tokenize("1+2=", "3", tok, maxT: 16, "test");
        var batch = SftData.MakeBatch([e, SftData.Tokenize("10+20=", "30", tok, 16, "test")], tok.EndOfText);
        Assert.Equal(8, batch.T);   // "10+20=30" + end = 9 tokens -> 8 (input, target) pairs
        // Row 0: "1+2=3<end>": predicting '3' (position 3) and <end> (position 4) count; nothing else.
        Assert.Equal(new float[] { 0, 0, 0, 1, 1, 0, 0, 0 }, batch.Weights[..8]);
        Assert.Equal(tok.Encode("3")[0], batch.Targets[3]);
        Assert.Equal(tok.EndOfText, batch.Targets[4]);
        Assert.Equal(new float[] { 0, 0, 0, 0, 0, 1, 1, 1 }, batch.Weights[8..]);
    }

    [Fact]
    public void SftLoaderErrorsNameTheFileAndLine()
    {
        var tok = CharTokenizer.ForArithmetic();
        var path = Path.Combine(dir, "bad.jsonl");
        File.WriteAllLines(path, ["""{"prompt": "1+1=", "completion": "2"}""", "", """{"prompt": "1+2=" "completion": "3"}"""]);
        var e = Assert.Throws<InvalidDataException>(() => SftData.Load(path, tok, 16));
        Assert.Contains($"{path}:3", e.Message);
        File.WriteAllLines(path, ["""{"prompt": "1+1="}"""]);
        e = Assert.Throws<InvalidDataException>(() => SftData.Load(path, tok, 16));
        Assert.Contains($"{path}:1", e.Message); Assert.Contains("completion", e.Message);
        File.WriteAllLines(path, ["""{"prompt": "1+1=", "completion": "2222222222222222"}"""]);
        e = Assert.Throws<InvalidDataException>(() => SftData.Load(path, tok, 8));
        Assert.Contains($"{path}:1", e.Message); Assert.Contains("context length 8", e.Message);
    }

    [Fact]
    public void SftOnTwoDigitAdditionDrivesTheHeldOutLossDown()
    {
        var tok = CharTokenizer.ForArithmetic();
        var rng = new Random(9);
        var lines = Enumerable.Range(0, 600).Select(_ =>
        {
            int a = rng.Next(10, 100), b = rng.Next(10, 100);
            return $$"""{"prompt": "{{a}}+{{b}}=", "completion": "{{a + b}}"}""";
        }).ToArray();
        var path = Path.Combine(dir, "add.jsonl");
        File.WriteAllLines(path, lines);
        var config = new Gpt2Config(VocabSize: tok.VocabSize, MaxT: 12, Layers: 2, Heads: 2, Channels: 32);
        var all = SftData.Load(path, tok, config.MaxT);
        using var model = new Gpt2Model(ModelBackends.Get("cpu"), config, seed: 1);
        var options = new SftOptions(Steps: 150, BatchSize: 32, MicroBatches: 2, Lr: 3e-3f, WarmupSteps: 10, EvalEvery: 50,
            AdamW: new AdamWOptions(WeightDecay: 0.01f));
        using var sft = new SftTrainer(model, all[100..], all[..100], tok.EndOfText, options);
        double before = sft.HeldOutLoss();
        var history = sft.Run();
        double after = history[^1].HeldOutLoss;
        // Before training the completion tokens are ~uniform over the vocabulary (ln V ~ 3);
        // the sum's digits are partly predictable (the hundreds digit, the end token), so
        // a model that learned anything is far below that.
        Assert.True(after < 0.6 * before, $"held-out loss {before} -> {after}");
        Assert.Equal(0, history[^1].SkippedSteps);
    }
}
