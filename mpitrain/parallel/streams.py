"""Collectives beside compute, on a GPU: their own stream, and a communicator whose peer
kernels leave the SMs to the compute. Used by data parallel, ZeRO-2 and ZeRO-3.

    with on_stream(stream):            # after the work queued so far on the current stream
        comm.reduce_scatter(...)
    join(stream)                        # the current stream waits for it (before the update)
"""
import contextlib

import torch
from .. import settings


def overlapping_comm(world, copy_engine=None):
    """A communicator of its own for collectives that run beside compute: its GPU all-reduces
    move their bytes by the copy engines and wait in the stream, with
    no SM (copy_engine; None: MPITRAIN_PEER_COPY_ENGINE, default on); its peer kernels take
    few SMs (MPITRAIN_DP_PEER_BLOCKS, default 32) and wait for their peers on one block first
    (MPITRAIN_PEER_ARRIVE_FIRST=0 turns that off)."""
    from ..comm.peer_workspace import PeerOptions
    comm = world.dup()
    if copy_engine is None:
        copy_engine = settings.get("MPITRAIN_PEER_COPY_ENGINE")
    comm.peer = PeerOptions(blocks=settings.get("MPITRAIN_DP_PEER_BLOCKS"),
                            arrive_first=settings.get("MPITRAIN_PEER_ARRIVE_FIRST"),
                            copy_engine=bool(copy_engine))
    return comm


def comm_stream(device):
    """A stream for collectives beside compute, at the compute stream's priority (CUDA's highest
    priority for it ran the trainer no faster on 2x H200, bench/RESULTS.md 2026-11-23)."""
    return torch.cuda.Stream(device=device)


def on_stream(stream):
    """Run on `stream` (a CUDA stream), after the work queued so far on the current one; a
    no-op context for None (host memory)."""
    if stream is None:
        return contextlib.nullcontext()
    stream.wait_stream(torch.cuda.current_stream(stream.device))
    return torch.cuda.stream(stream)


def join(stream):
    """The current stream waits for everything queued on `stream` (None: nothing to do)."""
    if stream is not None:
        torch.cuda.current_stream(stream.device).wait_stream(stream)
