using System.CommandLine;
using ArcherIlgpu.Kernels;

namespace ArcherIlgpu.Cli;

/// <summary><c>archer devices</c>: what this machine offers, best first.</summary>
public static class DevicesCommand
{
    public static Command Create()
    {
        var command = new Command("devices", "List the devices found on this machine");
        command.WithExamples("devices");
        command.SetAction(_ =>
        {
            foreach (var line in Devices.Describe()) Console.WriteLine(line);
            return 0;
        });
        return command;
    }
}
