"""Does the MPI library under mpi4py take GPU pointers (is it CUDA-aware)? Asked of the library.

Open MPI answers MPIX_Query_cuda_support() (1 when it was built with CUDA and supports it now),
MPICH answers MPIX_GPU_query_support(MPIX_GPU_SUPPORT_CUDA, &flag); Intel MPI offers both (yes
only with I_MPI_OFFLOAD=1). A yes to either counts. Both live in the libmpi that
mpi4py loaded; it is found in this process's memory map, since mpi4py opens it privately.
The GPU transport takes device pointers to MPI (transport/cuda_mpi.py) only when every rank's
library answers yes; `python -m mpitrain.comm.info` reports the answer.
"""
import ctypes

MPIX_GPU_SUPPORT_CUDA = 0           # MPICH's mpi.h


def _library_version(path):
    """MPI_Get_library_version of the libmpi at `path` (callable before MPI_Init), or None."""
    try:
        fn = ctypes.CDLL(path).MPI_Get_library_version
    except (OSError, AttributeError):
        return None
    fn.restype, fn.argtypes = ctypes.c_int, [ctypes.c_char_p, ctypes.POINTER(ctypes.c_int)]
    text, length = ctypes.create_string_buffer(8192), ctypes.c_int(0)
    if fn(text, ctypes.byref(length)) != 0:
        return None
    return text.value.decode(errors="replace").strip("\x00 \n")


def loaded_libmpi():
    """The path of the libmpi mpi4py uses (mpi4py imported first), or None. A process may map
    more than one: the C small-message lane, built against another MPI than the one mpi4py
    loaded, brings its own. The one whose MPI_Get_library_version is mpi4py's is the one."""
    from mpi4py import MPI
    candidates = []
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split()[-1]
                if ("/libmpi.so" in path or "/libmpich.so" in path) and path not in candidates:
                    candidates.append(path)
    except OSError:
        return None
    if len(candidates) <= 1:
        return candidates[0] if candidates else None
    ours = MPI.Get_library_version().strip("\x00 \n")
    return next((p for p in candidates if _library_version(p) == ours), candidates[0])


def query():
    """(True | False | None, how it was found out)."""
    path = loaded_libmpi()
    if path is None:
        return None, "the MPI library could not be found in this process"
    lib = ctypes.CDLL(path)
    answers = []                    # (yes/no, which question): a library may offer both
    fn = getattr(lib, "MPIX_Query_cuda_support", None)
    if fn is not None:
        fn.restype, fn.argtypes = ctypes.c_int, []
        answers.append((bool(fn()), f"MPIX_Query_cuda_support() in {path}"))
    fn = getattr(lib, "MPIX_GPU_query_support", None)
    if fn is not None:
        fn.restype, fn.argtypes = ctypes.c_int, [ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
        flag = ctypes.c_int(0)
        if fn(MPIX_GPU_SUPPORT_CUDA, ctypes.byref(flag)) == 0:
            answers.append((bool(flag.value), f"MPIX_GPU_query_support(CUDA) in {path}"))
    if not answers:
        return None, f"{path} has no CUDA query (MPIX_Query_cuda_support, MPIX_GPU_query_support)"
    return next((a for a in answers if a[0]), answers[0])
