using ArcherIlgpu.Kernels;
using Xunit;

namespace ArcherIlgpu.Tests.Shared;

/// <summary>
/// One backend of each kind per test process, for every test project (linked into each): creating
/// an ILGPU context and compiling its kernels is the expensive part. Tests take a name from
/// <see cref="Names"/>; <c>cuda</c> is skipped where there is no NVIDIA GPU.
/// </summary>
public static class SharedBackends
{
    static readonly Dictionary<string, Backend?> cache = new();
    static readonly object gate = new();

    /// <summary>cpu, ilgpu-cpu and cuda, for [SkippableTheory, MemberData(...)].</summary>
    public static IEnumerable<object[]> Names => new[] { "cpu", "ilgpu-cpu", "cuda" }.Select(n => new object[] { n });

    /// <summary>The backend of that name, or a skip if this machine does not have it.</summary>
    public static Backend Get(string name)
    {
        lock (gate)
        {
            if (!cache.TryGetValue(name, out var backend))
            {
                try { backend = Devices.Create(name); }
                catch (DeviceNotFoundException) { backend = null; }
                cache[name] = backend;
            }
            Skip.If(backend is null, $"no {name} device on this machine");
            return backend!;
        }
    }
}
