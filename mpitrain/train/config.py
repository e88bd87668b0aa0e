"""The trainer's configuration: one dataclass, one field per flag, checked up front.

`python -m mpitrain.train --help` prints the same fields, grouped by topic, as the command-line
reference. `--config run.toml` reads the fields from a TOML file (keys are the field names,
with _ or -); flags given on the command line override it. `write_toml` writes a config back in
the same form (the trainer writes the resolved one beside its metrics).
"""
import argparse
import tomllib
from dataclasses import dataclass, fields

from ..data import SOURCES
from ..parallel.buckets import DEFAULT_TAIL_MB, parse_tail_mb

PRECISIONS = ("fp32", "bf16", "fp16")
PARALLEL = ("dp", "dp-naive", "zero1", "zero2", "zero3", "diloco")
DILOCO_INNER = ("dp", "zero1", "zero2")
GRAD_DTYPES = ("fp32", "bf16", "fp16")


class ConfigError(ValueError):
    """A bad flag or flag combination; every rank sees the same one and exits with code 2."""


@dataclass
class TrainConfig:
    model: str = "vit_digits"        # variant name (vit_b16, ...) or timm name (vit_base_patch16_224)
    data: str = "digits"             # digits | cifar10 | imagefolder | synthetic
    data_dir: str = ""               # directory of cifar10 / imagefolder data
    img_size: int = 0                # model input side in pixels (0: the variant's own)
    init_from: str = ""              # start from these weights: a timm state dict (.pt/.safetensors), a consolidated file or a checkpoint directory; a new head when the classes differ
    epochs: int = 10                 # passes over the training set (ignored when steps > 0)
    steps: int = 0                   # optimizer steps to run (0: run `epochs` epochs)
    batch_size: int = 128            # global batch: images per optimizer step, all ranks together
    micro_batch_size: int = 0        # images per forward/backward on one rank (0: batch/ranks/accum)
    grad_accum: int = 0              # micro-batches per step on each rank (0: batch/ranks/micro)
    lr: float = 1e-3                 # peak learning rate
    warmup: int = 10                 # steps of linear warm-up before the cosine decay to zero
    optimizer: str = "adamw"         # adamw | sgd (momentum 0.9)
    weight_decay: float = 0.05       # decoupled weight decay (adamw), L2 (sgd)
    precision: str = "fp32"          # fp32 | bf16 | fp16 (autocast; fp16 with loss scaling)
    compile: bool = False            # torch.compile the model
    compile_piece_mb: float = 100.0  # --compile on several ranks: parameter MB per compiled piece, each with its own backward (0: each block)
    checkpoint_activations: bool = False   # recompute each block in backward to save memory
    seed: int = 0                    # model init and data order (identical on every rank)
    eval_every: int = 0              # steps between test evaluations (0: at each epoch's end)
    log_every: int = 10              # steps between progress / JSON lines
    log_jsonl: str = ""              # write metrics as JSON lines here (rank 0; the first line: config, world, devices, versions; the config also as FILE.config.toml)
    tensorboard: str = ""            # also write TensorBoard scalars into this directory (needs the tensorboard package)
    device: str = "auto"             # auto (the local rank's GPU if any, else CPU) | cpu | cuda
    parallel: str = "dp"             # dp (bucketed, overlapped) | dp-naive (per-parameter, after backward) | zero1 | zero2 | zero3 | diloco (workers apart, outer steps every --sync-every)
    bucket_mb: float = 25.0          # dp: gradient bucket cap in MB (one bucket per parameter when tiny)
    first_bucket_mb: float = 1.0     # dp: cap of the first bucket (the last layers), sent earliest
    tail_mb: str = DEFAULT_TAIL_MB   # dp: end a bucket (and with --compile a compiled piece) where the parameter MB still to come in backward drop to each of these, so little is left to all-reduce after backward ("none": no cuts)
    grad_dtype: str = "fp32"         # dp: gradients on the wire; zero1-3: the reduce-scatter's dtype: fp32 | bf16 | fp16 (averaged, cast back)
    grad_views: bool = True          # dp: each .grad a view of its fp32 bucket, so no pack and no unpack (as DDP's gradient_as_bucket_view)
    find_unused_parameters: bool = False   # dp: parameters without a gradient count as zero (else an error)
    no_overlap: bool = False         # dp: all-reduce each bucket on the main thread (no communication thread)
    verbose: bool = False            # print the data-parallel bucket plan and per-step wait time
    zero3_window: int = 1            # zero3: blocks gathered ahead of the one computing (0: none)
    zero3_keep_between: bool = False   # zero3: keep each block gathered from its forward to its backward
    param_dtype: str = "fp32"        # zero3: parameters all-gathered and computed in fp32 | bf16 (shards and optimizer stay fp32)
    workers: int = 0                 # diloco: groups of ranks that train apart (0: one per node)
    inner: str = "dp"                # diloco: each worker's engine over its ranks: dp | zero1 | zero2
    sync_every: int = 50             # diloco: inner steps between outer steps (H)
    outer_lr: float = 0.7            # diloco: outer SGD learning rate
    outer_momentum: float = 0.9      # diloco: outer Nesterov momentum (0: plain SGD)
    fragments: int = 1               # diloco: streaming, the blocks in F fragments synced at staggered steps
    overlap: int = 0                 # diloco: inner steps a fragment's exchange runs behind (< sync_every / fragments)
    outer_dtype: str = "fp32"        # diloco: outer gradients on the wire: fp32 | bf16 | int8 | int4 (error feedback)
    checkpoint_dir: str = ""         # save checkpoints here (each rank its shard; any world size resumes)
    checkpoint_every: int = 0        # steps between checkpoints (0: only at the end)
    checkpoint_keep: int = 3         # newest checkpoints kept; older ones are deleted
    resume: bool = False             # continue from the newest valid checkpoint in checkpoint_dir
    stop_at_step: int = 0            # stop after this step, as if interrupted (job time limits, tests)
    memory_report: bool = False      # print each rank's predicted and measured peak memory after step 2
    peak_tflops: float = 0.0         # one device's peak for MFU (0: measured by a matmul at start)
    progress: bool = True            # rank 0's progress bar

    def check(self, world_size):
        """Raise ConfigError naming the bad value; fill in micro_batch_size and grad_accum."""
        if self.data not in SOURCES:
            raise ConfigError(f"--data {self.data}: choose from {', '.join(SOURCES)}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"--precision {self.precision}: choose from {', '.join(PRECISIONS)}")
        if self.optimizer not in ("adamw", "sgd"):
            raise ConfigError(f"--optimizer {self.optimizer}: choose adamw or sgd")
        if self.parallel not in PARALLEL:
            raise ConfigError(f"--parallel {self.parallel}: choose from {', '.join(PARALLEL)}")
        if self.param_dtype not in ("fp32", "bf16"):
            raise ConfigError(f"--param-dtype {self.param_dtype}: choose fp32 or bf16")
        if self.param_dtype != "fp32" and self.parallel != "zero3":
            raise ConfigError(f"--param-dtype {self.param_dtype} is for --parallel zero3 (the "
                              f"other modes keep float32 parameters); got --parallel {self.parallel}")
        if self.param_dtype == "bf16" and self.precision != "bf16":
            raise ConfigError(f"--param-dtype bf16 computes in bf16: use it with --precision "
                              f"bf16, got --precision {self.precision}")
        if self.zero3_window < 0:
            raise ConfigError(f"--zero3-window must be >= 0, got {self.zero3_window}")
        if self.parallel.startswith("zero") and self.precision == "fp16":
            raise ConfigError(f"--parallel {self.parallel} with --precision fp16: loss scaling "
                              f"over sharded gradients is not built; use bf16 or fp32")
        if self.grad_dtype not in GRAD_DTYPES:
            raise ConfigError(f"--grad-dtype {self.grad_dtype}: choose from {', '.join(GRAD_DTYPES)}")
        for name in ("bucket_mb", "first_bucket_mb"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be > 0, got {getattr(self, name)}")
        try:
            parse_tail_mb(self.tail_mb)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if self.parallel == "diloco":
            if self.inner not in DILOCO_INNER:
                raise ConfigError(f"--inner {self.inner}: DiLoCo composes with "
                                  f"{', '.join(DILOCO_INNER)} inside a worker")
            if self.precision == "fp16":
                raise ConfigError("--parallel diloco with --precision fp16: use bf16 or fp32")
        if self.resume and not self.checkpoint_dir:
            raise ConfigError("--resume needs --checkpoint-dir (where to look for checkpoints)")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"--device {self.device}: choose auto, cpu or cuda")
        for name in ("batch_size", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        for name in ("epochs", "steps", "micro_batch_size", "grad_accum", "warmup", "eval_every",
                     "img_size", "checkpoint_every", "checkpoint_keep", "stop_at_step"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if self.steps == 0 and self.epochs == 0:
            raise ConfigError("nothing to run: --epochs 0 and --steps 0")
        if self.lr <= 0:
            raise ConfigError(f"--lr must be > 0, got {self.lr}")
        per_rank, rem = divmod(self.batch_size, world_size)
        if rem:
            raise ConfigError(f"--batch-size {self.batch_size} does not divide over {world_size} ranks")
        if self.micro_batch_size and self.grad_accum:
            if self.micro_batch_size * self.grad_accum != per_rank:
                raise ConfigError(f"--batch-size {self.batch_size} != {world_size} ranks x "
                                  f"--micro-batch-size {self.micro_batch_size} x --grad-accum "
                                  f"{self.grad_accum}")
        elif self.micro_batch_size:
            if per_rank % self.micro_batch_size:
                raise ConfigError(f"--batch-size {self.batch_size} is not divisible by {world_size} "
                                  f"ranks x --micro-batch-size {self.micro_batch_size}")
            self.grad_accum = per_rank // self.micro_batch_size
        else:
            accum = self.grad_accum or 1
            if per_rank % accum:
                raise ConfigError(f"--batch-size {self.batch_size} is not divisible by {world_size} "
                                  f"ranks x --grad-accum {accum}")
            self.grad_accum, self.micro_batch_size = accum, per_rank // accum
        return self


# --help's sections: each field's topic (a field not named here goes under "other")
GROUPS = {
    "model and data": ["model", "data", "data_dir", "img_size", "init_from"],
    "schedule and optimizer": ["epochs", "steps", "batch_size", "micro_batch_size", "grad_accum",
                               "lr", "warmup", "optimizer", "weight_decay", "seed"],
    "precision, memory and compilation": ["precision", "compile", "compile_piece_mb",
                                          "checkpoint_activations", "device", "memory_report"],
    "parallelism": ["parallel"],
    "data parallel (--parallel dp)": ["bucket_mb", "first_bucket_mb", "tail_mb", "grad_dtype",
                                      "grad_views", "find_unused_parameters", "no_overlap"],
    "ZeRO-3 (--parallel zero3)": ["zero3_window", "zero3_keep_between", "param_dtype"],
    "DiLoCo (--parallel diloco)": ["workers", "inner", "sync_every", "outer_lr", "outer_momentum",
                                   "fragments", "overlap", "outer_dtype"],
    "checkpoints": ["checkpoint_dir", "checkpoint_every", "checkpoint_keep", "resume",
                    "stop_at_step"],
    "reporting": ["eval_every", "log_every", "log_jsonl", "tensorboard", "progress", "verbose",
                  "peak_tflops"],
}
CHOICES = {"data": SOURCES, "precision": PRECISIONS, "optimizer": ("adamw", "sgd"),
           "parallel": PARALLEL, "device": ("auto", "cpu", "cuda"), "grad_dtype": GRAD_DTYPES,
           "param_dtype": ("fp32", "bf16"), "inner": DILOCO_INNER,
           "outer_dtype": ("fp32", "bf16", "int8", "int4")}
# flags whose meaning may still change (the rest are stable)
EXPERIMENTAL = {"compile_piece_mb", "tail_mb", "zero3_window", "zero3_keep_between", "workers",
                "inner", "sync_every", "outer_lr", "outer_momentum", "fragments", "overlap",
                "outer_dtype"}
KINDS = {"int": int, "float": float, "str": str, "bool": bool}


def _kind(f):
    return KINDS[f.type if isinstance(f.type, str) else f.type.__name__]


def parser():
    p = argparse.ArgumentParser(
        prog="python -m mpitrain.train",
        usage="python -m mpitrain.train [MODEL] [--config FILE.toml] [flags] (flags by topic below)",
        description="Train a Vision Transformer, data parallel over the ranks of mpiexec.",
        epilog="example: mpiexec -n 4 python -m mpitrain.train vit_digits --epochs 30\n"
               "         mpiexec -n 4 python -m mpitrain.train --config run.toml --lr 1e-3",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", metavar="FILE.toml", default="",
                   help="read these flags from a TOML file (keys: the flag names); flags on the "
                        "command line override it")
    topic = {name: group for group, names in GROUPS.items() for name in names}
    sections = {group: p.add_argument_group(group) for group in [*GROUPS, "other"]}
    for f in fields(TrainConfig):
        section = sections[topic.get(f.name, "other")]
        help_text = _help(f.name)
        if f.name == "model":
            section.add_argument("model", nargs="?", default=f.default, help=help_text)
        elif _kind(f) is bool:
            flag = f"--{f.name.replace('_', '-')}"
            if f.default:
                section.add_argument(f"--no-{f.name.replace('_', '-')}", dest=f.name,
                                     action="store_false", help=f"turn off: {help_text}")
            else:
                section.add_argument(flag, action="store_true", help=help_text)
        else:
            metavar = "{" + ",".join(CHOICES[f.name]) + "}" if f.name in CHOICES else None
            section.add_argument(f"--{f.name.replace('_', '-')}", type=_kind(f), default=f.default,
                                 metavar=metavar, help=f"{help_text} (default: {f.default!r})")
    return p


def read_toml(path):
    """{field: value} from a TOML file of flags, each key and value checked."""
    try:
        with open(path, "rb") as f:
            table = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"--config {path}: cannot read it ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--config {path}: not valid TOML ({exc})") from None
    known = {f.name: f for f in fields(TrainConfig)}
    values = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        if name not in known:
            raise ConfigError(f"--config {path}: unknown key {key!r} (the keys are the flags of "
                              f"python -m mpitrain.train --help)")
        kind = _kind(known[name])
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ConfigError(f"--config {path}: {key} = {value!r} should be "
                              f"{'true or false' if kind is bool else 'a ' + kind.__name__}")
        values[name] = value
    return values


def write_toml(cfg, path):
    """The config as TOML that --config reads back to the same config."""
    lines = [f"# python -m mpitrain.train --config {path}"]
    for f in fields(TrainConfig):
        value = getattr(cfg, f.name)
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, str):
            text = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        else:
            text = repr(value)
        lines.append(f"{f.name} = {text}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def _help(name):
    """The comment after the field in this file's source is its help text."""
    import inspect
    for line in inspect.getsource(TrainConfig).splitlines():
        stripped = line.strip()
        if stripped.startswith(f"{name}:") and "#" in stripped:
            return stripped.split("#", 1)[1].strip()
    return name


def from_args(argv=None):
    p = parser()
    given = p.parse_args(argv)
    if given.config:
        p.set_defaults(**read_toml(given.config))
        given = p.parse_args(argv)
    values = vars(given)
    values.pop("config")
    return TrainConfig(**values)


def flags_markdown():
    """Every flag of the trainer by topic, as markdown (docs/configuration.md holds this)."""
    topic = {name: group for group, names in GROUPS.items() for name in names}
    out = []
    for group in [*GROUPS, "other"]:
        rows = []
        for f in fields(TrainConfig):
            if topic.get(f.name, "other") != group:
                continue
            if f.name == "model":
                flag = "`MODEL`"
            elif _kind(f) is bool and f.default:
                flag = f"`--no-{f.name.replace('_', '-')}`"
            else:
                flag = f"`--{f.name.replace('_', '-')}`"
            choices = " \\| ".join(CHOICES[f.name]) if f.name in CHOICES else ""
            default = "off" if _kind(f) is bool and not f.default else \
                ("on" if _kind(f) is bool else f"`{f.default!r}`")
            stability = "experimental" if f.name in EXPERIMENTAL else "stable"
            rows.append(f"| {flag} | {default} | {choices} | {stability} | "
                        f"{_help(f.name).replace('|', '/')} |")
        if rows:
            out += [f"### {group}", "", "| flag | default | choices | stability | meaning |",
                    "|---|---|---|---|---|",
                    *rows, ""]
    return "\n".join(out)


if __name__ == "__main__":
    print(flags_markdown())

