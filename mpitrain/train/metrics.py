"""What the trainer reports: throughput, model FLOPs utilization, JSON lines, a progress bar,
TensorBoard, and Reports, which writes to all of them.

MFU = model FLOPs per image (ViTConfig.flops_per_image: 6 x params x tokens + attention) x
images per second / the job's peak. The peak is measured, not looked up: each rank times a
square matrix product in the training precision on its device at start-up (GPU: 8192^3 for
bf16/fp16, 4096^3 for fp32; CPU: 1024^3), all ranks at once, and the job's peak is the sum.
Ranks sharing a device therefore share its peak. --peak-tflops replaces the measured value
per rank (e.g. a datasheet number).
"""
import json
import time

import torch
from ..precision import torch_dtype
from .config import write_toml



def measure_matmul_tflops(device, precision, seconds=0.5):
    """Sustained TFLOP/s of a square matrix product on this rank's device."""
    cuda = device.type == "cuda"
    n = (8192 if precision != "fp32" else 4096) if cuda else 1024
    dtype = torch_dtype(precision) if cuda else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    a @ b
    sync()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or count < 3:
        a @ b
        count += 1
        if not cuda or count % 5 == 0:
            sync()
    sync()
    return 2 * n ** 3 * count / (time.perf_counter() - start) / 1e12


class JsonLines:
    """Append one JSON object per line (rank 0 only; other ranks hold a no-op)."""

    def __init__(self, path, enabled):
        self.file = open(path, "a") if (path and enabled) else None

    def write(self, **record):
        if self.file:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()

    def close(self):
        if self.file:
            self.file.close()


class Progress:
    """tqdm bar on rank 0 when enabled and tqdm is installed, else plain lines every log step."""

    def __init__(self, total, enabled, printer):
        self.bar = None
        self.printer = printer
        if enabled:
            try:
                from tqdm import tqdm
                self.bar = tqdm(total=total, unit="step", dynamic_ncols=True)
            except ImportError:
                pass

    def update(self, steps, step, total, loss, img_s, mfu):
        if self.bar is not None:
            self.bar.update(steps)
            self.bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{img_s:.0f}", mfu=f"{mfu * 100:.1f}%")
        else:
            self.printer(f"step {step}/{total}  loss {loss:.4f}  {img_s:.0f} img/s  MFU {mfu * 100:.1f}%")

    def write(self, text):
        if self.bar is not None:
            self.bar.write(text)
        else:
            self.printer(text)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def run_header(cfg, world, device):
    """The first JSON line of a run: its config, the world, each rank's device, the versions."""
    import platform
    from dataclasses import asdict

    import numpy
    from mpi4py import MPI

    from .. import __version__
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    devices = world.gather_object(f"{MPI.Get_processor_name()}:{device}:{name}", root=0)
    return {"kind": "run", "config": asdict(cfg), "world_size": world.size,
            "nodes": world.num_nodes, "devices": devices,
            "versions": {"mpitrain": __version__, "torch": torch.__version__,
                         "cuda": torch.version.cuda, "numpy": numpy.__version__,
                         "mpi4py": __import__("mpi4py").__version__,
                         "mpi": MPI.Get_library_version().splitlines()[0].strip(),
                         "python": platform.python_version()}}


class TensorBoard:
    """--tensorboard DIR: the JSON lines' scalars as TensorBoard events (rank 0)."""

    def __init__(self, directory, enabled):
        self.writer = None
        if directory and enabled:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(directory)

    def write(self, step, **scalars):
        if self.writer is not None:
            for name, value in scalars.items():
                if value is not None:
                    self.writer.add_scalar(name, value, step)

    def close(self):
        if self.writer is not None:
            self.writer.close()


class Reports:
    """Rank 0's reports of a run: the progress bar (or lines), the JSON-lines log (its header
    first, the config as given beside it as TOML) and TensorBoard. Throughput counts training
    time since the last log line only (evaluation is left out); MFU is against the job's peak."""

    def __init__(self, cfg, given, world, run, job_peak_tflops):
        self.cfg, self.total = cfg, run.total
        self.log = JsonLines(cfg.log_jsonl, world.rank == 0)
        self.log.write(**run_header(cfg, world, run.device))
        if cfg.log_jsonl and world.rank == 0:
            write_toml(given, f"{cfg.log_jsonl.removesuffix('.jsonl')}.config.toml")
        self.board = TensorBoard(cfg.tensorboard, world.rank == 0)
        self.progress = Progress(run.total, cfg.progress and world.rank == 0, world.print0)
        self.flops_per_image = run.mcfg.flops_per_image()
        self.job_peak = job_peak_tflops
        self.seconds, self.steps = 0.0, 0

    def timed(self, seconds):
        """One more step, of `seconds` of training."""
        self.seconds += seconds
        self.steps += 1

    def step(self, position, lr):
        """A log line for `position` (a train.loop.Position) at learning rate `lr`."""
        img_s = self.steps * self.cfg.batch_size / self.seconds
        mfu = img_s * self.flops_per_image / (self.job_peak * 1e12)
        self.progress.update(self.steps, position.step, self.total, position.loss, img_s, mfu)
        self.log.write(step=position.step, epoch=position.epoch, loss=position.loss, lr=lr,
                       img_per_s=img_s, mfu=mfu, time=time.time())
        self.board.write(position.step, loss=position.loss, lr=lr, img_per_s=img_s, mfu=mfu)
        self.seconds, self.steps = 0.0, 0

    def accuracy(self, position):
        self.progress.write(f"epoch {position.epoch} step {position.step}: test accuracy "
                            f"{position.accuracy * 100:.2f}%")
        self.log.write(step=position.step, epoch=position.epoch,
                       test_accuracy=position.accuracy, time=time.time())
        self.board.write(position.step, test_accuracy=position.accuracy)

    def close(self):
        self.progress.close()
        self.log.close()
        self.board.close()
