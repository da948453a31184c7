using System.CommandLine;
using ArcherIlgpu.Kernels;
using ArcherIlgpu.Model.IO;
using ArcherIlgpu.Rl.Tasks;

namespace ArcherIlgpu.Cli;

/// <summary>A mistake in what the user gave a command (a file, a value); its message is all they need to see.</summary>
public sealed class CliInputException(string message) : Exception(message);

/// <summary>
/// Runs a command's body so that bad input ends in one clear line on stderr and exit code 1, not a
/// stack trace: every exception type this project throws for bad files, values or devices is caught here.
/// </summary>
public static class CliErrors
{
    public const int BadInput = 1;

    public static int Guard(ParseResult parse, Func<TextWriter, TextWriter, int> body)
    {
        var output = parse.InvocationConfiguration.Output;
        var error = parse.InvocationConfiguration.Error;
        try
        {
            return body(output, error);
        }
        catch (Exception e) when (IsUserError(e))
        {
            output.Flush();
            error.WriteLine($"archer {parse.CommandResult.Command.Name}: error: {e.Message}");
            return BadInput;
        }
    }

    static bool IsUserError(Exception e) => e is CliInputException or RlCommandException or ModelFormatException or InvalidDataException
        or FileNotFoundException or DirectoryNotFoundException or DeviceNotFoundException or TaskDataException
        or ArgumentException or UnauthorizedAccessException or Runs.RunFolderException;

    /// <summary>A model folder must exist and hold config.json; says so in the user's terms.</summary>
    public static string RequireModelDir(string dir)
    {
        if (!Directory.Exists(dir)) throw new CliInputException($"model folder '{dir}' not found (expected a folder with config.json and model.safetensors)");
        if (!File.Exists(Path.Combine(dir, "config.json")))
            throw new CliInputException($"model folder '{dir}' has no config.json (expected a Hugging Face style folder with config.json and model.safetensors)");
        return dir;
    }
}
