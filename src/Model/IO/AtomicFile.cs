using System.Text;

namespace ArcherIlgpu.Model.IO;

/// <summary>
/// Writes a file so that a crash leaves either the old content or the new, never half of it: the data goes
/// to <c>path + ".tmp"</c>, is flushed to the disk, and the temporary file is then renamed over the target.
/// </summary>
public static class AtomicFile
{
    public static void WriteAllText(string path, string text) =>
        WriteAllBytes(path, new UTF8Encoding(encoderShouldEmitUTF8Identifier: false).GetBytes(text));

    public static void WriteAllBytes(string path, byte[] bytes) => Write(path, s => s.Write(bytes));

    /// <summary>Calls <paramref name="writeContent"/> on a stream over the temporary file, then renames it
    /// over <paramref name="path"/>. If writing throws, the temporary file is removed and the target is untouched.</summary>
    public static void Write(string path, Action<Stream> writeContent)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        string full = Path.GetFullPath(path);
        string? dir = Path.GetDirectoryName(full);
        if (!string.IsNullOrEmpty(dir)) Directory.CreateDirectory(dir);
        string tmp = full + ".tmp";
        try
        {
            using (var stream = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16))
            {
                writeContent(stream);
                // Without the flush to disk, a power cut after the rename can leave an empty file under the
                // final name on some file systems.
                stream.Flush(flushToDisk: true);
            }
            File.Move(tmp, full, overwrite: true);
        }
        catch
        {
            TryDelete(tmp);
            throw;
        }
    }

    private static void TryDelete(string tmp)
    {
        try { File.Delete(tmp); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}
