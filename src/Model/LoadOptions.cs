namespace ArcherIlgpu.Model;

/// <summary>How a model folder's tensors must match its <c>config.json</c> (see <see cref="FileWeights"/>).</summary>
/// <param name="AllowExtraTensors">load a folder whose weights also hold tensors the config's architecture has no
/// place for, ignoring them. Off by default: such tensors usually mean that config.json does not describe the
/// weights (a smaller n_layer than the file has, an extra head), and the model would answer garbage.</param>
public sealed record LoadOptions(bool AllowExtraTensors = false)
{
    /// <summary>Every tensor of the file must be one of the model's.</summary>
    public static LoadOptions Strict { get; } = new();
}
