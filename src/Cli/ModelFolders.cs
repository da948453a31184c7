using ArcherIlgpu.Runs;

namespace ArcherIlgpu.Cli;

/// <summary>
/// What <c>--model</c> (and train-sft's <c>--init</c>) may name: a model folder (config.json beside the
/// weights), or a run folder (run.json, or a checkpoints/ folder), which stands for its newest complete
/// checkpoint, <c>checkpoints/step-NNNNNN/</c>. A train-rl run folder from before checkpoints/ (its
/// model in <c>model/</c>) stands for that folder.
/// </summary>
public static class ModelFolders
{
    const string LegacyModelFolder = "model";

    /// <summary>The model folder <paramref name="path"/> stands for; a clear error when it is neither kind of folder.</summary>
    public static string Resolve(string path)
    {
        if (!Directory.Exists(path))
            throw new CliInputException($"model folder '{path}' not found (expected a model folder with config.json, or a run folder with checkpoints/)");
        // A run folder's own config.json holds the run's settings, not a model's: look for the marker first.
        bool isRun = File.Exists(Path.Combine(path, RunFolder.MarkerFile)) || Directory.Exists(Path.Combine(path, "checkpoints"));
        if (!isRun && File.Exists(Path.Combine(path, "config.json"))) return path;

        if (new CheckpointStore(path).Latest() is { } newest) return Path.Combine(path, "checkpoints", Path.GetFileName(newest.Path));
        string legacy = Path.Combine(path, LegacyModelFolder);
        if (File.Exists(Path.Combine(legacy, "config.json"))) return legacy;
        if (isRun)
            throw new CliInputException($"'{path}' is a run folder without a complete checkpoint yet (checkpoints/step-NNNNNN/); wait for the first save, or resume the run");
        throw new CliInputException($"'{path}' has no config.json and no checkpoints/: expected a model folder (config.json, model.safetensors, a tokenizer) or a run folder");
    }
}
