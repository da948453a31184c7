namespace ArcherIlgpu.Rl.Losses;

/// <summary>
/// AR-Lopti (Yang et al., arXiv 2505.12929): advantage reweighting by the old probability of the token and
/// low-probability token isolation. Spans are [rows, T]; a token counts iff mask &gt; 0.
/// </summary>
public static class ArLopti
{
    /// <summary>A'_t = (α·π_old(o_t) + 1 − α)·A_t with π_old = exp(ℓ_old); 0 where masked. Output may alias the input.</summary>
    public static void ReweightAdvantages(ReadOnlySpan<float> advantages, ReadOnlySpan<float> oldLogProbs, ReadOnlySpan<float> mask,
        float alpha, Span<float> reweighted)
    {
        if (oldLogProbs.Length != advantages.Length || mask.Length != advantages.Length || reweighted.Length != advantages.Length)
            throw new ArgumentException("advantages, oldLogProbs, mask and output must have the same length");
        if (!(alpha >= 0 && alpha <= 1)) throw new ArgumentOutOfRangeException(nameof(alpha), alpha, "α must be in [0, 1]");
        for (int t = 0; t < advantages.Length; t++)
            reweighted[t] = mask[t] > 0 ? (alpha * MathF.Exp(oldLogProbs[t]) + 1f - alpha) * advantages[t] : 0f;
    }

    /// <summary>
    /// Lopti's split: lowMask = mask where π_old &lt; η, highMask = mask elsewhere (both OVERWRITTEN).
    /// The first update uses lowMask, the second highMask. Returns the number of low-probability tokens.
    /// </summary>
    public static int SplitLowProbability(ReadOnlySpan<float> oldLogProbs, ReadOnlySpan<float> mask, float eta,
        Span<float> lowMask, Span<float> highMask)
    {
        if (mask.Length != oldLogProbs.Length || lowMask.Length != mask.Length || highMask.Length != mask.Length)
            throw new ArgumentException("oldLogProbs, mask and both outputs must have the same length");
        if (!(eta > 0 && eta <= 1)) throw new ArgumentOutOfRangeException(nameof(eta), eta, "η must be in (0, 1]");
        // Compare in log space: exp(ℓ) < η  ⇔  ℓ < ln η, with no rounding of exp near η.
        float logEta = MathF.Log(eta);
        int low = 0;
        for (int t = 0; t < mask.Length; t++)
        {
            bool valid = mask[t] > 0;
            bool isLow = valid && oldLogProbs[t] < logEta;
            lowMask[t] = isLow ? mask[t] : 0f;
            highMask[t] = valid && !isLow ? mask[t] : 0f;
            if (isLow) low++;
        }
        return low;
    }
}
