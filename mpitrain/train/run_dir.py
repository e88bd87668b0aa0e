"""The run's checkpoint directory: whose checkpoints are there, and which run this one is.

A fresh run refuses a --checkpoint-dir that holds another run's checkpoints (pruning would
otherwise mix the two, and a later --resume would continue the wrong one); --resume continues
the run found there and keeps its run id, so its pruning touches only what that run wrote.
Rank 0 looks at the directory and tells every rank, so all raise the same error.
"""
import math
import uuid
from pathlib import Path

from .. import checkpoint
from .config import ConfigError


def check_checkpoint_dir(cfg, world):
    """Before anything is built: a --checkpoint-dir that cannot serve ends every rank with one
    message. Returns a new run id, the same on every rank (a resumed run keeps its checkpoint's
    id instead, where it has one)."""
    problem, run_id = None, uuid.uuid4().hex
    if world.rank == 0 and cfg.checkpoint_dir:
        root = Path(cfg.checkpoint_dir)
        others = checkpoint.other_runs(root) if root.is_dir() else {}
        if root.exists() and not root.is_dir():
            problem = f"--checkpoint-dir {root} is a file, not a directory"
        elif not cfg.resume and others:
            listed = "; ".join(f"run {run}: {', '.join(steps[-3:])}" for run, steps in others.items())
            problem = (f"--checkpoint-dir {root} holds another run's checkpoints ({listed}); pass "
                       f"--resume to continue that run, or give a new directory")
    problem, run_id = world.broadcast_object((problem, run_id), root=0)
    if problem:
        raise ConfigError(problem)
    return run_id


def resume_note(cfg, info, stop):
    """What rank 0 says after --resume looked in the directory (lines)."""
    if info is None:
        where = Path(cfg.checkpoint_dir)
        return [f"--resume: {where} does not exist; starting at step 0 (it is created at the "
                f"first checkpoint)" if not where.exists() else
                f"--resume: no checkpoint in {where} yet; starting at step 0"]
    lines = [f"--resume: skipped {d}: {why}" for d, why in info["skipped"]]
    lines.append(f"resumed from {info['directory']} at step {info['step']} (run "
                 f"{info['run_id'] or 'unknown'})")
    saved_seed = info["extra"].get("config", {}).get("seed")
    if saved_seed is not None and saved_seed != cfg.seed:
        lines.append(f"--resume: warning: the checkpoint was trained with --seed {saved_seed}, "
                     f"this run has --seed {cfg.seed}; the data order follows --seed {cfg.seed}")
    if info["step"] >= stop:
        loss = info["extra"].get("loss", math.nan)
        lines.append(f"--resume: the run already reached step {info['step']} (it stops at step "
                     f"{stop}): nothing to train; its last loss was {loss:.4f}")
    return lines
