"""The GPU side of the collectives benchmark: the same calls on torch CUDA tensors.

Implementations:
  mpitrain <algorithm>  the hand-rolled collectives on GPU buffers (transport chosen per pair)
  nccl                  torch.distributed with NCCL, same ranks, same buffers (the baseline)
  mpi                   MPI's own collective as a user of this MPI calls it: with GPU pointers
                        when the library is CUDA-aware (after waiting for the stream: MPI
                        knows none), else copy to the host, MPI's collective, copy back
"""
import numpy as np

from ..comm.dtypes import DTYPES



def make_gpu_call(world, op, impl, count, dtype):
    """A no-argument function doing one call of `op` by `impl` on this rank's GPU."""
    import torch
    device = torch.device("cuda", torch.cuda.current_device())
    tdtype = getattr(torch, dtype)
    p = world.size
    k = count // p
    full = torch.zeros(count, dtype=tdtype, device=device)
    part = torch.zeros(k, dtype=tdtype, device=device)
    out_full = torch.zeros_like(full)
    out_part = torch.zeros_like(part)
    full_k, out_full_k = full[: k * p], out_full[: k * p]
    if impl == "nccl":
        return _nccl_call(world, op, device, full, part, out_part, full_k, out_full_k)
    if impl == "mpi":
        from ..comm import cuda_aware
        if cuda_aware.query()[0]:
            return _direct_mpi_call(world, op, dtype, full, part, out_full, out_part, k)
        return _staged_mpi_call(world, op, dtype, full, part, out_full, out_part, k)
    calls = {
        "all_reduce": lambda: world.all_reduce(full, algorithm=impl),
        "reduce_scatter": lambda: world.reduce_scatter(full_k, out_part, algorithm=impl),
        "all_gather": lambda: world.all_gather(part, out_full_k, algorithm=impl),
        "broadcast": lambda: world.broadcast(full, root=0, algorithm=impl),
        "reduce": lambda: world.reduce(full, out_full, root=0, algorithm=impl),
        "scatter": lambda: world.scatter(full_k, out_part, root=0, algorithm=impl),
        "gather": lambda: world.gather(part, out_full_k, root=0, algorithm=impl),
    }
    return calls[op]


def _nccl_call(world, op, device, full, part, out_part, full_k, out_full_k):
    from .torch_dist import start_torch_distributed
    dist = start_torch_distributed(world, device)
    root_list = list(full_k.chunk(world.size)) if world.size > 1 else [full_k]
    calls = {
        "all_reduce": lambda: dist.all_reduce(full),
        "reduce_scatter": lambda: dist.reduce_scatter_tensor(out_part, full_k),
        "all_gather": lambda: dist.all_gather_into_tensor(out_full_k, part),
        "broadcast": lambda: dist.broadcast(full, src=0),
        "reduce": lambda: dist.reduce(full, dst=0),
        "scatter": lambda: dist.scatter(out_part, root_list if world.rank == 0 else None, src=0),
        "gather": lambda: dist.gather(part, list(out_full_k.chunk(world.size)) if world.rank == 0
                                      else None, dst=0),
    }
    return calls[op]


def _mpi_type(dtype):
    from mpi4py import MPI
    return {np.float64: MPI.DOUBLE, np.float32: MPI.FLOAT, np.int64: MPI.INT64_T,
            np.int32: MPI.INT32_T, np.uint8: MPI.UINT8_T}.get(DTYPES[dtype].storage.type)


def _direct_mpi_call(world, op, dtype, full, part, out_full, out_part, k):
    """MPI's collectives on the GPU tensors themselves (a CUDA-aware MPI)."""
    from mpi4py import MPI

    from ..comm.transport.cuda_mpi import DeviceBytes
    mpi_type = _mpi_type(dtype)
    if mpi_type is None:
        return None
    import torch
    comm, p = world.mpi_comm, world.size

    def dev(t, n=None):
        n = t.numel() if n is None else n
        return [DeviceBytes(t.data_ptr(), n * t.element_size()), n, mpi_type]

    def after_stream(mpi_call):
        def call():
            torch.cuda.current_stream().synchronize()
            mpi_call()
        return call
    calls = {
        "all_reduce": lambda: comm.Allreduce(MPI.IN_PLACE, dev(full)),
        "reduce_scatter": lambda: comm.Reduce_scatter_block(dev(full, k * p), dev(out_part)),
        "all_gather": lambda: comm.Allgather(dev(part), dev(out_full, k * p)),
        "broadcast": lambda: comm.Bcast(dev(full), root=0),
        "reduce": lambda: comm.Reduce(dev(full), dev(out_full), root=0),
        "scatter": lambda: comm.Scatter(dev(full, k * p), dev(out_part), root=0),
        "gather": lambda: comm.Gather(dev(part), dev(out_full, k * p), root=0),
    }
    return after_stream(calls[op])


def _staged_mpi_call(world, op, dtype, full, part, out_full, out_part, k):
    from mpi4py import MPI
    mpi_type = _mpi_type(dtype)
    if mpi_type is None:
        return None
    import torch
    host = {name: torch.empty(t.numel(), dtype=t.dtype).pin_memory()
            for name, t in (("full", full), ("part", part), ("out_full", out_full),
                            ("out_part", out_part))}
    h = {name: t.numpy() for name, t in host.items()}
    comm, p = world.mpi_comm, world.size

    def staged(mpi_call, inputs, outputs):
        def call():
            for name, dev in inputs:
                host[name].copy_(dev)
            mpi_call()
            for name, dev in outputs:
                dev.copy_(host[name], non_blocking=True)
        return call
    calls = {
        "all_reduce": staged(lambda: comm.Allreduce(MPI.IN_PLACE, [h["full"], mpi_type]),
                             [("full", full)], [("full", full)]),
        "reduce_scatter": staged(lambda: comm.Reduce_scatter_block(
            [h["full"][: k * p], mpi_type], [h["out_part"], mpi_type]),
            [("full", full)], [("out_part", out_part)]),
        "all_gather": staged(lambda: comm.Allgather([h["part"], mpi_type],
                                                    [h["out_full"][: k * p], mpi_type]),
                             [("part", part)], [("out_full", out_full)]),
        "broadcast": staged(lambda: comm.Bcast([h["full"], mpi_type], root=0),
                            [("full", full)], [("full", full)]),
        "reduce": staged(lambda: comm.Reduce([h["full"], mpi_type], [h["out_full"], mpi_type], root=0),
                         [("full", full)], [("out_full", out_full)]),
        "scatter": staged(lambda: comm.Scatter([h["full"][: k * p], mpi_type],
                                               [h["out_part"], mpi_type], root=0),
                          [("full", full)], [("out_part", out_part)]),
        "gather": staged(lambda: comm.Gather([h["part"], mpi_type],
                                             [h["out_full"][: k * p], mpi_type], root=0),
                         [("part", part)], [("out_full", out_full)]),
    }
    return calls[op]
