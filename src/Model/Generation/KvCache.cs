using ArcherIlgpu.Kernels;
using ArcherIlgpu.Model.Gpt2;

namespace ArcherIlgpu.Model.Generation;

/// <summary>Keys and values of every layer for B sequences: K[l], V[l] are [B, H, MaxT, D].</summary>
public sealed class KvCache : IDisposable
{
    public int B { get; }
    public int MaxT { get; }
    public Buf<float>[] K { get; }
    public Buf<float>[] V { get; }
    readonly List<DeviceBuffer<float>> owned = [];

    public KvCache(Backend backend, Gpt2Config config, int B)
    {
        this.B = B; MaxT = config.MaxT;
        long size = (long)B * config.MaxT * config.Channels; // H * D = C
        K = new Buf<float>[config.Layers];
        V = new Buf<float>[config.Layers];
        for (int l = 0; l < config.Layers; l++)
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
