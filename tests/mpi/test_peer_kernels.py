"""The GPU peer kernels (comm/peer_workspace.py, csrc/cuda_peer.cu) beyond the per-collective sweep of
test_collectives_cuda.py: pieces larger than a workspace region, many calls in a row (the
regions alternate and the barrier counters run on), calls alternating between streams, uneven
counts, in-place and overlapping buffers, and the fast lane. Oracles: MPI's allgather + numpy.

Skips without a GPU, and where the peer kernels cannot run (one GPU per rank over CUDA IPC).
    mpiexec -n 2 python -m pytest --with-mpi tests/mpi/test_peer_kernels.py
"""
import time

import numpy as np
import pytest

from mpitrain.comm import auto

from oracles import all_agree, make_input, matches, reduce_reference

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.mpi,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.fixture(autouse=True)
def peer_world(world):
    torch.cuda.set_device(world.local_rank % torch.cuda.device_count())
    reason = world.peer_kernels_reason(torch.cuda.current_device())
    if reason is not None:
        pytest.skip(f"peer kernels unavailable: {reason}")
    return world


@pytest.fixture(scope="module")
def small_region_world(world):
    """A communicator whose workspace regions hold 64 KB, so modest calls need many pieces."""
    torch.cuda.set_device(world.local_rank % torch.cuda.device_count())
    comm = world.dup(settings=world.settings.replace(peer_region_mb=0.0625))
    assert comm.peer.region_bytes() == 1 << 16
    reason = comm.peer_kernels_reason(torch.cuda.current_device())
    if reason is not None:
        pytest.skip(f"peer kernels unavailable: {reason}")
    comm.all_reduce(torch.zeros(8, device="cuda"), algorithm="one_shot")   # makes the workspace
    return comm


def gpu(array):
    return torch.from_numpy(array.copy()).cuda()


def verdict(world, failures):
    ok, why = all_agree(world, not failures, str(failures[:5]))
    assert ok, why


@pytest.mark.parametrize("algorithm", ["one_shot", "two_shot", "two_shot_push", "copy_engine"])
def test_all_reduce_in_many_pieces(small_region_world, algorithm):
    world = small_region_world
    failures = []
    for count in (16_384, 16_385, 100_003, 1_000_000):          # 64 KB of float32 per piece
        x = make_input("float32", count, seed=world.rank * 3 + count)
        expected = reduce_reference(world.mpi_comm.allgather(x), "sum", "float32", world.size)
        g = gpu(x)
        world.all_reduce(g, algorithm=algorithm)
        if not matches(g.cpu().numpy(), expected, "float32", "sum"):
            failures.append(count)
    verdict(world, failures)


def test_reduce_scatter_and_all_gather_beyond_a_region_fall_back_to_the_ring(small_region_world):
    world = small_region_world
    k = 20_000                                                  # 80 KB per rank > 64 KB
    x = make_input("float32", k * world.size, seed=world.rank)
    full = reduce_reference(world.mpi_comm.allgather(x), "sum", "float32", world.size)
    mine = torch.zeros(k, device="cuda")
    world.reduce_scatter(gpu(x), mine, algorithm="peer")
    out = torch.zeros(k * world.size, device="cuda")
    world.all_gather(mine, out, algorithm="peer")
    ok = matches(out.cpu().numpy(), full, "float32", "sum")
    verdict(world, [] if ok else ["mismatch"])


def test_many_calls_in_a_row_of_changing_sizes(peer_world):
    """Hundreds of calls, sizes and algorithms changing every call, nothing synchronised in
    between: exercises the alternating regions and the barrier counters."""
    world = peer_world
    rng = np.random.default_rng(1234)                          # the same sequence on every rank
    algorithms = ("one_shot", "two_shot", "two_shot_push", "copy_engine", "auto")
    plan = [(int(rng.integers(1, 300_000)), algorithms[i % len(algorithms)]) for i in range(200)]
    inputs, outputs = [], []
    for i, (count, algorithm) in enumerate(plan):
        x = make_input("float32", count, seed=world.rank * 100_003 + i)
        g = gpu(x)
        world.all_reduce(g, algorithm=algorithm)
        inputs.append(x)
        outputs.append(g)
    failures = []
    for i, x in enumerate(inputs):
        expected = reduce_reference(world.mpi_comm.allgather(x), "sum", "float32", world.size)
        if not matches(outputs[i].cpu().numpy(), expected, "float32", "sum"):
            failures.append(i)
    verdict(world, failures)


def test_calls_alternating_between_streams_keep_their_order(peer_world):
    """Consecutive calls on two streams, one of them held up by a sleep: the workspace orders
    its kernels itself (a kernel waits for its peers, so two may never run out of call order)."""
    world = peer_world
    streams = [torch.cuda.Stream(), torch.cuda.Stream()]
    bufs = [torch.full((1 << 18,), float(world.rank + 1 + i), device="cuda") for i in range(20)]
    torch.cuda.synchronize()
    for i, x in enumerate(bufs):
        with torch.cuda.stream(streams[i % 2]):
            if i % 5 == 0:
                torch.cuda._sleep(2_000_000)
            world.all_reduce(x, algorithm=("one_shot", "two_shot", "two_shot_push", "copy_engine")[i % 4])
    torch.cuda.synchronize()
    failures = [i for i, x in enumerate(bufs)
                if not bool((x == sum(r + 1 + i for r in range(world.size))).all())]
    verdict(world, failures)


def test_arrival_barrier_first_with_ranks_drifting_apart(peer_world):
    """peer_arrive_first (data parallel's and ZeRO's communicators): each kernel is queued
    behind a one-block wait for the peers. Ranks held up in turn by sleeps, many calls of every
    collective, each result against the oracle."""
    comm = peer_world.dup()
    comm.peer.arrive_first = True
    comm.peer.blocks = 8
    assert comm.peer_kernels_reason(torch.cuda.current_device()) is None
    p, r = comm.size, comm.rank
    rng = np.random.default_rng(99)
    failures = []
    for i in range(60):
        count = int(rng.integers(1, 200_000))
        if i % 7 == r % 7:
            torch.cuda._sleep(1_000_000)                      # this rank arrives late this time
        x = make_input("float32", count, seed=r * 7919 + i)
        g = gpu(x)
        if i % 3 == 0:
            comm.all_reduce(g, algorithm=("one_shot", "two_shot_push", "two_shot")[i % 9 // 3])
            got, expected = g, reduce_reference(comm.mpi_comm.allgather(x), "sum", "float32", p)
        elif i % 3 == 1:
            k = -(-count // p)
            full = gpu(np.resize(x, k * p))
            out = torch.empty(k, device="cuda")
            comm.reduce_scatter(full, out, algorithm="peer")
            everyone = [np.resize(y, k * p) for y in comm.mpi_comm.allgather(x)]
            got = out
            expected = reduce_reference(everyone, "sum", "float32", p)[r * k: (r + 1) * k]
        else:
            out = torch.empty(count * p, device="cuda")
            comm.all_gather(g, out, algorithm="peer")
            got, expected = out, np.concatenate(comm.mpi_comm.allgather(x))
        if not matches(got.cpu().numpy(), expected, "float32", "sum"):
            failures.append(i)
    verdict(comm, failures)


@pytest.mark.parametrize("wait,reduce_blocks", [("memop", 0), ("kernel", 0), ("memop", 3)])
def test_copy_engine_lane_with_ranks_drifting_apart(peer_world, wait, reduce_blocks, monkeypatch):
    """The overlapped communicators' fast lane (data parallel's buckets): every call goes by the
    copy engines, waiting in the stream (memop) or in a one-block kernel; the reduce kernel's
    grid sized by the data, or capped at 3 blocks (each thread then strides over many items).
    Ranks held up in turn, sizes and dtypes changing, nothing synchronised between calls; every
    result against the oracle."""
    from mpitrain.comm.peer_workspace import PeerWorkspace
    monkeypatch.setattr(PeerWorkspace, "ce_reduce_blocks", reduce_blocks)
    comm = peer_world.dup(settings=peer_world.settings.replace(peer_ce_wait=wait))
    comm.peer.copy_engine = True
    comm.peer.arrive_first = True
    p, r = comm.size, comm.rank
    rng = np.random.default_rng(7)
    calls = []
    for i in range(40):
        dtype = ("float32", "bfloat16")[i % 2]
        count = int(10 ** rng.uniform(0, 6.5))                # 1 element to 3 M, every scale
        if i % 5 == r % 5:
            torch.cuda._sleep(2_000_000)                      # this rank arrives late this time
        x = make_input(dtype, count, seed=r * 7919 + i)
        g = gpu(x)
        if dtype == "bfloat16":
            g = g.view(torch.int16).view(torch.bfloat16)
        comm.all_reduce(g)
        calls.append((dtype, x, g))
    assert comm._peer_lane.workspace.ce_wait == wait
    assert comm._peer_lane.workspace.ce_reduce_blocks == reduce_blocks
    failures = []
    for i, (dtype, x, g) in enumerate(calls):
        expected = reduce_reference(comm.mpi_comm.allgather(x), "sum", dtype, p)
        got = g.view(torch.int16) if dtype == "bfloat16" else g
        if not matches(got.cpu().numpy().view(expected.dtype), expected, dtype, "sum"):
            failures.append(i)
    verdict(comm, failures)


def test_copy_engine_avg_scales_in_its_reducing_pass(peer_world):
    """op="avg" on the copy-engine lane (data parallel's buckets of .grad views): the sum times
    1/p in the reducing kernel, no second pass. Against numpy's float64 mean of every rank's
    input: within one rounding of the dtype, and the same bits on every rank."""
    comm = peer_world.dup()
    comm.peer.copy_engine = True
    r = comm.rank
    failures = []
    for dtype, rtol in ((torch.float32, 1e-6), (torch.bfloat16, 8e-3), (torch.float16, 1e-3)):
        for count in (1, 4099, 3_000_001):
            x = torch.randn(count, generator=torch.Generator().manual_seed(r * 131 + count))
            g = x.to(dtype).cuda()
            comm.all_reduce(g, op="avg")
            inputs = comm.mpi_comm.allgather(x.to(dtype).double().numpy())
            expected = np.mean(inputs, axis=0)
            got = g.double().cpu().numpy()
            if not np.allclose(got, expected, rtol=rtol, atol=rtol * np.abs(expected).max()):
                failures.append((str(dtype), count, float(np.abs(got - expected).max())))
            digest = float(g.double().sum())
            if len(set(comm.mpi_comm.allgather(digest))) != 1:
                failures.append((str(dtype), count, "ranks differ"))
    verdict(comm, failures)


def test_copy_engine_call_a_peer_has_not_reached_is_seen_by_the_watchdog_check(peer_world):
    """A copy-engine call waits in the stream, out of the host's sight: the workspace's check
    reports it once it is older than the timeout and not done, and stops once the peer came."""
    comm = peer_world.dup()
    comm.peer.copy_engine = True
    if comm.size < 2:
        pytest.skip("needs a peer")
    x = torch.ones(1 << 20, device="cuda")
    comm.all_reduce(x)                                        # makes the workspace
    torch.cuda.synchronize()
    ws = comm._peer_lane.workspace
    if comm.rank == 0:
        comm.all_reduce(x)                                    # rank 1 comes 3 s later
        late = ws._overdue(time.monotonic() + 100, timeout_s=50)
        early = ws._overdue(time.monotonic(), timeout_s=50)
        comm.mpi_comm.barrier()
    else:
        time.sleep(3)
        comm.mpi_comm.barrier()
        comm.all_reduce(x)
    torch.cuda.synchronize()
    if comm.rank == 0:
        assert late is not None and "never reached" in late, late
        assert early is None
        assert ws._overdue(time.monotonic() + 100, timeout_s=50) is None     # done now
    assert bool((x == comm.size ** 2).all())


@pytest.mark.parametrize("wait", ["memop", "kernel"])
def test_registered_outputs_take_the_peers_results_directly(peer_world, wait):
    """Buffers registered for in-place all-reduces (data parallel's buckets): the peers write
    the reduced chunks straight into them. Many calls in a row on three registered buffers
    (one of them larger than a region, so in pieces at offsets), ranks held up in turn, new
    contents every time, prefixes of a buffer too; every result against the oracle."""
    comm = peer_world.dup(settings=peer_world.settings.replace(    # 64 KB regions: 32 KB pieces
        peer_ce_wait=wait, peer_region_mb=0.0625))
    comm.peer.copy_engine = True
    p, r = comm.size, comm.rank
    if p < 2:
        pytest.skip("needs a peer")
    buffers = [torch.zeros(n, device="cuda") for n in (40_000, 5, 4096)]   # 160 KB: 5 pieces
    assert [comm.register_in_place(b) for b in buffers] == [True] * 3
    ws = comm._peer_lane.workspace
    assert len(ws._registered) == 3 and ws.max_region_bytes == 1 << 16
    calls = []
    for i in range(24):
        b = buffers[i % 3]
        count = b.numel() if i % 4 else max(1, b.numel() // 3)    # now and then a prefix
        if i % 5 == r % 5:
            torch.cuda._sleep(2_000_000)
        x = make_input("float32", count, seed=r * 7919 + i)
        b[:count].copy_(torch.from_numpy(x))
        comm.all_reduce(b[:count])
        calls.append((x, b[:count].clone()))
    assert ws.registered_calls == 24
    failures = []
    for i, (x, got) in enumerate(calls):
        expected = reduce_reference(comm.mpi_comm.allgather(x), "sum", "float32", p)
        if not matches(got.cpu().numpy(), expected, "float32", "sum"):
            failures.append(i)
    verdict(comm, failures)


def test_a_freed_registered_buffer_is_forgotten(peer_world):
    """A registration dies with its tensor: a new tensor at the same address is all-reduced the
    unregistered way (its peers' copies are not mapped); MPITRAIN_PEER_REGISTER=0 registers
    nothing (settings.peer_register, MPITRAIN_PEER_REGISTER)."""
    comm = peer_world.dup()
    comm.peer.copy_engine = True
    if comm.size < 2:
        pytest.skip("needs a peer")
    b = torch.zeros(1 << 16, device="cuda")
    assert comm.register_in_place(b)
    ws = comm._peer_lane.workspace
    ptr = b.data_ptr()
    del b
    torch.cuda.synchronize()
    c = torch.full((1 << 16,), float(comm.rank + 1), device="cuda")
    assert ws._peer_outputs(c.data_ptr(), 4 << 16) is None
    assert ptr not in ws._registered or c.data_ptr() != ptr
    before = ws.registered_calls
    comm.all_reduce(c)
    assert bool((c == comm.size * (comm.size + 1) / 2).all())
    assert ws.registered_calls == before
    other = peer_world.dup(settings=peer_world.settings.replace(peer_register=False))
    other.peer.copy_engine = True
    assert other.register_in_place(torch.zeros(16, device="cuda")) is False


def test_uneven_counts_in_place_and_overlapping(peer_world):
    world = peer_world
    p, r = world.size, world.rank
    counts = [3 + 7 * q for q in range(p)]                      # uneven, not multiples of 16 bytes
    total = sum(counts)
    start = sum(counts[:r])
    failures = []
    x = make_input("int32", total, seed=r + 5)
    full = reduce_reference(world.mpi_comm.allgather(x), "sum", "int32", p)
    mine = torch.zeros(counts[r], dtype=torch.int32, device="cuda")
    world.reduce_scatter_v(gpu(x), mine, counts, algorithm="peer")
    if not np.array_equal(mine.cpu().numpy(), full[start:start + counts[r]]):
        failures.append("reduce_scatter_v")
    # the output overlaps the input: it is the input's first block
    buf = gpu(x)
    world.reduce_scatter_v(buf, buf[:counts[r]], counts, algorithm="peer")
    if not np.array_equal(buf[:counts[r]].cpu().numpy(), full[start:start + counts[r]]):
        failures.append("reduce_scatter_v overlapping")
    # all_gather_v in place: this rank's block of the output is the input
    out = torch.zeros(total, dtype=torch.int32, device="cuda")
    out[start:start + counts[r]] = torch.from_numpy(full[start:start + counts[r]]).cuda()
    world.all_gather_v(out[start:start + counts[r]], out, counts, algorithm="peer")
    if not np.array_equal(out.cpu().numpy(), full):
        failures.append("all_gather_v in place")
    verdict(world, failures)


def test_the_fast_lane_matches_the_general_path(peer_world):
    """auto on a plain CUDA tensor takes the lane; a CuPy-free, non-lane path (explicit
    algorithm) gives the same bits; avg divides; a non-contiguous tensor is still refused."""
    from mpitrain.comm import CollectiveError
    world = peer_world
    failures = []
    for dtype in (torch.float32, torch.bfloat16, torch.float16, torch.int64):
        for count in (1, 1000, 65_536, 3_000_001):
            base = torch.randint(-8, 9, (count,), generator=torch.Generator().manual_seed(
                world.rank * 31 + count)).to(dtype)
            lane = base.cuda()
            world.all_reduce(lane)
            general = base.cuda()
            alg = auto.choose("all_reduce", count * lane.element_size(), world.size, True, True)
            world.all_reduce(general, algorithm=alg)
            if not torch.equal(lane, general):
                failures.append((str(dtype), count))
    avg = torch.full((4096,), float(world.rank), device="cuda")
    world.all_reduce(avg, op="avg")
    if not bool((avg == (world.size - 1) / 2).all()):
        failures.append("avg")
    verdict(world, failures)
    with pytest.raises(CollectiveError, match=f"rank {world.rank}: buf is not contiguous"):
        world.all_reduce(torch.zeros(8, 8, device="cuda").t())


def test_every_rank_gets_the_same_bits(peer_world):
    """Floating sums are taken in rank order on every rank: data parallelism relies on it."""
    world = peer_world
    failures = []
    for alg, count in (("one_shot", 10_001), ("two_shot", 1_000_003), ("two_shot_push", 1_000_003),
                       ("copy_engine", 1_000_003)):
        x = torch.randn(count, generator=torch.Generator().manual_seed(world.rank)).cuda()
        world.all_reduce(x, algorithm=alg)
        digest = float(x.double().mul(torch.arange(count, device="cuda").double().sin()).sum())
        if len(set(world.mpi_comm.allgather(digest))) != 1:
            failures.append(alg)
    verdict(world, failures)
