namespace ArcherIlgpu.Model;

/// <summary>What the trainer, the generator, the RL stack and the CLI need to know of any model family's config.</summary>
public interface IModelConfig
{
    /// <summary>Hugging Face's model_type: "gpt2", "llama", "qwen2" or "qwen3".</summary>
    string ModelType { get; }
    int VocabSize { get; }
    /// <summary>The context length: positions 0 .. MaxT-1.</summary>
    int MaxT { get; }
    int Layers { get; }
    /// <summary>C, the width of the residual stream (the head's input).</summary>
    int Channels { get; }
    /// <summary>Number of parameters (a tied head once), equal to the layout's total length; saturates instead of overflowing.</summary>
    long ParameterCount { get; }
    /// <summary>The same shape with another vocabulary size (a fresh model sized to a tokenizer).</summary>
    IModelConfig WithVocabSize(int vocabSize);
    /// <summary>Writes Hugging Face's <c>config.json</c> into a model folder (atomically).</summary>
    void Save(string modelDir);
}
