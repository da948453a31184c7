namespace ArcherIlgpu.Kernels;

// Placeholders until the family files land; deleted by them.
public sealed partial class IlgpuBackend
{
    public override void RopeForward(Buf<float> qkv, Buf<int> positions, Buf<float> cos, Buf<float> sin, int N, int H, int Hkv, int D)
        => throw new NotImplementedException("RopeForward is not written yet");
    public override void RopeBackward(Buf<float> dQkv, Buf<int> positions, Buf<float> cos, Buf<float> sin, int N, int H, int Hkv, int D)
        => throw new NotImplementedException("RopeBackward is not written yet");
}
