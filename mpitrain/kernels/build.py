"""Compile csrc/ into the two shared libraries the kernels' Python face loads with ctypes.

    python -m mpitrain.kernels.build            (make install runs it; it skips what is current)
    python -m mpitrain.kernels.build --force

- libmpitrain_cpu.so: the C kernels with OpenMP, built wherever a C compiler is (CC, else cc).
- libmpitrain_cuda.so: the CUDA kernels for sm_90 (H100/H200; MPITRAIN_CUDA_ARCH=90 changes
  it), built wherever nvcc is (NVCC, else PATH, else /usr/local/cuda/bin). The CUDA runtime is
  linked statically, so the library needs only the driver at run time and serves torch and
  CuPy alike: no torch headers, no torch C++ ABI.
- libmpitrain_mpi.so: the small-message all-reduce in C (csrc/mpi_small.c) on MPI point-to-point
  calls, built with the mpicc of the MPI that mpi4py uses (MPICC, else mpicc beside this
  Python, else PATH); without one the Python algorithm runs instead.
A library that cannot be built is reported and skipped; the Python face then falls back to
numpy / torch and says so.
"""
import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CSRC = ROOT / "csrc"
LIB_DIR = Path(__file__).resolve().parent / "_lib"
CPU_LIB = LIB_DIR / "libmpitrain_cpu.so"
CUDA_LIB = LIB_DIR / "libmpitrain_cuda.so"
MPI_LIB = LIB_DIR / "libmpitrain_mpi.so"
MPI_SOURCES = ["mpi_small.c", "cpu_reduce.c", "error.c"]
CPU_SOURCES = ["error.c", "cpu_reduce.c", "cpu_pack.c", "cpu_quantize.c"]
CUDA_SOURCES = ["cuda_reduce.cu", "cuda_pack.cu", "cuda_quantize.cu", "cuda_ipc.cu", "cuda_peer.cu",
                "cuda_peer_ce.cu"]
HEADERS = ["mt_common.h", "cpu_convert.h", "cuda_common.cuh", "cuda_peer.cuh", "quantize_format.h"]
# -ffp-contract=off: no fused multiply-add, so results match the numpy reference bit for bit.
C_FLAGS = ["-O3", "-ffp-contract=off", "-fopenmp", "-fPIC", "-shared", "-fvisibility=hidden",
           "-Wall", "-std=gnu11"]


def find_nvcc():
    for candidate in (os.environ.get("NVCC"), shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc"):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def up_to_date(lib, sources):
    if not lib.exists():
        return False
    newest = max((CSRC / s).stat().st_mtime for s in sources + HEADERS)
    return lib.stat().st_mtime >= max(newest, Path(__file__).stat().st_mtime)


def run(cmd):
    print("  " + " ".join(str(c) for c in cmd), flush=True)
    return subprocess.run([str(c) for c in cmd], cwd=CSRC).returncode == 0


def build_host_library(compiler, lib, sources, force):
    """Compile `sources` into `lib` with the C flags; True when built or already current."""
    if not force and up_to_date(lib, sources):
        print(f"kernels: {lib.name} is up to date")
        return True
    tmp = lib.with_suffix(".so.tmp")
    # -march=native: the library is built on the machine that runs it; retry without if refused.
    for arch in (["-march=native"], []):
        if run([compiler, *C_FLAGS, *arch, *sources, "-lm", "-o", tmp]):
            tmp.replace(lib)          # atomic: a half-written library is never loaded
            print(f"kernels: built {lib} ({compiler})")
            return True
    return False


def build_cpu(force):
    if build_host_library(os.environ.get("CC", "cc"), CPU_LIB, CPU_SOURCES, force):
        return True
    print("kernels: could not build the C kernels; numpy will do the reductions", file=sys.stderr)
    return False


def find_mpicc():
    beside_python = Path(sys.executable).parent / "mpicc"
    for candidate in (os.environ.get("MPICC"), str(beside_python), shutil.which("mpicc")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def build_mpi(force):
    """Optional: without it the Python recursive doubling runs (the same steps, slower)."""
    mpicc = find_mpicc()
    if mpicc is None:
        print("kernels: no mpicc found; the small-message all-reduce runs in Python")
    elif not build_host_library(mpicc, MPI_LIB, MPI_SOURCES, force):
        print("kernels: mpicc failed; the small-message all-reduce runs in Python", file=sys.stderr)
    return True


def build_cuda(force):
    nvcc = find_nvcc()
    if nvcc is None:
        print("kernels: no nvcc found; the CUDA kernels are not built (torch will stand in)")
        return True
    if not force and up_to_date(CUDA_LIB, CUDA_SOURCES):
        print(f"kernels: {CUDA_LIB.name} is up to date")
        return True
    arch = os.environ.get("MPITRAIN_CUDA_ARCH", "90")
    error_obj = LIB_DIR / "error_cuda.o"
    tmp = CUDA_LIB.with_suffix(".so.tmp")
    ok = run([os.environ.get("CC", "cc"), "-O2", "-fPIC", "-fvisibility=hidden", "-c", "error.c",
              "-o", error_obj]) and run(
        [nvcc, "-O3", "-std=c++17", "-shared", f"-gencode=arch=compute_{arch},code=sm_{arch}",
         f"-gencode=arch=compute_{arch},code=compute_{arch}", "-cudart=static",
         "-Xcompiler", "-fPIC,-fvisibility=hidden", *CUDA_SOURCES, error_obj, "-o", tmp])
    error_obj.unlink(missing_ok=True)
    if ok:
        tmp.replace(CUDA_LIB)
        print(f"kernels: built {CUDA_LIB} (sm_{arch})")
    else:
        print("kernels: nvcc failed; the CUDA kernels are not built", file=sys.stderr)
    return ok


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    parser.add_argument("--cpu-only", action="store_true", help="skip the CUDA library")
    args = parser.parse_args(argv)
    LIB_DIR.mkdir(exist_ok=True)
    ok = build_cpu(args.force)
    ok = build_mpi(args.force) and ok
    if not args.cpu_only:
        ok = build_cuda(args.force) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
