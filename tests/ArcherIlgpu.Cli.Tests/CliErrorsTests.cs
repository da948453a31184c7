using System.CommandLine;

namespace ArcherIlgpu.Cli.Tests;

/// <summary>What is not a user error (a bug) gives one line naming a log file with the whole trace, and exit code 2.</summary>
public class CliErrorsTests
{
    static (int Code, string Out, string Err) Invoke(Command command, params string[] args)
    {
        var root = new RootCommand { command };
        CliErrors.GuardAll(root);
        var output = new StringWriter();
        var error = new StringWriter();
        int code = root.Parse(args).Invoke(new InvocationConfiguration { Output = output, Error = error });
        return (code, output.ToString(), error.ToString());
    }

    static string LogPath(string err)
    {
        int at = err.IndexOf("(details in ", StringComparison.Ordinal);
        Assert.True(at >= 0, err);
        return err[(at + "(details in ".Length)..err.LastIndexOf(')')];
    }

    [Fact]
    public void AnUnexpectedExceptionIsOneLinePlusALogWithTheTrace()
    {
        var command = new Command("boom");
        command.SetAction(_ => ThrowSomewhereDeep());
        var (code, _, err) = Invoke(command, "boom");

        Assert.Equal(CliErrors.InternalError, code);
        Assert.Single(err.TrimEnd().Split('\n'));
        Assert.StartsWith("archer boom: internal error: the list was empty (details in ", err);
        Assert.DoesNotContain("   at ", err);
        string log = LogPath(err);
        try
        {
            string text = File.ReadAllText(log);
            Assert.Contains("System.InvalidOperationException: the list was empty", text);
            Assert.Contains(nameof(ThrowSomewhereDeep), text);   // the trace is in the log
        }
        finally { File.Delete(log); }
    }

    static int Throw(Exception e) => throw e;

    static int ThrowSomewhereDeep() => throw new InvalidOperationException("the list was empty");

    [Fact]
    public void AUserErrorInACommandThatDoesNotGuardItselfIsStillOneLineAndExitOne()
    {
        var sub = new Command("leaf");
        sub.SetAction(_ => Throw(new CliInputException("--x must be positive, got -1")));
        var command = new Command("group") { sub };
        var (code, _, err) = Invoke(command, "group", "leaf");
        Assert.Equal(CliErrors.BadInput, code);
        Assert.Equal("archer group leaf: error: --x must be positive, got -1", err.TrimEnd());
    }

    [Fact]
    public void AMultiLineMessageStaysOnOneLine()
    {
        var command = new Command("cfg");
        command.SetAction(_ => Throw(new ArgumentException("invalid RunConfig:\n  rl.steps must be >= 1\n  rl.group_size must be >= 2")));
        var (code, _, err) = Invoke(command, "cfg");
        Assert.Equal(CliErrors.BadInput, code);
        Assert.Equal("archer cfg: error: invalid RunConfig: rl.steps must be >= 1; rl.group_size must be >= 2", err.TrimEnd());
    }
}
