using System.CommandLine;
using ArcherIlgpu.Model;

namespace ArcherIlgpu.Cli;

/// <summary><c>--allow-extra-tensors</c>: the escape from strict model loading, on every command that loads a model folder.</summary>
internal static class ModelLoadOption
{
    public static Option<bool> Create() => new("--allow-extra-tensors")
    {
        Description = "load a model folder whose weights also hold tensors its config.json has no place for, ignoring them "
            + "(without it such a folder is refused: extra tensors usually mean config.json does not describe the weights)",
    };

    public static LoadOptions Read(ParseResult parse, Option<bool> option) => new(AllowExtraTensors: parse.GetValue(option));
}
