using System.CommandLine;
using System.Text.Json;
using ArcherIlgpu.Model;
using ArcherIlgpu.Kernels;
using ArcherIlgpu.Model.IO;

namespace ArcherIlgpu.Cli;

/// <summary>
/// <c>archer loss --model DIR --tokens FILE [--grads]</c>: the mean next-token cross-entropy of a token
/// file under a Hugging Face model folder (GPT-2, Llama, Qwen2, Qwen3), and optionally the gradient norms, as one JSON line. The same
/// numbers transformers gives for <c>model(input_ids, labels=input_ids)</c>, so the two can be compared.
/// </summary>
public static class LossCommand
{
    /// <summary>Rows per forward pass, so a long file does not need activations for all of it at once.</summary>
    const int MaxPositionsPerPass = 4096;

    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "model folder (config.json + model.safetensors), or a run folder (its newest checkpoint)", Required = true };
        var tokens = new Option<string>("--tokens") { Description = "file with one sequence of whitespace-separated token ids per line, all lines the same length", Required = true };
        var grads = new Option<bool>("--grads") { Description = "also report the global gradient L2 norm and one per tensor" };
        var device = Program.DeviceOption();
        var command = new Command("loss", "Mean next-token cross-entropy (and gradient norms) of token sequences under a model, as JSON")
        {
            model, tokens, grads, device,
        };
        command.WithExamples("loss --model tests/ArcherIlgpu.Model.Tests/TestData/golden-tiny-gpt2 --tokens tests/ArcherIlgpu.Model.Tests/TestData/golden-tiny-gpt2/tokens.txt --grads");
        command.SetAction(parse => CliErrors.Guard(parse, (output, _) =>
        {
            string dir = ModelFolders.Resolve(parse.GetValue(model)!);
            var config = Models.LoadConfig(dir);
            var rows = TokenFile.Read(parse.GetValue(tokens)!, config.VocabSize, config.MaxT);
            using var backend = Devices.Create(parse.GetValue(device));
            using var m = Checkpoint.Load(backend, dir);
            var result = Compute(m, rows, parse.GetValue(grads));
            output.WriteLine(ToJson(result, FileNames(Path.Combine(dir, Checkpoint.WeightsFile))));
            return 0;
        }));
        return command;
    }

    /// <summary>Loss over all predicted positions; with gradients, the norms by parameter name (this project's names).</summary>
    public sealed record LossResult(double Loss, int Tokens, double? GradNorm, IReadOnlyList<(string Name, double Norm)>? GradNorms);

    public static LossResult Compute(CausalLm model, int[][] rows, bool withGradients)
    {
        int T = rows[0].Length - 1;
        int predicted = rows.Length * T;
        int rowsPerPass = Math.Max(1, MaxPositionsPerPass / T);
        model.ZeroGradients();
        double loss = 0;
        foreach (var chunk in rows.Chunk(rowsPerPass))
        {
            var batch = ToBatch(chunk, T);
            if (withGradients) loss += model.ForwardBackward(batch, predicted);
            else loss += model.EvaluateLoss(batch).LossSum / predicted;
        }
        if (!withGradients) return new LossResult(loss, predicted, null, null);

        var g = model.DownloadGradients();
        var norms = new List<(string, double)>();
        double total = 0;
        // File order (Hugging Face's), not buffer order; a transpose (Conv1D layout) leaves a norm unchanged.
        foreach (var spec in model.Layout.FileOrder)
        {
            var name = spec.Name;
            double sum = 0;
            foreach (var x in g.AsSpan((int)spec.Offset, (int)spec.Length)) sum += (double)x * x;
            total += sum;
            norms.Add((name, Math.Sqrt(sum)));
        }
        return new LossResult(loss, predicted, Math.Sqrt(total), norms);
    }

    /// <summary>Hugging Face's labels = input_ids: position t of a row predicts token t + 1, every position counts.</summary>
    static TrainingBatch ToBatch(int[][] rows, int T)
    {
        int B = rows.Length;
        var inputs = new int[B * T]; var targets = new int[B * T];
        for (int b = 0; b < B; b++)
        {
            rows[b].AsSpan(0, T).CopyTo(inputs.AsSpan(b * T));
            rows[b].AsSpan(1, T).CopyTo(targets.AsSpan(b * T));
        }
        return new TrainingBatch(B, T, inputs, targets, Enumerable.Repeat(1f, B * T).ToArray());
    }

    /// <summary>Our name -> the name the weights file uses (some exports prefix "transformer.").</summary>
    static Dictionary<string, string> FileNames(string weightsPath)
    {
        var map = new Dictionary<string, string>(StringComparer.Ordinal);
        if (!File.Exists(weightsPath)) return map;   // sharded: the Llama family's names are the file's names
        foreach (var info in SafeTensors.ReadIndex(weightsPath, out _))
        {
            var name = info.Name.StartsWith("transformer.", StringComparison.Ordinal) ? info.Name["transformer.".Length..] : info.Name;
            map.TryAdd(name, info.Name);
        }
        return map;
    }

    /// <summary>JSON has no NaN or infinity: a non-finite value is written as null.</summary>
    static void Number(Utf8JsonWriter json, string name, double value)
    {
        if (double.IsFinite(value)) json.WriteNumber(name, value);
        else json.WriteNull(name);
    }

    static string ToJson(LossResult r, IReadOnlyDictionary<string, string> fileNames)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            Number(json, "loss", r.Loss);
            json.WriteNumber("tokens", r.Tokens);
            if (r.GradNorm is double norm && r.GradNorms is not null)
            {
                Number(json, "grad_norm", norm);
                json.WriteStartObject("grad_norms");
                foreach (var (name, n) in r.GradNorms) Number(json, fileNames.GetValueOrDefault(name, name), n);
                json.WriteEndObject();
            }
            json.WriteEndObject();
        }
        return System.Text.Encoding.UTF8.GetString(buffer.ToArray());
    }
}
