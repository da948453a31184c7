using ArcherIlgpu.Kernels;

namespace ArcherIlgpu.Model.Generation;

/// <summary>Keys and values of every layer for B sequences: K[l], V[l] are [B, Hkv, MaxT, D].</summary>
public sealed class KvCache : IDisposable
{
    public int B { get; }
    public int MaxT { get; }
    public Buf<float>[] K { get; }
    public Buf<float>[] V { get; }
    readonly List<DeviceBuffer<float>> owned = [];

    /// <param name="kvWidth">Hkv · D, the key (and value) channels of one position.</param>
    public KvCache(Backend backend, int layers, int B, int maxT, int kvWidth)
    {
        this.B = B; MaxT = maxT;
        long size = (long)B * maxT * kvWidth;
        K = new Buf<float>[layers];
        V = new Buf<float>[layers];
        for (int l = 0; l < layers; l++)
        {
            var k = backend.Allocate<float>(size); var v = backend.Allocate<float>(size);
            owned.Add(k); owned.Add(v);
            K[l] = k.All; V[l] = v.All;
        }
    }

    public void Dispose()
    {
        foreach (var d in owned) d.Dispose();
        owned.Clear();
    }
}
