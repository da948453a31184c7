using System.Diagnostics;
using ArcherIlgpu.Kernels;

namespace ArcherIlgpu.Benchmarks;

/// <summary>
/// Op benchmarks: time, GFLOP/s or GB/s per op and backend at transformer-sized shapes.
/// Not run by CI. Usage:
///   dotnet run -c Release --project benchmarks/ArcherIlgpu.Benchmarks -- [--device cpu] [--op matmul]
/// Every class implementing <see cref="IOpBenchmark"/> is found and run.
/// </summary>
public static class Program
{
    public static int Main(string[] args)
    {
        string device = Arg(args, "--device") ?? "cpu";
        string? only = Arg(args, "--op");
        using var backend = Devices.Create(device);
        Console.WriteLine($"device: {backend.Name} ({backend.Description})");
        Console.WriteLine($"{"op",-40} {"shape",-28} {"ms",9} {"GFLOP/s",9} {"GB/s",8}");
        var benches = typeof(Program).Assembly.GetTypes()
            .Where(t => typeof(IOpBenchmark).IsAssignableFrom(t) && !t.IsAbstract && !t.IsInterface)
            .Select(t => (IOpBenchmark)Activator.CreateInstance(t)!)
            .OrderBy(b => b.Name);
        foreach (var bench in benches)
            if (only is null || bench.Name.Contains(only, StringComparison.OrdinalIgnoreCase))
                bench.Run(backend);
        return 0;
    }

    static string? Arg(string[] args, string name)
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
    }
}

/// <summary>One op family's benchmark; it calls <see cref="Bench.Report"/> once per op and shape.</summary>
public interface IOpBenchmark
{
    string Name { get; }
    void Run(Backend backend);
}

public static class Bench
{
    /// <summary>
    /// Runs <paramref name="op"/> once to warm up (kernel compilation, first-touch), then repeats it
    /// for at least <paramref name="minSeconds"/> and prints the median time, GFLOP/s and GB/s.
    /// </summary>
    public static double Report(Backend backend, string op, string shape, double flops, double bytes, Action run, double minSeconds = 1.0)
    {
        run(); backend.Synchronize();
        var times = new List<double>();
        var total = Stopwatch.StartNew();
        while (total.Elapsed.TotalSeconds < minSeconds || times.Count < 3)
        {
            var sw = Stopwatch.StartNew();
            run(); backend.Synchronize();
            times.Add(sw.Elapsed.TotalMilliseconds);
            if (times.Count >= 1000) break;
        }
        times.Sort();
        double ms = times[times.Count / 2];
        Console.WriteLine($"{op,-40} {shape,-28} {ms,9:F3} {flops / ms / 1e6,9:F1} {bytes / ms / 1e6,8:F1}");
        return ms;
    }

    public static Buf<float> Random(Backend backend, long n, int seed, float scale = 1f)
    {
        var rng = new Random(seed);
        var x = new float[n];
        for (long i = 0; i < n; i++) x[i] = (float)(rng.NextDouble() * 2 - 1) * scale;
        return backend.Upload<float>(x);
    }
}
