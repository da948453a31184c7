using ArcherIlgpu.Kernels;

namespace ArcherIlgpu.Kernels.Tests;

public class BackendSelectionTests
{
    [Fact]
    public void UnknownDeviceIsAClearErrorListingTheValidOnes()
    {
        var e = Assert.Throws<DeviceNotFoundException>(() => Devices.Create("tpu"));
        Assert.Contains("tpu", e.Message);
        Assert.Contains("cpu", e.Message);
        Assert.Contains("ilgpu-cpu", e.Message);
    }

    [Fact]
    public void MissingGpuIsAClearErrorNamingTheAvailableDevices()
    {
        Skip.If(Devices.Available().Contains("opencl"), "this machine has an OpenCL device");
        var e = Assert.Throws<DeviceNotFoundException>(() => Devices.Create("opencl"));
        Assert.Contains("'opencl' is not available", e.Message);
        Assert.Contains("available devices: ", e.Message);
        Assert.Contains("cpu", e.Message);
    }

    [Fact]
    public void CpuIsAlwaysAvailableAndNamed()
    {
        Assert.Contains("cpu", Devices.Available());
        using var cpu = Devices.Create("cpu");
        Assert.Equal("cpu", cpu.Name);
        using var cpu2 = Devices.Create(" CPU ");
        Assert.Equal("cpu", cpu2.Name);
    }

    [SkippableTheory, MemberData(nameof(TestBackends.Names), MemberType = typeof(TestBackends))]
    public void BuffersRoundTripAndSlice(string device)
    {
        var backend = TestBackends.Get(device);
        var data = TestData.Floats(1, 37);
        var buf = backend.Upload<float>(data);
        Assert.Equal(data, backend.ToArray(buf));
        var slice = buf.Slice(5, 7);
        Assert.Equal(data.AsSpan(5, 7).ToArray(), backend.ToArray(slice));
        backend.Zero(slice);
        var after = backend.ToArray(buf);
        Assert.All(after.AsSpan(5, 7).ToArray(), v => Assert.Equal(0f, v));
        Assert.Equal(data[4], after[4]);
        Assert.Equal(data[12], after[12]);
        var copy = backend.Allocate<float>(7).All;
        backend.Copy(buf.Slice(20, 7), copy);
        Assert.Equal(data.AsSpan(20, 7).ToArray(), backend.ToArray(copy));
        Assert.Throws<ArgumentOutOfRangeException>(() => buf.Slice(30, 8));
    }
}
