namespace ArcherIlgpu.Model.IO;

/// <summary>
/// A file or value from a user that cannot be read. The message names the file (and the tensor, key or
/// line inside it) and says what was expected, so a user can fix the input without a debugger.
/// </summary>
public sealed class ModelFormatException : Exception
{
    public ModelFormatException(string message, Exception? inner = null) : base(message, inner) { }
}
