"""Compile csrc/ into the shared libraries the kernels' Python face loads with ctypes.

    python -m mpitrain.kernels.build            (make install and pip install run it; it skips
    python -m mpitrain.kernels.build --force     what is current)

- libmpitrain_cpu.so: the C kernels with OpenMP, built wherever a C compiler is (CC, else cc).
- libmpitrain_cuda.so: the CUDA kernels for sm_90 (H100/H200; MPITRAIN_CUDA_ARCH=90 changes
  it), built wherever nvcc is (NVCC, else PATH, else /usr/local/cuda/bin). The CUDA runtime is
  linked statically, so the library needs only the driver at run time and serves torch and
  CuPy alike: no torch headers, no torch C++ ABI.
- libmpitrain_mpi.so: the small-message all-reduce in C (csrc/mpi_small.c) on MPI point-to-point
  calls, built with the mpicc of the MPI that mpi4py uses (MPICC, else mpicc beside this
  Python, else PATH); without one the Python algorithm runs instead. A change of MPICC rebuilds it.
A library that cannot be built is reported and skipped; the Python face then falls back to
numpy / torch and says so. Sources and output directories: locations.py. A library missing at
first use is built into the cache directory by `build_at_first_use`, one process at a time.
"""
import argparse
import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

try:
    from . import locations
except ImportError:                    # loaded by its path from setup.py, outside the package
    import locations

CPU_LIB, CUDA_LIB, MPI_LIB = "libmpitrain_cpu.so", "libmpitrain_cuda.so", "libmpitrain_mpi.so"
MPI_SOURCES = ["mpi_small.c", "cpu_reduce.c", "error.c"]
CPU_SOURCES = ["error.c", "cpu_reduce.c", "cpu_pack.c", "cpu_quantize.c"]
CUDA_SOURCES = ["cuda_reduce.cu", "cuda_pack.cu", "cuda_quantize.cu", "cuda_ipc.cu", "cuda_peer.cu",
                "cuda_peer_ce.cu"]
HEADERS = ["mt_common.h", "cpu_convert.h", "cuda_common.cuh", "cuda_peer.cuh", "quantize_format.h"]
ALL_SOURCES = sorted(set(MPI_SOURCES + CPU_SOURCES + CUDA_SOURCES + HEADERS))
# -ffp-contract=off: no fused multiply-add, so results match the numpy reference bit for bit.
C_FLAGS = ["-O3", "-ffp-contract=off", "-fopenmp", "-fPIC", "-shared", "-fvisibility=hidden",
           "-Wall", "-std=gnu11"]


class Build:
    """One build: sources from `src`, libraries into `out`. native=False leaves out
    -march=native (a wheel that may run on another machine's CPU)."""

    def __init__(self, src, out, native=True, force=False, log=None):
        self.src, self.out = Path(src).resolve(), Path(out).resolve()
        self.native, self.force = native, force
        self.log = log                       # a file for the commands and the compilers' output
        self.out.mkdir(parents=True, exist_ok=True)

    def say(self, text, problem=False):
        print(text, file=self.log or (sys.stderr if problem else sys.stdout), flush=True)

    def run(self, cmd):
        self.say("  " + " ".join(str(c) for c in cmd))
        return subprocess.run([str(c) for c in cmd], cwd=self.src, stdout=self.log,
                              stderr=subprocess.STDOUT if self.log else None).returncode == 0

    def up_to_date(self, lib, sources, recipe):
        """Built, newer than its sources and this file, and with the same compiler and flags."""
        path, stamp = self.out / lib, self.out / (lib + ".recipe")
        if self.force or not path.exists() or not stamp.exists() or stamp.read_text() != recipe:
            return False
        newest = max((self.src / s).stat().st_mtime for s in sources + HEADERS)
        return path.stat().st_mtime >= max(newest, Path(__file__).stat().st_mtime)

    def finish(self, lib, tmp, recipe):
        tmp.replace(self.out / lib)          # atomic: a half-written library is never loaded
        (self.out / (lib + ".recipe")).write_text(recipe)

    def host_library(self, compiler, lib, sources):
        """Compile `sources` into `lib` with the C flags; True when built or already current."""
        recipe = f"{compiler} {' '.join(C_FLAGS)} native={self.native}"
        if self.up_to_date(lib, sources, recipe):
            self.say(f"kernels: {lib} is up to date")
            return True
        tmp = self.out / (lib + f".{os.getpid()}.tmp")
        # -march=native: the library is built on the machine that runs it; retry without if refused.
        for arch in (["-march=native"], []) if self.native else ([],):
            if self.run([compiler, *C_FLAGS, *arch, *sources, "-lm", "-o", tmp]):
                self.finish(lib, tmp, recipe)
                self.say(f"kernels: built {self.out / lib} ({compiler})")
                return True
        tmp.unlink(missing_ok=True)
        return False

    def cpu(self):
        if self.host_library(os.environ.get("CC", "cc"), CPU_LIB, CPU_SOURCES):
            return True
        self.say("kernels: could not build the C kernels; numpy will do the reductions", True)
        return False

    def mpi(self):
        """Optional: without it the Python recursive doubling runs (the same steps, slower)."""
        mpicc = find_mpicc()
        if mpicc is None:
            self.say("kernels: no mpicc found; the small-message all-reduce runs in Python")
        elif not self.host_library(mpicc, MPI_LIB, MPI_SOURCES):
            self.say("kernels: mpicc failed; the small-message all-reduce runs in Python", True)
        return True

    def cuda(self):
        nvcc = find_nvcc()
        if nvcc is None:
            self.say("kernels: no nvcc found; the CUDA kernels are not built (torch will stand in)")
            return True
        arch = os.environ.get("MPITRAIN_CUDA_ARCH", "90")
        recipe = f"{nvcc} sm_{arch}"
        if self.up_to_date(CUDA_LIB, CUDA_SOURCES, recipe):
            self.say(f"kernels: {CUDA_LIB} is up to date")
            return True
        error_obj = self.out / f"error_cuda.{os.getpid()}.o"
        tmp = self.out / (CUDA_LIB + f".{os.getpid()}.tmp")
        ok = self.run([os.environ.get("CC", "cc"), "-O2", "-fPIC", "-fvisibility=hidden", "-c",
                       "error.c", "-o", error_obj]) and self.run(
            [nvcc, "-O3", "-std=c++17", "-shared", f"-gencode=arch=compute_{arch},code=sm_{arch}",
             f"-gencode=arch=compute_{arch},code=compute_{arch}", "-cudart=static",
             "-Xcompiler", "-fPIC,-fvisibility=hidden", *CUDA_SOURCES, error_obj, "-o", tmp])
        error_obj.unlink(missing_ok=True)
        if ok:
            self.finish(CUDA_LIB, tmp, recipe)
            self.say(f"kernels: built {self.out / CUDA_LIB} (sm_{arch})")
        else:
            tmp.unlink(missing_ok=True)
            self.say("kernels: nvcc failed; the CUDA kernels are not built", True)
        return ok

    def library(self, lib):
        return {CPU_LIB: self.cpu, MPI_LIB: self.mpi, CUDA_LIB: self.cuda}[lib]()


def find_nvcc():
    for candidate in (os.environ.get("NVCC"), shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc"):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def find_mpicc():
    """MPICC when set and not empty (make install MPICC=... passes it), else the mpicc beside
    this Python (the Open MPI wheel's), else the one on PATH."""
    configured = os.environ.get("MPICC", "").strip()
    if configured:
        found = shutil.which(configured) or (configured if Path(configured).exists() else None)
        if found is None:
            print(f"kernels: MPICC={configured} not found", file=sys.stderr)
        return found
    beside_python = Path(sys.executable).parent / "mpicc"
    for candidate in (str(beside_python), shutil.which("mpicc")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def build_all(src, out, native=True, force=False, cuda=True):
    b = Build(src, out, native, force)
    ok = b.cpu()
    ok = b.mpi() and ok
    if cuda:
        ok = b.cuda() and ok
    return ok


def build_at_first_use(lib):
    """Build `lib` into the cache directory unless it is there; one process builds while the
    others of the node (the other ranks) wait on a lock and then load its result. A build that
    failed leaves lib.failed with its log, so later processes do not retry it. Returns the
    library's path, or None."""
    src = locations.source_dir()
    out = locations.cache_dir()
    if src is None:
        return None
    try:
        out.mkdir(parents=True, exist_ok=True)
        lock = open(out / ".lock", "w")
    except OSError:
        return None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (out / lib).exists() or (out / (lib + ".failed")).exists():
            return out / lib if (out / lib).exists() else None
        print(f"mpitrain.kernels: building {lib} into {out} (first use)", file=sys.stderr, flush=True)
        log = out / (lib + ".log")
        with open(log, "w") as f:
            Build(src, out, log=f).library(lib)
        if not (out / lib).exists():
            (out / (lib + ".failed")).write_text(f"see {log}\n")
            print(f"mpitrain.kernels: could not build {lib}; see {log}", file=sys.stderr, flush=True)
            return None
        return out / lib


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    parser.add_argument("--cpu-only", action="store_true", help="skip the CUDA library")
    args = parser.parse_args(argv)
    src = locations.source_dir()
    if src is None:
        print(f"kernels: no csrc/ beside {locations.PACKAGE_DIR} or in the source tree",
              file=sys.stderr)
        return 1
    ok = build_all(src, locations.writable_lib_dir(), force=args.force, cuda=not args.cpu_only)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
