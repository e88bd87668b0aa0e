"""Every setting of mpitrain in one dataclass: its default, what it takes, whether it is stable
(kept, with its meaning) or experimental (may change or go), and what it does. Field `x` is set
by the environment variable MPITRAIN_X.

    from mpitrain.settings import Settings
    s = Settings.from_env()                   # every variable parsed once (init() does this)
    s.timeout                                 # 600.0, or the value of MPITRAIN_TIMEOUT
    s.replace(peer_register=False)            # a changed copy, checked like a variable
    python -m mpitrain.settings               # the table as markdown (docs/configuration.md)

A job reads its settings once: init() parses the environment into a Settings, and every
communicator carries it (comm.settings) to what it builds: dup() and split() hand it on, the
transports and the peer kernels take their values from it. Tools outside a job (the kernel
build, the loader's workers, the emulated cluster, setup.py) read a single variable with
get(name) when they start.

A bad value raises SettingError naming the variable, the value and what it takes (and the rank,
when the caller gives it). Nothing here imports more than the standard library, so the kernel
build, the loader's worker processes and setup.py can read it too.
"""
import dataclasses
import os
import sys
from dataclasses import dataclass

TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")
PREFIX = "MPITRAIN_"


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

    def parse(self, text, rank=None):
        """The value of the variable's text; SettingError (naming `rank` when given) if it is
        not one this setting takes."""
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
        where = "" if rank is None else f"rank {rank}: "
        raise SettingError(f"{where}{self.name}={text!r}: takes {self.takes()}")

    def check(self, value, rank=None):
        """A value given in code (Settings.replace), checked as its variable's text would be."""
        text = {True: "1", False: "0"}.get(value, value) if isinstance(value, bool) else value
        return self.parse(str(text), rank)


def knob(default, kind, stability, doc, **limits):
    """One field of Settings: its default and how its variable is parsed and documented."""
    return dataclasses.field(default=default,
                             metadata={"setting": (kind, stability, doc, limits)})


@dataclass(frozen=True)
class Settings:
    """Every setting, parsed. Build it with from_env() (or init(), which does); change it with
    replace(). A field's variable is MPITRAIN_ and its name in capitals."""
    # collectives
    timeout: float = knob(600.0, "float", "stable",
        "Seconds a collective (or a GPU peer kernel, or a copy-engine call) may wait for a peer "
        "before it names the rank it waits for and aborts the job; 0 turns the watchdog off.",
        minimum=0)
    debug: bool = knob(False, "bool", "stable",
        "Debug mode: every collective's signature is compared across ranks before data moves.")
    ranks_per_node: int = knob(0, "int", "experimental",
        "Pretend nodes of this many ranks (testing the hierarchical paths on one host); 0: ask "
        "MPI.", minimum=0)
    small_allreduce: str = knob("c", "choice", "experimental",
        "The small-message recursive doubling in C, or its Python version.",
        choices=("c", "python"))
    cpu_threads: int = knob(0, "int", "stable",
        "OpenMP threads of the C kernels; 0: this rank's share of the node's cores.", minimum=0)
    # GPU transports
    gpu_transport: str = knob("auto", "choice", "stable",
        "How GPU buffers move between ranks (docs/gpu-transports.md); a forced one that cannot "
        "work fails on every rank with the reason.", choices=("auto", "ipc", "cuda-mpi", "staged"))
    stage_chunk_mb: float = knob(4.0, "float", "stable",
        "Chunk size of the host-staged transport, MB.", minimum=0.001)
    staged_shared: bool = knob(True, "bool", "stable",
        "Ranks of one node stage through an MPI shared-memory window (0: MPI messages).")
    peer_kernels: str = knob("1", "choice", "stable",
        "GPU peer kernels over CUDA IPC: 1 on, 0 off, shared also for ranks sharing a GPU "
        "(slow; for testing on one GPU).", choices=("1", "0", "shared"))
    peer_region_mb: float = knob(256.0, "float", "stable",
        "Largest workspace region of the peer kernels, MB.", minimum=0.001)
    peer_blocks: int = knob(128, "int", "stable",
        "Most thread blocks of a peer kernel.", minimum=1, maximum=128)
    dp_peer_blocks: int = knob(32, "int", "stable",
        "Most thread blocks of the peer kernels that run beside compute (data parallel, ZeRO).",
        minimum=1, maximum=128)
    peer_arrive_first: bool = knob(True, "bool", "experimental",
        "Beside compute, wait for the peers on one block before a peer kernel starts.")
    peer_copy_engine: bool = knob(True, "bool", "stable",
        "Data parallel's GPU all-reduces move by the copy engines (0: the peer kernels).")
    peer_ce_wait: str = knob("memop", "choice", "experimental",
        "How the copy-engine all-reduce waits for its peers: stream memory operations, or a "
        "one-block kernel with the kernels' timeout trap (for drivers without "
        "cuStreamWaitValue32; the two measured the same on 2x H200).",
        choices=("memop", "kernel"))
    peer_register: bool = knob(True, "bool", "stable",
        "Buffers all-reduced in place again and again are mapped into every peer once, and the "
        "reduced chunks written straight into them.")
    dp_bucket_wait: str = knob("stream", "choice", "experimental",
        "Data parallel waits for a bucket's gradients on the GPU stream, or on the host before "
        "queueing its all-reduce.", choices=("stream", "host"))
    # kernels
    kernels: str = knob("compiled", "choice", "stable",
        "compiled: the C/CUDA kernels where built; reference: numpy/torch only.",
        choices=("compiled", "reference"))
    kernel_cache: str = knob("", "text", "stable",
        "Where kernels are built at first use when the package directory is not writable "
        "(default: ~/.cache/mpitrain/kernels-VERSION, or the same under $XDG_CACHE_HOME).")
    build_cuda: bool = knob(True, "bool", "stable",
        "pip install builds the CUDA library where nvcc is (0: the C library only).")
    cuda_arch: str = knob("90", "text", "stable",
        "The SM architecture the CUDA kernels are built for (90: H100, H200).")
    # data
    loader: str = knob("auto", "choice", "stable",
        "Who decodes image folders: worker processes into shared memory, or threads; auto: "
        "processes where /proc is (Linux), threads elsewhere.",
        choices=("auto", "processes", "threads"))
    loader_workers: int = knob(0, "int", "stable",
        "How many loader workers per rank; 0: the cores this rank may run on.", minimum=0)
    # the emulated cluster and the tests
    cluster_dir: str = knob("/run/mpitrain-cluster", "text", "stable",
        "Where the emulated cluster keeps its state.")
    cluster_mpiexec: str = knob("", "text", "stable",
        "The mpiexec (with flags) the emulated cluster runs (default: the one beside Python, else "
        "PATH's).")
    cluster_keepalive: float = knob(30.0, "float", "experimental",
        "Seconds between the cluster agent's link checks.", minimum=0.001)
    mpiexec: str = knob("", "text", "stable",
        "The mpiexec (with flags) that tests and `python -m mpitrain.labs check` start jobs with "
        "(the Makefile sets it for the tests).")

    @classmethod
    def from_env(cls, env=None, rank=None):
        """Every field from its variable in `env` (default os.environ), its default when unset
        or empty; a bad value raises SettingError (naming `rank` when given)."""
        return cls(**{f.name: get(variable(f.name), rank, env) for f in dataclasses.fields(cls)})

    def replace(self, rank=None, **changes):
        """A copy with `changes` (field=value), each checked as its variable would be."""
        checked = {}
        for name, value in changes.items():
            setting = SETTINGS.get(variable(name))
            if setting is None:
                raise TypeError(f"{name!r} is not a setting; the settings are "
                                f"{', '.join(f.name for f in dataclasses.fields(self))}")
            checked[name] = setting.check(value, rank)
        return dataclasses.replace(self, **checked)


def variable(field_name):
    """The environment variable of a field: MPITRAIN_ and the name in capitals."""
    return PREFIX + field_name.upper()


SETTINGS = {variable(f.name): Setting(variable(f.name), f.default, *f.metadata["setting"][:3],
                                      **f.metadata["setting"][3])
            for f in dataclasses.fields(Settings)}


def get(name, rank=None, env=None):
    """The parsed value of `name` (its default when unset or empty)."""
    setting = SETTINGS[name]
    text = (os.environ if env is None else env).get(name, "")
    if text.strip() == "":
        return setting.default
    return setting.parse(text, rank)


def unknown_variables(rank=None, env=None):
    """One warning per MPITRAIN_* name in the environment that is no setting, with the closest
    setting (a typo would otherwise be ignored). Settings.from_env parses the known ones."""
    import difflib
    env = os.environ if env is None else env
    where = "" if rank is None else f"rank {rank}: "
    warnings = []
    for name in sorted(k for k in env if k.startswith(PREFIX) and k not in SETTINGS):
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
