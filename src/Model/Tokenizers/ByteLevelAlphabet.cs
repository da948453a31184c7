namespace ArcherIlgpu.Model.Tokenizers;

/// <summary>
/// GPT-2 spells every byte with one printable character so that BPE tokens are ordinary strings: the bytes
/// that are already visible Latin-1 characters ('!'..'~', '¡'..'¬', '®'..'ÿ') stand for themselves and the
/// other 68 bytes (controls, space, DEL, NBSP, soft hyphen) take U+0100, U+0101, ... in byte order — so a
/// space is 'Ġ' (U+0120) and a newline 'Ċ' (U+010A).
/// </summary>
internal static class ByteLevelAlphabet
{
    private static readonly char[] CharOfByteTable = BuildTable();
    private static readonly Dictionary<char, byte> ByteOfChar =
        Enumerable.Range(0, 256).ToDictionary(b => CharOfByteTable[b], b => (byte)b);

    public static char CharOfByte(byte b) => CharOfByteTable[b];

    /// <summary>The bytes a token spells, or null if a character of it is not in the byte alphabet.</summary>
    public static byte[]? TryToBytes(string token)
    {
        var bytes = new byte[token.Length];
        for (int i = 0; i < token.Length; i++)
        {
            if (!ByteOfChar.TryGetValue(token[i], out bytes[i])) return null;
        }
        return bytes;
    }

    private static bool StandsForItself(int b) => b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;

    private static char[] BuildTable()
    {
        var table = new char[256];
        int next = 256;
        for (int b = 0; b < 256; b++) table[b] = StandsForItself(b) ? (char)b : (char)next++;
        return table;
    }
}
