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

    [Theory]
    [InlineData(MatMulPrecision.Tf32)]
    [InlineData(MatMulPrecision.Bf16)]
    public void TheCpuBackendRefusesReducedPrecisionInsteadOfIgnoringIt(MatMulPrecision precision)
    {
        var e = Assert.Throws<ArgumentException>(() => Devices.Create("cpu", precision));
        Assert.Contains($"--precision {Devices.PrecisionName(precision)} needs tensor cores", e.Message);
        using var cpu = Devices.Create("cpu", MatMulPrecision.Float32);
        Assert.Equal(MatMulPrecision.Float32, cpu.Precision);
    }

    [Fact]
    public void TheIlgpuCpuBackendTakesThePrecisionItIsGiven()
    {
        using var bf16 = Devices.Create("ilgpu-cpu", MatMulPrecision.Bf16);
        Assert.Equal(MatMulPrecision.Bf16, bf16.Precision);   // emulated mma.sync (Gpt2PrecisionTests checks the numbers)
    }

    [Theory]
    [InlineData("fp32", MatMulPrecision.Float32)]
    [InlineData(" TF32 ", MatMulPrecision.Tf32)]
    [InlineData("bf16", MatMulPrecision.Bf16)]
    public void PrecisionNamesParse(string text, MatMulPrecision expected) => Assert.Equal(expected, Devices.ParsePrecision(text));

    [Fact]
    public void AnUnknownPrecisionListsTheValidOnes()
    {
        Assert.Null(Devices.ParsePrecision(null));
        var e = Assert.Throws<ArgumentException>(() => Devices.ParsePrecision("fp16"));
        Assert.Contains("fp32, tf32, bf16", e.Message);
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

    /// <summary>Under mpirun or srun each rank on a machine takes its local rank's GPU, wrapping around the count.</summary>
    [Theory]
    [InlineData(null, null, null, 4, 0)]             // one process: the first GPU
    [InlineData("3", null, null, 4, 3)]              // OpenMPI
    [InlineData("5", null, null, 4, 1)]              // more ranks than GPUs: shared two by two
    [InlineData(null, "2", null, 4, 2)]              // MPICH
    [InlineData(null, null, "1", 2, 1)]              // Slurm
    [InlineData("not a number", null, "1", 2, 1)]   // an unreadable variable is skipped
    public void Each_local_rank_takes_its_own_gpu(string? openMpi, string? mpich, string? slurm, int count, int expected)
    {
        var environment = new Dictionary<string, string?>
        {
            ["OMPI_COMM_WORLD_LOCAL_RANK"] = openMpi, ["MPI_LOCALRANKID"] = mpich, ["SLURM_LOCALID"] = slurm,
        };
        Assert.Equal(expected, Devices.LocalGpuIndex(count, v => environment.GetValueOrDefault(v)));
    }
}
