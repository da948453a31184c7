using System.Runtime.InteropServices;

namespace ArcherIlgpu.Distributed;

/// <summary>
/// The few MPI calls data-parallel training needs, bound by P/Invoke to OpenMPI's libmpi.so.40.
/// Why not MPI.NET (NuGet 1.4.0): its MPI.dll imports "msmpi.dll" and treats handles as MS-MPI's
/// integers; OpenMPI's handles are pointers to exported objects (MPI_COMM_WORLD is
/// <c>&amp;ompi_mpi_comm_world</c>), so it cannot run against OpenMPI on Linux. Those objects' addresses
/// are taken with <see cref="NativeLibrary.GetExport"/>. The library is opened with RTLD_GLOBAL because
/// OpenMPI's plugins resolve libmpi's symbols from the global namespace. Nothing here is touched by a
/// single-process run, so that needs no MPI installed.
/// </summary>
sealed unsafe class Mpi
{
    const string LibraryName = "libmpi.so.40";
    const int ThreadFunneled = 1;   // MPI_THREAD_FUNNELED: only the main thread calls MPI
    const int Success = 0;

    readonly delegate* unmanaged<int*, byte***, int, int*, int> initThread;
    readonly delegate* unmanaged<nint, int*, int> commRank, commSize;
    readonly delegate* unmanaged<void*, int, nint, void*, int, nint, nint, int> allgather;
    readonly delegate* unmanaged<void*, int, nint, int, nint, int> bcast;
    readonly delegate* unmanaged<nint, int> barrier;
    readonly delegate* unmanaged<nint, int, int> abort;
    readonly delegate* unmanaged<int> finalize;
    readonly nint world, mpiFloat, mpiDouble;

    public int Rank { get; }
    public int Size { get; }

    Mpi(nint lib)
    {
        nint F(string name) => NativeLibrary.GetExport(lib, name);
        initThread = (delegate* unmanaged<int*, byte***, int, int*, int>)F("MPI_Init_thread");
        commRank = (delegate* unmanaged<nint, int*, int>)F("MPI_Comm_rank");
        commSize = (delegate* unmanaged<nint, int*, int>)F("MPI_Comm_size");
        allgather = (delegate* unmanaged<void*, int, nint, void*, int, nint, nint, int>)F("MPI_Allgather");
        bcast = (delegate* unmanaged<void*, int, nint, int, nint, int>)F("MPI_Bcast");
        barrier = (delegate* unmanaged<nint, int>)F("MPI_Barrier");
        abort = (delegate* unmanaged<nint, int, int>)F("MPI_Abort");
        finalize = (delegate* unmanaged<int>)F("MPI_Finalize");
        world = F("ompi_mpi_comm_world");
        mpiFloat = F("ompi_mpi_float");
        mpiDouble = F("ompi_mpi_double");
        int provided, rank, size;
        Check(initThread(null, null, ThreadFunneled, &provided), "MPI_Init_thread");
        Check(commRank(world, &rank), "MPI_Comm_rank");
        Check(commSize(world, &size), "MPI_Comm_size");
        Rank = rank; Size = size;
    }

    /// <summary>Opens libmpi and initialises MPI; a clear error when the library is not there.</summary>
    public static Mpi Open()
    {
        nint lib = dlopen(LibraryName, RtldNow | RtldGlobal);
        if (lib == 0)
            throw new InvalidOperationException($"launched under mpirun but {LibraryName} (OpenMPI 4) cannot be loaded: {Marshal.PtrToStringUTF8(dlerror())}; install OpenMPI (Debian: apt-get install openmpi-bin)");
        return new Mpi(lib);
    }

    /// <summary>Every rank's <paramref name="send"/> laid end to end in rank order, into <paramref name="receive"/> (Size × send.Length).</summary>
    public void Allgather(ReadOnlySpan<float> send, Span<float> receive) => Gather(send, receive, mpiFloat);
    public void Allgather(ReadOnlySpan<double> send, Span<double> receive) => Gather(send, receive, mpiDouble);

    void Gather<T>(ReadOnlySpan<T> send, Span<T> receive, nint type) where T : unmanaged
    {
        if (receive.Length != send.Length * Size) throw new ArgumentException($"Allgather needs {send.Length * Size} receive elements, got {receive.Length}");
        fixed (T* s = send)
        fixed (T* r = receive)
            Check(allgather(s, send.Length, type, r, send.Length, type, world), "MPI_Allgather");
    }

    /// <summary>Rank <paramref name="root"/>'s bytes into every rank's <paramref name="buffer"/>.</summary>
    public void Broadcast(Span<double> buffer, int root)
    {
        fixed (double* b = buffer) Check(bcast(b, buffer.Length, mpiDouble, root, world), "MPI_Bcast");
    }

    public void Barrier() => Check(barrier(world), "MPI_Barrier");

    /// <summary>Ends every rank of the job (OpenMPI's mpirun kills the others and reports the code).</summary>
    public void Abort(int code) => abort(world, code);

    public void Close() => Check(finalize(), "MPI_Finalize");

    // OpenMPI's default error handler (MPI_ERRORS_ARE_FATAL) aborts before a call returns an error; this is a second line.
    static void Check(int code, string call)
    {
        if (code != Success) throw new InvalidOperationException($"{call} failed with MPI error {code}");
    }

    const int RtldNow = 2, RtldGlobal = 0x100;
    [DllImport("libc.so.6", EntryPoint = "dlopen")] static extern nint dlopen(string file, int mode);
    [DllImport("libc.so.6", EntryPoint = "dlerror")] static extern nint dlerror();
}
