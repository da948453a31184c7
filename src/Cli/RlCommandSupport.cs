using System.CommandLine;
using ArcherIlgpu.Model;
using ArcherIlgpu.Kernels;
using ArcherIlgpu.Model.IO;
using ArcherIlgpu.Model.Tokenizers;
using ArcherIlgpu.Rl.Tasks;

namespace ArcherIlgpu.Cli;

/// <summary>A command-line mistake: one error line and exit code 1 (<see cref="CliErrors.Guard"/>), no stack trace.</summary>
public sealed class RlCommandException(string message) : Exception(message);

/// <summary>Shared pieces of <c>train-rl</c> and <c>eval</c>: model + tokenizer loading, key=value lists, tasks.</summary>
internal static class RlCommandSupport
{
    public static Option<string[]> KeyValueOption(string name, string description) => new(name)
    {
        Description = description,
        AllowMultipleArgumentsPerToken = true,
        DefaultValueFactory = _ => [],
    };

    /// <summary>"key=value" items in order; a missing '=' or an empty key fails naming the item.</summary>
    public static List<KeyValuePair<string, string>> ParsePairs(IEnumerable<string> items, string option)
    {
        var list = new List<KeyValuePair<string, string>>();
        foreach (var item in items)
        {
            int eq = item.IndexOf('=');
            if (eq <= 0) throw new RlCommandException($"{option} expects key=value, got \"{item}\"");
            list.Add(new(item[..eq].Trim(), item[(eq + 1)..]));
        }
        return list;
    }

    /// <summary>Loads config.json + model.safetensors + the tokenizer of a model folder onto the backend.</summary>
    public static (CausalLm Model, ITokenizer Tokenizer) LoadModel(Backend backend, string dir)
    {
        if (!Directory.Exists(dir)) throw new RlCommandException($"model folder \"{dir}\" does not exist");
        var tokenizer = TokenizerFiles.Load(dir);
        var model = Checkpoint.Load(backend, dir);
        if (tokenizer.VocabSize > model.Config.VocabSize)
        {
            model.Dispose();
            throw new RlCommandException($"{dir}: the tokenizer has {tokenizer.VocabSize} tokens but the model only {model.Config.VocabSize}; the folder mixes files of different models");
        }
        return (model, tokenizer);
    }

    /// <summary><see cref="LoadModel(Backend, string)"/>, then a check that the model's tokenizer can write the task's problems.</summary>
    public static (CausalLm Model, ITokenizer Tokenizer) LoadModel(Backend backend, string dir, ITask task)
    {
        var loaded = LoadModel(backend, dir);
        try { RequireTaskFitsTokenizer(task, loaded.Tokenizer, dir); }
        catch { loaded.Model.Dispose(); throw; }
        return loaded;
    }

    /// <summary>Problems a task is checked on before a run: enough to meet every operator and digit of a small task.</summary>
    const int ProblemsChecked = 256;

    /// <summary>
    /// A character tokenizer knows only the characters of the data it was made from; a task whose problems
    /// hold others (subtraction for a model trained on sums) fails here, before anything runs, saying what
    /// to change, instead of deep inside a rollout.
    /// </summary>
    public static void RequireTaskFitsTokenizer(ITask task, ITokenizer tokenizer, string dir)
    {
        long count = Math.Min(task.Count ?? ProblemsChecked, ProblemsChecked);
        for (long i = 0; i < count; i++)
        {
            var example = task.Generate(1, i);
            foreach (var text in new[] { example.Prompt, example.Answer })
                if (UnknownCharacter(text, tokenizer, dir) is string unknown)
                    throw new CliInputException(
                        $"the task's problem \"{example.Prompt}\" (answer \"{example.Answer}\") has {unknown}. Give the task options the model " +
                        "was trained with (e.g. --task-option operators=+ for a model trained on sums), or train the model on data that has this character");
        }
    }

    /// <summary>"'-', which the model in DIR has never seen: ..." for the first character a character tokenizer cannot encode; null when it can encode all.</summary>
    public static string? UnknownCharacter(string text, ITokenizer tokenizer, string dir)
    {
        if (tokenizer is not CharTokenizer chars) return null;
        foreach (char c in text)
            if (chars.Alphabet.IndexOf(c) < 0)
                return $"'{c}', which the model in {dir} has never seen: its character tokenizer knows only \"{chars.Alphabet}\", the characters of its training data";
        return null;
    }

    public static ITask CreateTask(string name, IEnumerable<string> options) =>
        TaskRegistry.Create(name, ParsePairs(options, "--task-option").ToDictionary(kv => kv.Key, kv => kv.Value));
}
