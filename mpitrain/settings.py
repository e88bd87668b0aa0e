"""Every environment variable mpitrain reads, in one table: its default, what it takes, whether it
is stable (kept, with its meaning) or experimental (may change or go), and what it does.

    from mpitrain import settings
    settings.get("MPITRAIN_TIMEOUT")          # 600.0, or the parsed value of the variable
    python -m mpitrain.settings               # the table as markdown (docs/configuration.md)

A bad value raises SettingError naming the variable, the value and what it takes (and the rank,
when the caller gives it). Nothing here imports more than the standard library, so the kernel
build, the loader's worker processes and setup.py can read it too.
"""
import os
import sys
from dataclasses import dataclass

TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


class SettingError(ValueError):
    """An environment variable with a value its setting does not take."""


@dataclass(frozen=True)
class Setting:
    name: str
    default: object
    kind: str                      # bool | int | float | choice | text
    stability: str                 # stable | experimental
    doc: str
    choices: tuple = ()
    minimum: float = None
    maximum: float = None

    def takes(self):
        if self.kind == "bool":
            return "1 or 0"
        if self.kind == "choice":
            return " | ".join(self.choices)
        if self.kind in ("int", "float"):
            low = "" if self.minimum is None else f">= {self.minimum:g}"
            high = "" if self.maximum is None else f"<= {self.maximum:g}"
            return ("a number " + " and ".join(p for p in (low, high) if p)).strip()
        return "text"

    def parse(self, text):
        value = text.strip()
        if self.kind == "text":
            return value
        if self.kind == "bool":
            if value.lower() in TRUE:
                return True
            if value.lower() in FALSE:
                return False
        elif self.kind == "choice":
            if value in self.choices:
                return value
        else:
            try:
                number = int(value) if self.kind == "int" else float(value)
            except ValueError:
                number = None
            if number is not None and (self.minimum is None or number >= self.minimum) and \
                    (self.maximum is None or number <= self.maximum):
                return number
        raise SettingError(f"{self.name}={text!r}: takes {self.takes()}")


def _s(name, default, kind, stability, doc, **limits):
    return Setting(name, default, kind, stability, doc, **limits)


SETTINGS = {s.name: s for s in (
    # collectives
    _s("MPITRAIN_TIMEOUT", 600.0, "float", "stable",
       "Seconds a collective (or a GPU peer kernel, or a copy-engine call) may wait for a peer "
       "before it names the rank it waits for and aborts the job; 0 turns the watchdog off.",
       minimum=0),
    _s("MPITRAIN_DEBUG", False, "bool", "stable",
       "Debug mode: every collective's signature is compared across ranks before data moves."),
    _s("MPITRAIN_RANKS_PER_NODE", 0, "int", "experimental",
       "Pretend nodes of this many ranks (testing the hierarchical paths on one host); 0: ask "
       "MPI.", minimum=0),
    _s("MPITRAIN_SMALL_ALLREDUCE", "c", "choice", "experimental",
       "The small-message recursive doubling in C, or its Python version.",
       choices=("c", "python")),
    _s("MPITRAIN_CPU_THREADS", 0, "int", "stable",
       "OpenMP threads of the C kernels; 0: this rank's share of the node's cores.", minimum=0),
    # GPU transports
    _s("MPITRAIN_GPU_TRANSPORT", "auto", "choice", "stable",
       "How GPU buffers move between ranks (docs/gpu-transports.md); a forced one that cannot "
       "work fails on every rank with the reason.", choices=("auto", "ipc", "cuda-mpi", "staged")),
    _s("MPITRAIN_STAGE_CHUNK_MB", 4.0, "float", "stable",
       "Chunk size of the host-staged transport, MB.", minimum=0.001),
    _s("MPITRAIN_STAGED_SHARED", True, "bool", "stable",
       "Ranks of one node stage through an MPI shared-memory window (0: MPI messages)."),
    _s("MPITRAIN_PEER_KERNELS", "1", "choice", "stable",
       "GPU peer kernels over CUDA IPC: 1 on, 0 off, shared also for ranks sharing a GPU "
       "(slow; for testing on one GPU).", choices=("1", "0", "shared")),
    _s("MPITRAIN_PEER_REGION_MB", 256.0, "float", "stable",
       "Largest workspace region of the peer kernels, MB.", minimum=0.001),
    _s("MPITRAIN_PEER_BLOCKS", 128, "int", "stable",
       "Most thread blocks of a peer kernel.", minimum=1, maximum=128),
    _s("MPITRAIN_DP_PEER_BLOCKS", 32, "int", "stable",
       "Most thread blocks of the peer kernels that run beside compute (data parallel, ZeRO).",
       minimum=1, maximum=128),
    _s("MPITRAIN_PEER_ARRIVE_FIRST", True, "bool", "experimental",
       "Beside compute, wait for the peers on one block before a peer kernel starts."),
    _s("MPITRAIN_PEER_COPY_ENGINE", True, "bool", "stable",
       "Data parallel's GPU all-reduces move by the copy engines (0: the peer kernels)."),
    _s("MPITRAIN_PEER_CE_WAIT", "memop", "choice", "experimental",
       "How the copy-engine all-reduce waits for its peers: stream memory operations, or a "
       "one-block kernel with the kernels' timeout trap (for drivers without "
       "cuStreamWaitValue32; the two measured the same on 2x H200).",
       choices=("memop", "kernel")),
    _s("MPITRAIN_PEER_REGISTER", True, "bool", "stable",
       "Buffers all-reduced in place again and again are mapped into every peer once, and the "
       "reduced chunks written straight into them."),
    _s("MPITRAIN_DP_BUCKET_WAIT", "stream", "choice", "experimental",
       "Data parallel waits for a bucket's gradients on the GPU stream, or on the host before "
       "queueing its all-reduce.", choices=("stream", "host")),
    # kernels
    _s("MPITRAIN_KERNELS", "compiled", "choice", "stable",
       "compiled: the C/CUDA kernels where built; reference: numpy/torch only.",
       choices=("compiled", "reference")),
    _s("MPITRAIN_KERNEL_CACHE", "", "text", "stable",
       "Where kernels are built at first use when the package directory is not writable "
       "(default: ~/.cache/mpitrain/kernels-VERSION, or the same under $XDG_CACHE_HOME)."),
    _s("MPITRAIN_BUILD_CUDA", True, "bool", "stable",
       "pip install builds the CUDA library where nvcc is (0: the C library only)."),
    _s("MPITRAIN_CUDA_ARCH", "90", "text", "stable",
       "The SM architecture the CUDA kernels are built for (90: H100, H200)."),
    # data
    _s("MPITRAIN_LOADER", "auto", "choice", "stable",
       "Who decodes image folders: worker processes into shared memory, or threads; auto: "
       "processes where /proc is (Linux), threads elsewhere.",
       choices=("auto", "processes", "threads")),
    _s("MPITRAIN_LOADER_WORKERS", 0, "int", "stable",
       "How many loader workers per rank; 0: the cores this rank may run on.", minimum=0),
    # the emulated cluster and the tests
    _s("MPITRAIN_CLUSTER_DIR", "/run/mpitrain-cluster", "text", "stable",
       "Where the emulated cluster keeps its state."),
    _s("MPITRAIN_CLUSTER_MPIEXEC", "", "text", "stable",
       "The mpiexec the emulated cluster runs (default: the one beside Python, else PATH's)."),
    _s("MPITRAIN_CLUSTER_KEEPALIVE", 30.0, "float", "experimental",
       "Seconds between the cluster agent's link checks.", minimum=0.001),
    _s("MPITRAIN_MPIEXEC", "", "text", "stable",
       "The mpiexec (with flags) that tests and `python -m mpitrain.labs check` start jobs with (the Makefile sets it for the tests)."),
)}


def get(name, rank=None, env=None):
    """The parsed value of `name` (its default when unset or empty)."""
    setting = SETTINGS[name]
    text = (os.environ if env is None else env).get(name, "")
    if text.strip() == "":
        return setting.default
    try:
        return setting.parse(text)
    except SettingError as exc:
        if rank is None:
            raise
        raise SettingError(f"rank {rank}: {exc}") from None


def check_environment(rank=None, env=None):
    """Parse every MPITRAIN_* variable that is set, at start-up rather than at first use: a bad
    value raises SettingError now (naming the variable, the value and the rank). Returns one
    warning per MPITRAIN_* name that is no setting (a typo would otherwise be ignored)."""
    import difflib
    env = os.environ if env is None else env
    where = "" if rank is None else f"rank {rank}: "
    warnings = []
    for name in sorted(k for k in env if k.startswith("MPITRAIN_")):
        if name in SETTINGS:
            get(name, rank, env)
            continue
        close = difflib.get_close_matches(name, SETTINGS, n=1)
        warnings.append(f"{where}{name} is not a setting of mpitrain"
                        + (f" (did you mean {close[0]}?)" if close else "")
                        + "; the settings are listed in docs/configuration.md")
    return warnings


def markdown():
    rows = ["| variable | default | takes | stability | what it does |", "|---|---|---|---|---|"]
    for s in SETTINGS.values():
        default = {True: "1", False: "0"}.get(s.default, s.default) if s.kind == "bool" \
            else s.default
        default = f"`{default:g}`" if isinstance(default, float) else \
            (f"`{default}`" if default != "" else "(unset)")
        takes = s.takes().replace("|", "\\|")
        rows.append(f"| `{s.name}` | {default} | {takes} | {s.stability} | {s.doc} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown())
