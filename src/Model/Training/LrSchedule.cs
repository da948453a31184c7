namespace ArcherIlgpu.Model.Training;

/// <summary>
/// Learning rate per step (0-based): linear warm-up from PeakLr / WarmupSteps to PeakLr over
/// WarmupSteps, then either constant or a cosine decay to MinLrFraction * PeakLr at TotalSteps.
/// </summary>
public sealed record LrSchedule(float PeakLr, int WarmupSteps = 0, int TotalSteps = 1000, string Kind = "cosine", float MinLrFraction = 0.1f)
{
    public static readonly string[] Kinds = ["cosine", "constant"];

    public LrSchedule Validate()
    {
        if (!(PeakLr > 0) || float.IsInfinity(PeakLr)) throw new ArgumentException($"learning rate must be positive and finite, got {PeakLr}");
        if (WarmupSteps < 0) throw new ArgumentException($"warm-up steps must be >= 0, got {WarmupSteps}");
        if (TotalSteps < 1) throw new ArgumentException($"total steps must be >= 1, got {TotalSteps}");
        if (!Kinds.Contains(Kind)) throw new ArgumentException($"unknown LR schedule '{Kind}'; valid: {string.Join(", ", Kinds)}");
        if (!(MinLrFraction >= 0 && MinLrFraction <= 1)) throw new ArgumentException($"MinLrFraction must be in [0, 1], got {MinLrFraction}");
        return this;
    }

    public float At(int step)
    {
        if (step < WarmupSteps) return PeakLr * (step + 1) / WarmupSteps;
        if (Kind == "constant") return PeakLr;
        int decaySteps = Math.Max(1, TotalSteps - WarmupSteps);
        double progress = Math.Clamp((double)(step - WarmupSteps) / decaySteps, 0, 1);
        double min = PeakLr * MinLrFraction;
        return (float)(min + 0.5 * (PeakLr - min) * (1 + Math.Cos(Math.PI * progress)));
    }
}
