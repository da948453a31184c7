namespace ArcherIlgpu.Model.Tokenizers;

/// <summary>Turns text into token ids and back. Implementations are immutable and safe to share between threads.</summary>
public interface ITokenizer
{
    /// <summary>Number of ids the model's embedding must have rows for (largest id + 1).</summary>
    int VocabSize { get; }

    /// <summary>Id of the end-of-text token: generation stops on it and documents are separated by it.</summary>
    int EndOfText { get; }

    IReadOnlyList<int> Encode(string text);

    string Decode(IEnumerable<int> ids);

    /// <summary>"char", "gpt2-bpe" or "hf-bpe"; stored in checkpoints so the right tokenizer is rebuilt.</summary>
    string Name { get; }
}
