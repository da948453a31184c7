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
    public static (CausalLm Model, ITokenizer Tokenizer) LoadModel(Backend backend, string dir, LoadOptions? options = null)
    {
        if (!Directory.Exists(dir)) throw new RlCommandException($"model folder \"{dir}\" does not exist");
        var tokenizer = TokenizerFiles.Load(dir);
        var model = Checkpoint.Load(backend, dir, options);
        if (tokenizer.VocabSize > model.Config.VocabSize)
        {
            model.Dispose();
            throw new RlCommandException($"{dir}: the tokenizer has {tokenizer.VocabSize} tokens but the model only {model.Config.VocabSize}; the folder mixes files of different models");
        }
        return (model, tokenizer);
    }

    public static ITask CreateTask(string name, IEnumerable<string> options) =>
        TaskRegistry.Create(name, ParsePairs(options, "--task-option").ToDictionary(kv => kv.Key, kv => kv.Value));
}
