namespace ArcherIlgpu.Rl.Losses;

/// <summary>Which side of the threshold a token equal to it goes to.</summary>
public enum HighEntropyRule
{
    /// <summary>High iff H &gt; τ, ties go low (Archer's released code).</summary>
    Greater,
    /// <summary>High iff H ≥ τ (Archer paper Eq. 2–3; the 80/20 baseline).</summary>
    GreaterOrEqual,
}
