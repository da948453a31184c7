using System.CommandLine;
using System.CommandLine.Help;
using System.CommandLine.Invocation;
using System.Runtime.CompilerServices;

namespace ArcherIlgpu.Cli;

/// <summary>
/// The help every command shares: an example under each command's <c>--help</c>, and <c>archer help</c> /
/// <c>archer help COMMAND</c> as other spellings of <c>--help</c>. Defaults are printed once, by System.CommandLine's
/// "[default: X]" from an option's DefaultValueFactory, so descriptions do not repeat them.
/// </summary>
public static class CliHelp
{
    static readonly ConditionalWeakTable<Command, string[]> examples = new();

    /// <summary>Registers example command lines (without the leading "archer") printed under the command's help.</summary>
    public static Command WithExamples(this Command command, params string[] lines)
    {
        examples.AddOrUpdate(command, lines);
        return command;
    }

    /// <summary>The example lines of <paramref name="command"/>, empty if none (tests check every command has one).</summary>
    public static IReadOnlyList<string> ExamplesOf(Command command) => examples.TryGetValue(command, out var lines) ? lines : [];

    /// <summary>Adds the <c>help [COMMAND]</c> command and makes <c>--help</c> print the examples.</summary>
    public static void Install(RootCommand root)
    {
        foreach (var option in root.Options.OfType<HelpOption>())
            if (option.Action is HelpAction standard) option.Action = new HelpWithExamples(standard);

        var name = new Argument<string?>("command") { Description = "the command to explain", Arity = ArgumentArity.ZeroOrOne };
        var help = new Command("help", "Show the help of archer or of one command (the same as --help)") { name };
        help.WithExamples("help train-rl");
        help.SetAction(parse =>
        {
            string? wanted = parse.GetValue(name);
            if (wanted is not null && !root.Subcommands.Any(c => c.Name == wanted))
            {
                parse.InvocationConfiguration.Error.WriteLine(
                    $"archer help: error: unknown command '{wanted}'; commands: {string.Join(", ", root.Subcommands.Select(c => c.Name))}");
                return CliErrors.BadInput;
            }
            string[] args = wanted is null ? ["--help"] : [wanted, "--help"];
            return root.Parse(args).Invoke(parse.InvocationConfiguration);
        });
        root.Subcommands.Add(help);
    }

    /// <summary>System.CommandLine's help, then the command's examples.</summary>
    sealed class HelpWithExamples(HelpAction standard) : SynchronousCommandLineAction
    {
        public override bool ClearsParseErrors => true;

        public override int Invoke(ParseResult parse)
        {
            int code = standard.Invoke(parse);
            var lines = ExamplesOf(parse.CommandResult.Command);
            if (lines.Count == 0) return code;
            var output = parse.InvocationConfiguration.Output;
            output.WriteLine(lines.Count == 1 ? "Example:" : "Examples:");
            foreach (var line in lines) output.WriteLine("  archer " + line);
            output.WriteLine();
            return code;
        }
    }
}
