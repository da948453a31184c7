using System.Globalization;

namespace ArcherIlgpu.Cli;

/// <summary>
/// A file of token-id sequences, one per line, ids separated by whitespace, every line the same length
/// (blank lines are skipped). Each line of n ids is one training row: ids 2..n are predicted from the ones before.
/// </summary>
public static class TokenFile
{
    /// <summary>Reads and checks the rows: every id in [0, vocabSize), at least 2 and at most maxT + 1 ids per line
    /// (n ids give n - 1 input positions, which must fit the context). Errors name the file, line and value.</summary>
    public static int[][] Read(string path, int vocabSize, int maxT)
    {
        if (!File.Exists(path)) throw new CliInputException($"token file '{path}' not found");
        var rows = new List<int[]>();
        int firstLine = 0, lineNo = 0;
        foreach (var line in File.ReadLines(path))
        {
            lineNo++;
            var fields = line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
            if (fields.Length == 0) continue;
            var row = new int[fields.Length];
            for (int i = 0; i < fields.Length; i++)
            {
                if (!int.TryParse(fields[i], NumberStyles.Integer, CultureInfo.InvariantCulture, out row[i]))
                    throw new CliInputException($"{path}:{lineNo}: token {i + 1} is '{fields[i]}', not an integer token id");
                if ((uint)row[i] >= (uint)vocabSize)
                    throw new CliInputException($"{path}:{lineNo}: token {i + 1} is {row[i]}, outside the model's vocabulary: expected an id in [0, {vocabSize - 1}]");
            }
            if (row.Length < 2)
                throw new CliInputException($"{path}:{lineNo}: {row.Length} token; a line needs at least 2 (the first predicts the second)");
            if (row.Length > maxT + 1)
                throw new CliInputException($"{path}:{lineNo}: {row.Length} tokens is longer than the model's context: expected 2 to {maxT + 1} tokens (n tokens use n - 1 positions of the context length {maxT})");
            if (rows.Count == 0) firstLine = lineNo;
            else if (row.Length != rows[0].Length)
                throw new CliInputException($"{path}:{lineNo}: {row.Length} tokens, but line {firstLine} has {rows[0].Length}; every line must have the same number of tokens");
            rows.Add(row);
        }
        if (rows.Count == 0) throw new CliInputException($"{path}: no token lines (the file is empty or blank)");
        return rows.ToArray();
    }
}
