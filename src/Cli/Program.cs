using System.CommandLine;
using ArcherIlgpu.Kernels;

namespace ArcherIlgpu.Cli;

/// <summary>The <c>archer</c> command: one subcommand per job, each in its own file.</summary>
public static class Program
{
    public static int Main(string[] args) => Run(args, Console.Out, Console.Error);

    /// <summary>Runs the command line with its output and errors going to the given writers (tests call this in-process).</summary>
    public static int Run(string[] args, TextWriter output, TextWriter error) =>
        CreateRoot().Parse(args).Invoke(new InvocationConfiguration { Output = output, Error = error });

    /// <summary>The whole command tree (tests parse README lines and help examples against it).</summary>
    public static RootCommand CreateRoot()
    {
        var root = new RootCommand("ArcherIlgpu: RL with verifiable rewards on small language models, in pure .NET");
        root.Subcommands.Add(DemoCommand.Create());
        root.Subcommands.Add(DevicesCommand.Create());
        root.Subcommands.Add(SelfCheckCommand.Create());
        root.Subcommands.Add(ReportCommand.Create());
        root.Subcommands.Add(LossCommand.Create());
        root.Subcommands.Add(GenerateCommand.Create());
        root.Subcommands.Add(MakeSftDataCommand.Create());
        root.Subcommands.Add(TrainSftCommand.Create());
        root.Subcommands.Add(TrainRlCommand.Create());
        root.Subcommands.Add(EvalCommand.Create());
        root.Subcommands.Add(BenchCommand.Create());
        CliHelp.Install(root);
        CliErrors.GuardAll(root);
        return root;
    }

    /// <summary>The --device option every command shares: auto (default), cpu, ilgpu-cpu, cuda, opencl.</summary>
    public static Option<string> DeviceOption() => new("--device")
    {
        Description = $"device: {string.Join(", ", Devices.AllNames)} (auto unless ${Devices.EnvironmentVariable} names one)",
        DefaultValueFactory = _ => "auto",
    };

    /// <summary>
    /// The --precision option of the commands that train or generate: the matmuls' operand precision.
    /// Unset means the backend's default (fp32, or what ARCHER_MATMUL names).
    /// </summary>
    public static Option<string?> PrecisionOption() => new("--precision")
    {
        Description = "matmul operands: fp32, tf32 or bf16 (tensor cores: cuda; ilgpu-cpu emulates them, slowly); " +
                      "accumulation, softmax, loss, log-probs, optimizer and weights stay fp32 (default: fp32)",
    };

    /// <summary>The backend a command runs on: its --device and --precision.</summary>
    public static Backend CreateBackend(string? device, string? precision) => Devices.Create(device, Devices.ParsePrecision(precision));
}
