"""Collectives beside compute, on a GPU: their own stream, and a communicator whose peer
kernels leave the SMs to the compute. Used by data parallel, ZeRO-2 and ZeRO-3.

    with on_stream(stream):            # after the work queued so far on the current stream
        comm.reduce_scatter(...)
    join(stream)                        # the current stream waits for it (before the update)
"""
import contextlib

import torch


def overlapping_comm(world, copy_engine=None):
    """A communicator of its own for collectives that run beside compute: its GPU all-reduces
    move their bytes by the copy engines and wait in the stream, with no SM (copy_engine; None:
    the world's settings.peer_copy_engine, default on); its peer kernels take few SMs
    (settings.dp_peer_blocks, default 32) and wait for their peers on one block first
    (settings.peer_arrive_first). PeerOptions.beside_compute reads them."""
    from ..comm.peer_workspace import PeerOptions
    comm = world.dup()
    comm.peer = PeerOptions.beside_compute(world.settings, copy_engine)
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
