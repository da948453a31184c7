using System.Collections.Concurrent;
using System.Text;

namespace ArcherIlgpu.Model.Tokenizers;

/// <summary>
/// The merge loop shared by every byte-level BPE here (GPT-2's files and Hugging Face's <c>tokenizer.json</c>):
/// a piece's UTF-8 bytes start as one-byte tokens and the pair of lowest rank is merged, every occurrence left to
/// right, until no listed pair is left. That is OpenAI's <c>encoder.py</c>; Hugging Face's priority-queue loop
/// gives the same result because a rank names one pair, so equal ranks are always non-overlapping copies of it.
/// </summary>
internal sealed class ByteLevelBpe
{
    // Longer pieces are rare and would only churn the cache.
    private const int MaxCachedPieceLength = 64;
    private const int MaxCacheEntries = 100_000;

    private readonly int[] _idOfByte;                                    // byte -> id of its one-byte token
    private readonly Dictionary<long, (int Rank, int Merged)> _merges;   // (left id, right id) -> rank, result id
    private readonly Dictionary<string, int>? _wholePieces;                // ignore_merges: vocabulary by byte-alphabet spelling
    private readonly ConcurrentDictionary<string, int[]> _cache = new(StringComparer.Ordinal);

    /// <param name="wholePieces">With Hugging Face's <c>ignore_merges</c> (Llama 3), the vocabulary: a piece whose
    /// byte-alphabet spelling is a token is that one token, whatever the merges would make of it.</param>
    public ByteLevelBpe(int[] idOfByte, Dictionary<long, (int Rank, int Merged)> merges, Dictionary<string, int>? wholePieces = null)
    {
        _wholePieces = wholePieces;
        if (idOfByte.Length != 256) throw new ArgumentException("A byte-level BPE needs an id for each of the 256 bytes.", nameof(idOfByte));
        _idOfByte = idOfByte;
        _merges = merges;
    }

    /// <summary>
    /// Joins the tokens' bytes and reads them as UTF-8; bytes that do not form valid UTF-8 (a character cut
    /// between tokens) become U+FFFD, as OpenAI's and Hugging Face's decoders do. An id without bytes fails
    /// naming its position and <paramref name="vocabulary"/>.
    /// </summary>
    public static string Decode(byte[]?[] bytesOfId, IEnumerable<int> ids, string vocabulary)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var bytes = new List<byte>();
        int position = 0;
        foreach (int id in ids)
        {
            byte[]? tokenBytes = (uint)id < (uint)bytesOfId.Length ? bytesOfId[id] : null;
            if (tokenBytes is null)
                throw new ArgumentException($"Token id {id} at position {position} is not in {vocabulary} (size {bytesOfId.Length}).", nameof(ids));
            bytes.AddRange(tokenBytes);
            position++;
        }
        return System.Text.Encoding.UTF8.GetString(bytes.ToArray());
    }

    public int MergeCount => _merges.Count;

    public static long PairKey(int left, int right) => ((long)left << 32) | (uint)right;

    public static Dictionary<long, (int Rank, int Merged)> NewMergeTable(int capacity) => new(capacity, PairComparer.Instance);

    /// <summary>The ids of one pre-tokenized piece of text (its UTF-8 bytes; a lone surrogate counts as U+FFFD).</summary>
    public int[] EncodeCached(ReadOnlySpan<char> piece)
    {
        if (piece.Length > MaxCachedPieceLength) return Encode(Encoding.UTF8.GetBytes(piece.ToArray()));
        string key = piece.ToString();
        if (_cache.TryGetValue(key, out int[]? cached)) return cached;
        int[] ids = Encode(Encoding.UTF8.GetBytes(key));
        if (_cache.Count >= MaxCacheEntries) _cache.Clear();
        _cache.TryAdd(key, ids);
        return ids;
    }

    public int[] Encode(ReadOnlySpan<byte> bytes)
    {
        if (_wholePieces is not null && _wholePieces.TryGetValue(Spell(bytes), out int whole)) return [whole];
        var word = new int[bytes.Length];
        for (int i = 0; i < bytes.Length; i++) word[i] = _idOfByte[bytes[i]];
        int length = word.Length;
        while (length >= 2)
        {
            int bestRank = int.MaxValue, left = 0, right = 0, merged = 0;
            for (int k = 0; k + 1 < length; k++)
            {
                if (_merges.TryGetValue(PairKey(word[k], word[k + 1]), out var m) && m.Rank < bestRank)
                    (bestRank, left, right, merged) = (m.Rank, word[k], word[k + 1], m.Merged);
            }
            if (bestRank == int.MaxValue) break;
            length = MergeAll(word, length, left, right, merged);
        }
        return length == word.Length ? word : word[..length];
    }

    private static string Spell(ReadOnlySpan<byte> bytes)
    {
        var chars = new char[bytes.Length];
        for (int i = 0; i < bytes.Length; i++) chars[i] = ByteLevelAlphabet.CharOfByte(bytes[i]);
        return new string(chars);
    }

    /// <summary>Replaces every non-overlapping (left, right) pair, scanning left to right, in place.</summary>
    private static int MergeAll(int[] word, int length, int left, int right, int merged)
    {
        int w = 0;
        for (int k = 0; k < length;)
        {
            if (k + 1 < length && word[k] == left && word[k + 1] == right)
            {
                word[w++] = merged;
                k += 2;
            }
            else
            {
                word[w++] = word[k++];
            }
        }
        return w;
    }

    /// <summary>long's own hash is <c>high ^ low</c>, i.e. <c>left ^ right</c> here, which piles thousands of merge
    /// pairs into the same buckets; a multiplicative hash spreads them.</summary>
    private sealed class PairComparer : IEqualityComparer<long>
    {
        public static readonly PairComparer Instance = new();
        public bool Equals(long x, long y) => x == y;
        public int GetHashCode(long key) => (int)((ulong)(key * unchecked((long)0x9E3779B97F4A7C15)) >> 32);
    }
}
