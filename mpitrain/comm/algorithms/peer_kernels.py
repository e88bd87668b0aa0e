"""The peer-kernel algorithms (GPU buffers, CUDA IPC, one GPU per rank): see comm/peer_workspace.py.

Unlike the algorithms beside them these take no steps of their own: each hands the whole call
to one kernel that reads the peers' GPU memory. Every rank reaches the same decision (the
transport, the sizes and the region are the same everywhere), so no rank waits in a kernel
that another rank never launches.
"""
from .. import peer_workspace as peer
from ..errors import CollectiveError
from .ring import ring_all_gather, ring_reduce_scatter


def workspace(ctx, name):
    """The peer workspace behind ctx, or a CollectiveError that says why there is none."""
    get = getattr(ctx.transport, "peer_workspace", None)
    reason = getattr(ctx.transport, "peer_reason", None) if get else (
        f"the {getattr(ctx.transport, 'name', type(ctx.transport).__name__)} transport has no "
        f"peer memory (needs GPU buffers over CUDA IPC, and no tracing)")
    if reason is not None:
        raise CollectiveError(ctx.rank, f"algorithm {name!r} cannot run: {reason}")
    return get()


def _stream(ctx):
    import torch
    return torch._C._cuda_getCurrentRawStream(ctx.device.index)


def _all_reduce(ctx, array, mode, name):
    ws = workspace(ctx, name)
    count = array.numel()
    if count:
        ptr = array.data_ptr()
        ws.all_reduce(ptr, ptr, count, array.element_size(), ctx.dtype.name, ctx.op, mode,
                      _stream(ctx))


def one_shot_all_reduce(ctx, array):
    _all_reduce(ctx, array, peer.ONE_SHOT, "one_shot")


def two_shot_all_reduce(ctx, array):
    _all_reduce(ctx, array, peer.TWO_SHOT, "two_shot")


def two_shot_push_all_reduce(ctx, array):
    _all_reduce(ctx, array, peer.TWO_SHOT_PUSH, "two_shot_push")


def copy_engine_all_reduce(ctx, array):
    _all_reduce(ctx, array, peer.COPY_ENGINE, "copy_engine")


def peer_reduce_scatter(ctx, send, recv, counts):
    """One kernel when the whole input fits a workspace region, else the ring."""
    ws = workspace(ctx, "peer")
    itemsize = send.element_size()
    total = sum(counts)
    if not total:
        return
    if not ws.fits(total * itemsize):
        return ring_reduce_scatter(ctx, send, recv, counts)
    src = send[:total]
    mine = recv[:counts[ctx.rank]]
    if _overlap(src, mine):          # the kernel writes recv while other blocks still read send
        src = ctx.scratch(total, slot=1)
        src.copy_(send[:total])
    ws.reduce_scatter(src.data_ptr(), mine.data_ptr(), counts, itemsize, ctx.dtype.name,
                      ctx.op, _stream(ctx))


def peer_all_gather(ctx, send, recv, counts):
    """One kernel when every rank's part fits a workspace region, else the ring. In place (send
    is this rank's block of recv) works: that block is rewritten with its own values."""
    ws = workspace(ctx, "peer")
    itemsize = recv.element_size()
    total = sum(counts)
    if not total:
        return
    if not ws.fits(max(counts) * itemsize):      # each rank's part goes through its region
        return ring_all_gather(ctx, send, recv, counts)
    ws.all_gather(send.data_ptr(), recv.data_ptr(), counts, itemsize, _stream(ctx))


def _overlap(a, b):
    if not a.numel() or not b.numel():
        return False
    a0, b0 = a.data_ptr(), b.data_ptr()
    return a0 < b0 + b.numel() * b.element_size() and b0 < a0 + a.numel() * a.element_size()


PEER_ALGORITHMS = {
    "all_reduce": {"one_shot": one_shot_all_reduce, "two_shot": two_shot_all_reduce,
                   "two_shot_push": two_shot_push_all_reduce, "copy_engine": copy_engine_all_reduce},
    "reduce_scatter": {"peer": peer_reduce_scatter},
    "all_gather": {"peer": peer_all_gather},
}
