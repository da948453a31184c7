using System.CommandLine;
using System.CommandLine.Invocation;
using System.Globalization;
using ArcherIlgpu.Kernels;
using ArcherIlgpu.Model;
using ArcherIlgpu.Model.IO;
using ArcherIlgpu.Model.Training;
using ArcherIlgpu.Rl.Tasks;

namespace ArcherIlgpu.Cli;

/// <summary>A mistake in what the user gave a command (a file, a value); its message is all they need to see.</summary>
public sealed class CliInputException(string message) : Exception(message);

/// <summary>
/// Runs a command's body so that no exception reaches the user as a stack trace: bad input (every
/// exception type this project throws for bad files, values, sizes or devices, and IO errors on the
/// paths given) ends in one clear line on stderr and exit code 1; anything else is a bug in archer and
/// ends in one line naming a log file that holds the full trace, and exit code 2.
/// </summary>
public static class CliErrors
{
    public const int BadInput = 1;
    public const int InternalError = 2;
    /// <summary>Overrides the folder of internal-error logs (default: archer-logs under the system temp folder).</summary>
    public const string LogDirVariable = "ARCHER_LOG_DIR";

    public static int Guard(ParseResult parse, Func<TextWriter, TextWriter, int> body) =>
        Guard(CommandPath(parse), parse.InvocationConfiguration.Output, parse.InvocationConfiguration.Error, body);

    /// <summary>As <see cref="Guard(ParseResult, Func{TextWriter, TextWriter, int})"/> for command <paramref name="command"/> (e.g. "bench train").</summary>
    public static int Guard(string command, TextWriter output, TextWriter error, Func<TextWriter, TextWriter, int> body)
    {
        try
        {
            return body(output, error);
        }
        catch (Exception e) when (IsUserError(e))
        {
            output.Flush();
            error.WriteLine($"archer {command}: error: {OneLine(e.Message)}");
            return BadInput;
        }
        catch (Exception e)
        {
            output.Flush();
            string log = WriteLog(command, e);
            error.WriteLine($"archer {command}: internal error: {OneLine(e.Message)} (details in {log})");
            return InternalError;
        }
    }

    /// <summary>Wraps the action of <paramref name="command"/> and of every subcommand in <see cref="Guard(ParseResult, Func{TextWriter, TextWriter, int})"/>,
    /// so that no command can let an exception out, whether or not its own action guards itself.</summary>
    public static void GuardAll(Command command)
    {
        if (command.Action is SynchronousCommandLineAction action) command.Action = new Guarded(action);
        foreach (var sub in command.Subcommands) GuardAll(sub);
    }

    sealed class Guarded(SynchronousCommandLineAction inner) : SynchronousCommandLineAction
    {
        public override int Invoke(ParseResult parseResult) => Guard(parseResult, (_, _) => inner.Invoke(parseResult));
    }

    static string CommandPath(ParseResult parse)
    {
        var names = new List<string>();
        for (var c = parse.CommandResult; c is not null && c.Command is not RootCommand; c = c.Parent as System.CommandLine.Parsing.CommandResult)
            names.Insert(0, c.Command.Name);
        return string.Join(' ', names);
    }

    static bool IsUserError(Exception e) => e is CliInputException or RlCommandException or ModelFormatException or InvalidDataException
        or FileNotFoundException or DirectoryNotFoundException or DeviceNotFoundException or TaskDataException
        or ArgumentException or UnauthorizedAccessException or SizeLimitException or TrainingDivergedException or Runs.RunFolderException
        // Any other IO error (a folder where a file was expected, a full disk) concerns a path the user gave.
        or IOException;

    /// <summary>A multi-line message (a heading and a list of config problems) stays readable on one line.</summary>
    static string OneLine(string message)
    {
        var lines = message.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var result = new System.Text.StringBuilder();
        for (int i = 0; i < lines.Length; i++)
            result.Append(i == 0 ? "" : lines[i - 1].EndsWith(':') ? " " : "; ").Append(lines[i]);
        return result.ToString();
    }

    /// <summary>Writes the full exception to a new log file and returns its path (or why it could not be written).</summary>
    static string WriteLog(string command, Exception e)
    {
        try
        {
            string dir = Environment.GetEnvironmentVariable(LogDirVariable) is { Length: > 0 } d ? d : Path.Combine(Path.GetTempPath(), "archer-logs");
            Directory.CreateDirectory(dir);
            string name = $"archer-{DateTime.UtcNow.ToString("yyyyMMdd-HHmmss", CultureInfo.InvariantCulture)}-{Environment.ProcessId}-{Guid.NewGuid().ToString("N")[..6]}.log";
            string path = Path.Combine(dir, name);
            File.WriteAllText(path, $"archer {command}\n{string.Join(' ', Environment.GetCommandLineArgs())}\n{DateTime.UtcNow:O} UTC, pid {Environment.ProcessId}\n\n{e}\n");
            return path;
        }
        catch (Exception logError) when (logError is IOException or UnauthorizedAccessException)
        {
            return $"no log: {logError.Message}";
        }
    }
}
