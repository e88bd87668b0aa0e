"""Runs `python -m mpitrain.train` with one fault injected on one rank, for the fault suite.

    mpiexec -n 2 python tests/faults/inject.py FAULT RANK [AT] -- vit_digits --steps 6 ...

FAULT is one of FAULTS below; it strikes on rank RANK (at step or save number AT, default 1).
The trainer runs unchanged otherwise: the faults are patched in here, never in the product.
"""
import os
import signal
import sys
import time

import torch.nn.functional as F

from mpi4py import MPI

import mpitrain.checkpoint as checkpoint_pkg
import mpitrain.checkpoint.store as store
import mpitrain.train.loop as loop
from mpitrain.train.__main__ import main

RANK = MPI.COMM_WORLD.Get_rank()


def once_at(count_from, at, action):
    """A wrapper of a function that runs action() on the at-th call (1-based), then calls on."""
    calls = {"n": 0}

    def wrapper(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == at:
            action()
        return count_from(*args, **kwargs)
    return wrapper


def kill_self():
    os.kill(os.getpid(), signal.SIGKILL)


def stop_self():
    os.kill(os.getpid(), signal.SIGSTOP)


def raise_value_error():
    raise ValueError(f"injected fault on rank {RANK}")


def stall():
    time.sleep(3600)


def nan_loss(real):
    def cross_entropy(*args, **kwargs):
        return real(*args, **kwargs) * float("nan")
    return cross_entropy


def after(function, action, at):
    """function runs, then action() on its at-th call."""
    calls = {"n": 0}

    def wrapper(*args, **kwargs):
        out = function(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == at:
            action()
        return out
    return wrapper


def install(fault, at):
    if fault == "raise-in-step":            # an exception inside the training loop
        loop.read_losses = once_at(loop.read_losses, at, raise_value_error)
    elif fault == "kill-in-step":
        loop.read_losses = once_at(loop.read_losses, at, kill_self)
    elif fault == "stop-in-step":
        loop.read_losses = once_at(loop.read_losses, at, stop_self)
    elif fault == "nan-loss":
        loop.F.cross_entropy = nan_loss(F.cross_entropy)
    elif fault == "kill-before-shard":      # the points of a checkpoint save, in order
        checkpoint_pkg.write_shard = once_at(store.write_shard, at, kill_self)
    elif fault == "kill-after-shard":
        checkpoint_pkg.write_shard = after(store.write_shard, kill_self, at)
    elif fault == "kill-before-manifest":
        checkpoint_pkg.write_manifest = once_at(store.write_manifest, at, kill_self)
    elif fault == "kill-after-manifest":
        checkpoint_pkg.write_manifest = after(store.write_manifest, kill_self, at)
    elif fault == "stall-in-save":          # a hung filesystem under one rank's shard
        checkpoint_pkg.write_shard = once_at(store.write_shard, at, stall)
    else:
        raise SystemExit(f"inject.py: unknown fault {fault!r}")


if __name__ == "__main__":
    split = sys.argv.index("--")
    fault, rank, *rest = sys.argv[1:split]
    if RANK == int(rank):
        install(fault, int(rest[0]) if rest else 1)
    main(sys.argv[split + 1:])
