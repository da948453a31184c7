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
    /// Unset means bf16 on a CUDA GPU and fp32 elsewhere, or what ARCHER_MATMUL names (<see cref="CreateBackend"/>).
    /// </summary>
    public static Option<string?> PrecisionOption() => new("--precision")
    {
        Description = "matmul operands: fp32, tf32 or bf16 (tensor cores: cuda; ilgpu-cpu emulates them, slowly); " +
                      "accumulation, softmax, loss, log-probs, optimizer and weights stay fp32 (default: bf16 on cuda, fp32 elsewhere)",
    };

    /// <summary>
    /// The backend a command runs on: its --device and --precision. Without either --precision or
    /// ARCHER_MATMUL, a CUDA GPU gets bf16 operands: measured on an H200 (benchmarks/README.md), the gpt2
    /// step takes 341 ms against fp32's 583 and generation at batch 64 runs 1.8x fp32's tokens/s, and the
    /// model's bf16 training curve follows fp32's (Gpt2PrecisionTests). Other devices stay fp32.
    /// </summary>
    public static Backend CreateBackend(string? device, string? precision)
    {
        var backend = Devices.Create(device, Devices.ParsePrecision(precision));
        if (string.IsNullOrWhiteSpace(precision) && string.IsNullOrWhiteSpace(Environment.GetEnvironmentVariable("ARCHER_MATMUL"))
            && backend is IlgpuBackend { IsCuda: true } gpu)
            gpu.MatMulPrecision = MatMulPrecision.Bf16;
        return backend;
    }
}
