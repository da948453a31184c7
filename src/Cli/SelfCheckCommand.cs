using System.CommandLine;
using ArcherIlgpu.Kernels;
using ArcherIlgpu.Model;

namespace ArcherIlgpu.Cli;

/// <summary>
/// <c>archer selfcheck --device cuda</c>: every op forward and backward on the device against the
/// managed cpu backend; exits 1 with a table of what differs.
/// </summary>
public static class SelfCheckCommand
{
    public static Command Create()
    {
        var device = Program.DeviceOption();
        var quick = new Option<bool>("--quick") { Description = "small sizes only (for the ilgpu-cpu simulator)" };
        var command = new Command("selfcheck", "Check every op on a device against the cpu backend") { device, quick };
        command.WithExamples("selfcheck --device cuda");
        command.SetAction(parse => CliErrors.Guard(parse, (stdout, _) =>
        {
            string name = parse.GetValue(device)!;
            using var backend = Devices.Create(name);
            using var cpu = new CpuBackend();
            bool isQuick = parse.GetValue(quick) || backend.Name == "ilgpu-cpu";
            stdout.WriteLine($"selfcheck: {backend.Name} ({backend.Description}) against cpu{(isQuick ? ", quick sizes" : "")}");
            stdout.WriteLine($"{"op",-16} {"shape",-22} {"output",-26} {"error",10} {"tolerance",10}  result");
            void Print(SelfCheck.Result r) =>
                stdout.WriteLine($"{r.Op,-16} {r.Shape,-22} {r.Output,-26} {r.Error,10:E2} {r.Tolerance,10:E1}  {(r.Passed ? "ok" : "FAIL")}");
            var results = SelfCheck.Run(backend, cpu, isQuick, Print);
            foreach (var r in ModelSelfCheck.Run(backend, cpu, isQuick)) { Print(r); results.Add(r); }
            var failed = results.Where(r => !r.Passed).ToList();
            stdout.WriteLine($"{results.Count - failed.Count} passed, {failed.Count} failed");
            if (failed.Count > 0)
            {
                stdout.WriteLine("what differs:");
                foreach (var r in failed) stdout.WriteLine($"  {r.Op} {r.Shape} {r.Output}: error {r.Error:E2} > {r.Tolerance:E1}");
            }
            return failed.Count == 0 ? 0 : 1;
        }));
        return command;
    }
}
