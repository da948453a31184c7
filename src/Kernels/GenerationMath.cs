namespace ArcherIlgpu.Kernels;

/// <summary>
/// One row's bookkeeping in device-side generation (<see cref="Backend.RecordSamples"/>), shared by the
/// managed loop and the ILGPU kernel so both keep a row's state by the same rule.
/// </summary>
public static class GenerationMath
{
    /// <summary>Row status codes: still sampling; stopped at the token or context limit; stopped by the end token; no finite logit (the model diverged).</summary>
    public const int Running = 0, Finished = 1, Ended = 2, NoFiniteLogit = 3;

    /// <summary>
    /// Takes a row's newly drawn token: returns the slot it is stored in (its index among the row's new
    /// tokens), or −1 when the row was already done or the draw failed (token &lt; 0). A running row grows
    /// by one token and stops on the end token (endToken &lt; 0: none), at maxNew new tokens, or when its
    /// length reaches the context maxT.
    /// </summary>
    public static int Advance(int token, int maxNew, int maxT, int endToken, ref int status, ref int count, ref int length)
    {
        if (status != Running) return -1;
        if (token < 0) { status = NoFiniteLogit; return -1; }
        int slot = count;
        count++; length++;
        if (token == endToken) status = Ended;
        else if (count >= maxNew || length >= maxT) status = Finished;
        return slot;
    }

    /// <summary>Where a row of this length feeds its newest token (clamped: a done row repeats an in-range step).</summary>
    public static int DecodePosition(int length, int maxT) => Math.Min(length - 1, maxT - 1);

    /// <summary>The position the next draw of a row of this length lands at: the sampler's RNG counter.</summary>
    public static int SamplePosition(int length, int maxT) => Math.Min(length, maxT - 1);
}
