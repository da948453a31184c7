namespace ArcherIlgpu.Kernels;

/// <summary>
/// A kernel-choice setting of the ILGPU backend: the value set through its property, else what its
/// environment variable said when the backend was created (null: unset or <c>default</c>), else the
/// device's default, which the owner passes in (it may depend on the accelerator type).
/// </summary>
internal struct DeviceSetting<T>(T? fromEnvironment) where T : struct
{
    T? set;

    public readonly T Get(T deviceDefault) => set ?? fromEnvironment ?? deviceDefault;

    public void Set(T value) => set = value;
}
