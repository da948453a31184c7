using System.CommandLine;
using ArcherIlgpu.Model;
using ArcherIlgpu.Kernels;
using ArcherIlgpu.Model.Generation;
using ArcherIlgpu.Model.Tokenizers;

namespace ArcherIlgpu.Cli;

/// <summary>
/// <c>archer generate --model DIR --prompt TEXT</c>: continues a prompt with the model and the tokenizer
/// saved in its folder; prints each completion (the prompt is not repeated). Temperature 0 is greedy.
/// </summary>
public static class GenerateCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "model folder (config.json, model.safetensors and a tokenizer), or a run folder (its newest checkpoint)", Required = true };
        var prompt = new Option<string>("--prompt") { Description = "text to continue", Required = true };
        var maxNew = new Option<int>("--max-new-tokens") { Description = "most tokens to generate per sample", DefaultValueFactory = _ => 64 };
        var temperature = new Option<float>("--temperature") { Description = "sampling temperature; 0 = greedy", DefaultValueFactory = _ => 1f };
        var topK = new Option<int>("--top-k") { Description = "keep the k most likely tokens; 0 = all", DefaultValueFactory = _ => 0 };
        var topP = new Option<float>("--top-p") { Description = "keep the smallest set of tokens with this much probability (1 = all)", DefaultValueFactory = _ => 1f };
        var seed = new Option<ulong>("--seed") { Description = "random seed; the same seed gives the same samples", DefaultValueFactory = _ => 0UL };
        var samples = new Option<int>("--samples") { Description = "number of completions", DefaultValueFactory = _ => 1 };
        var device = Program.DeviceOption();
        var precision = Program.PrecisionOption();
        var allowExtra = ModelLoadOption.Create();
        var command = new Command("generate", "Continue a prompt with a trained model")
        {
            model, prompt, maxNew, temperature, topK, topP, seed, samples, device, precision, allowExtra,
        };
        command.WithExamples("generate --model runs/add-model --prompt \"47+38=\" --temperature 0");
        command.SetAction(parse => CliErrors.Guard(parse, (output, _) =>
        {
            string dir = ModelFolders.Resolve(parse.GetValue(model)!);
            int n = parse.GetValue(samples);
            if (n < 1) throw new CliInputException($"--samples must be at least 1, got {n}");
            var tokenizer = TokenizerFiles.Load(dir);
            var options = new SamplingOptions(parse.GetValue(maxNew), parse.GetValue(temperature), parse.GetValue(topK), parse.GetValue(topP),
                parse.GetValue(seed), EndToken: tokenizer.EndOfText).Validate();
            using var backend = Program.CreateBackend(parse.GetValue(device), parse.GetValue(precision));
            using var m = Checkpoint.Load(backend, dir, ModelLoadOption.Read(parse, allowExtra));
            if (tokenizer.VocabSize > m.Config.VocabSize)
                throw new CliInputException($"{dir}: the tokenizer has {tokenizer.VocabSize} tokens but the model only {m.Config.VocabSize}; the folder mixes files of different models");
            string text = parse.GetValue(prompt)!;
            // Before anything encodes the prompt: an unknown character is named here, not thrown from inside Encode.
            if (RlCommandSupport.UnknownCharacter(text, tokenizer, dir) is string unknown)
                throw new CliInputException($"the prompt \"{text}\" has {unknown}");
            MemoryChecks.Generation(m.Config, n, tokenizer.Encode(text).Count, $"--samples {n}").RequireFits(backend);
            var completions = Complete(m, tokenizer, text, n, options);
            for (int i = 0; i < completions.Count; i++)
            {
                if (completions.Count > 1) output.WriteLine($"--- sample {i + 1} ---");
                output.WriteLine(completions[i]);
            }
            return 0;
        }));
        return command;
    }

    /// <summary>
    /// <paramref name="count"/> completions of one prompt, decoded without the end token. An empty prompt
    /// starts from the end token (GPT-2's start of text).
    /// </summary>
    public static List<string> Complete(CausalLm model, ITokenizer tokenizer, string prompt, int count, SamplingOptions options)
    {
        var ids = tokenizer.Encode(prompt).ToArray();
        if (ids.Length == 0) ids = [tokenizer.EndOfText];
        if (ids.Length >= model.Config.MaxT)
            throw new CliInputException($"the prompt is {ids.Length} tokens; at most {model.Config.MaxT - 1} fit the model's context length {model.Config.MaxT}");
        using var generator = new Generator(model);
        var prompts = Enumerable.Repeat<IReadOnlyList<int>>(ids, count).ToList();
        var result = generator.Generate(prompts, options);
        return result.Tokens.Select(t => tokenizer.Decode(t.Where(id => id != tokenizer.EndOfText))).ToList();
    }
}
