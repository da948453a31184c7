using System.Globalization;
using ArcherIlgpu.Kernels;
using ArcherIlgpu.Model.Gpt2;
using ArcherIlgpu.Model.Llama;

namespace ArcherIlgpu.Model;

/// <summary>
/// A size from the settings that cannot be allocated: it overflows, exceeds what one buffer can hold, or
/// needs more memory than the machine has. The message names the settings and what was expected.
/// </summary>
public sealed class SizeLimitException(string message) : Exception(message);

/// <summary>
/// The memory a job will need, worked out from the model's config and the job's sizes before anything is
/// allocated, part by part, so that a job that cannot fit is refused with the estimate instead of
/// hanging, swapping or dying with OutOfMemoryException half-way. The sizes mirror the buffers that
/// <see cref="Activations"/> (and each family's subclass), <see cref="Generation.KvCache"/>,
/// <see cref="CausalLm"/> and the AdamW optimizer allocate; a test holds them to the bytes a backend
/// actually allocated. Every size is computed in checked 64-bit arithmetic: an overflow is a
/// <see cref="SizeLimitException"/> naming <see cref="Settings"/>.
/// </summary>
public sealed class MemoryEstimate
{
    /// <summary>One named part; Host parts live in host memory even when the model runs on a GPU.</summary>
    public readonly record struct Part(string Name, long Bytes, bool Host);

    /// <summary>The most elements one buffer holds (a .NET array on the cpu backend; kernels index with 32-bit ints).</summary>
    public static readonly long MaxBufferElements = Array.MaxLength;

    readonly List<Part> parts = [];

    /// <param name="settings">the settings that set the sizes, as the user wrote them (e.g. "--batch-size 32"): errors name them.</param>
    public MemoryEstimate(string settings) => Settings = settings;

    public string Settings { get; }
    public IReadOnlyList<Part> Parts => parts;
    public long DeviceBytes => Sum(host: false);
    public long HostBytes => Sum(host: true);
    public long TotalBytes => checked(DeviceBytes + HostBytes);

    long Sum(bool host)
    {
        long sum = 0;
        foreach (var p in parts) if (p.Host == host) sum = Checked(() => checked(sum + p.Bytes));
        return sum;
    }

    /// <summary>Adds a part of <paramref name="bytes"/> bytes (computed by the caller in checked arithmetic).</summary>
    public MemoryEstimate Add(string name, Func<long> bytes, bool host = false)
    {
        parts.Add(new Part(name, Checked(bytes), host));
        return this;
    }

    // ================================================================ the model's buffers

    /// <summary>The parameters; with <paramref name="optimizer"/> (a model that is trained), their gradients and AdamW's two
    /// moments too (a model only run forward never allocates a gradient buffer).</summary>
    public MemoryEstimate Model(IModelConfig c, bool optimizer, string? name = null)
    {
        long p = c.ParameterCount;
        Add(name ?? (optimizer ? "parameters and gradients" : "parameters"), () => checked((optimizer ? 2 : 1) * Floats(p, "the parameters")));
        return optimizer ? Add("AdamW moments", () => checked(2 * Floats(p, "the parameters"))) : this;
    }

    /// <summary>The training activations for (B, T): every layer's saved forward values, the gradient scratch and the logits [B·T, V].</summary>
    public MemoryEstimate Training(IModelConfig c, long B, long T, string name = "training activations") =>
        ActivationParts(c, B, T, withGradients: true, name);

    /// <summary>
    /// What the KV-cached generator allocates for <paramref name="rows"/> sequences with prompts of up to
    /// <paramref name="promptT"/> tokens: the prefill's activations, one decoding step's, and the cache.
    /// </summary>
    public MemoryEstimate Generation(IModelConfig c, long rows, long promptT)
    {
        ActivationParts(c, rows, promptT, withGradients: false, "prefill activations");
        ActivationParts(c, rows, 1, withGradients: false, "decoding activations");
        long kvWidth = c switch { LlamaConfig l => (long)l.KvHeads * l.HeadSize, _ => c.Channels };
        return Add("KV cache", () => checked(2 * c.Layers * Floats(checked(rows * c.MaxT * kvWidth), "the KV cache")));
    }

    MemoryEstimate ActivationParts(IModelConfig c, long B, long T, bool withGradients, string name)
    {
        long N = Checked(() => checked(B * T));
        if (N > int.MaxValue)
            throw new SizeLimitException($"{Settings}: {B:N0} sequences × {T:N0} positions = {N:N0} positions in one pass; at most {int.MaxValue:N0} fit");
        Add($"{name}: logits [{B}×{T}, {c.VocabSize}]", () => Floats(checked(N * c.VocabSize), "the logits"));
        Add(name, () => checked(LayerFloats(c, B, T, withGradients) * sizeof(float)));
        // Every family's base: 3 int and 5 float per-position buffers, the final norm [N, C]; host scratch 2 floats per position.
        Add($"{name}: per-position buffers", () => checked((8 + (long)c.Channels) * N * sizeof(float)));
        return Add($"{name}: host scratch", () => checked(2 * N * sizeof(float)), host: true);
    }

    /// <summary>The float elements a family's activations add to the shared ones (mirrors Gpt2Activations / LlamaActivations).</summary>
    static long LayerFloats(IModelConfig config, long B, long T, bool withGradients)
    {
        long N = checked(B * T), C = config.Channels, L = config.Layers;
        checked
        {
            switch (config)
            {
                case Gpt2Config g:
                {
                    long perLayer = 18 * N * C + 4 * N + N * g.Heads;      // ln1, qkv, att, proj, ln2, fc, gelu, ...; lse [B, H, T]
                    long grads = withGradients ? 14 * N * C : 0;           // dResidual, dLn, dQkv, dAtt, dFc, dFcGelu
                    return N * C + L * perLayer + 2 * N + grads;           // encoded, blocks, ln_f statistics
                }
                case LlamaConfig l:
                {
                    long W = l.QkvWidth, HD = (long)l.Heads * l.HeadSize, I = l.Intermediate;
                    long qkNorm = l.QkNorm ? N * W + N * (l.Heads + l.KvHeads) : 0;
                    long perLayer = 6 * N * C + 2 * N + N * W + qkNorm + N * HD + N * l.Heads + 3 * N * I;
                    long grads = withGradients ? 2 * N * C + N * W * (l.QkNorm ? 2 : 1) + N * HD + 3 * N * I : 0;
                    return N * C + L * perLayer + N + grads;               // embedded, blocks, final norm statistics
                }
                default: throw new ArgumentException($"no memory estimate for model type '{config.ModelType}'");
            }
        }
    }

    /// <summary>Bytes of one float buffer of <paramref name="count"/> elements, refused if one buffer cannot hold it.</summary>
    long Floats(long count, string what)
    {
        if (count > MaxBufferElements)
            throw new SizeLimitException($"{Settings}: {what} would need {count:N0} elements in one buffer; at most {MaxBufferElements:N0} fit");
        return checked(count * sizeof(float));
    }

    long Checked(Func<long> size)
    {
        try { return size(); }
        catch (OverflowException) { throw new SizeLimitException($"{Settings}: the sizes overflow a 64-bit count of bytes; use smaller values"); }
    }

    // ================================================================ the check

    /// <summary>Refuses (with <see cref="SizeLimitException"/>) an estimate that does not fit <paramref name="backend"/>'s memory.</summary>
    public void RequireFits(Backend backend) => RequireFits(backend.Name, backend.BuffersInHostMemory, backend.MemoryCapacity);

    /// <summary>
    /// Refuses an estimate that does not fit device <paramref name="device"/>: with <paramref name="hostMemory"/>
    /// every part against <paramref name="capacityBytes"/> (the host's), else the device parts against
    /// it and the host parts against <see cref="HostMemory"/>.
    /// </summary>
    public void RequireFits(string device, bool hostMemory, long capacityBytes)
    {
        if (hostMemory)
            RequireFits(TotalBytes, capacityBytes, $"memory on {device}", parts);
        else
        {
            RequireFits(DeviceBytes, capacityBytes, $"{device} device memory", parts.Where(p => !p.Host));
            RequireFits(HostBytes, HostMemory(), "host memory", parts.Where(p => p.Host));
        }
    }

    /// <summary>The memory this process may use: physical memory, or the container's limit.</summary>
    public static long HostMemory() => GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;

    void RequireFits(long needed, long available, string where, IEnumerable<Part> of)
    {
        if (needed <= available) return;
        var largest = of.OrderByDescending(p => p.Bytes).Take(3).Select(p => $"{p.Name} {Format(p.Bytes)}");
        throw new SizeLimitException($"{Settings} needs about {Format(needed)} of {where} ({string.Join(", ", largest)}), " +
                                     $"but {Format(available)} is available; use smaller values");
    }

    /// <summary>Bytes for people: "1.5 GiB", "320 MiB", "12 KiB".</summary>
    public static string Format(long bytes)
    {
        string[] units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
        double v = bytes;
        int u = 0;
        while (v >= 1024 && u < units.Length - 1) { v /= 1024; u++; }
        return string.Create(CultureInfo.InvariantCulture, $"{v:0.#} {units[u]}");
    }

    public override string ToString() =>
        $"{Settings}: {Format(TotalBytes)} ({string.Join(", ", parts.Select(p => $"{p.Name} {Format(p.Bytes)}{(p.Host ? " host" : "")}"))})";
}
