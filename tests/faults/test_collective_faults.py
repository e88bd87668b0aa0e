"""The fault matrix of the collectives: stalls name the one rank actually waited on (the pending
receive's source), a stalled barrier is reported, not crashed on, and mismatched calls end the
job. Each case is a real job that must end non-zero, named, well within the bound."""
import re
import textwrap
import time

from launch import run_mpi

PRELUDE = "import time, numpy as np\nfrom mpitrain.comm import init\n"
WAITED = re.compile(r"rank (\d+): (\w+) #\d+ \((\w+)\) has waited [\d.]+ s for rank ([\d, ]+),")


def run_script(tmp_path, body, nranks=2):
    script = tmp_path / "job.py"
    script.write_text(PRELUDE + textwrap.dedent(body))
    start = time.monotonic()
    proc = run_mpi(nranks, [str(script)], timeout=90)
    return proc, time.monotonic() - start


def waits(stderr):
    """(waiting rank, collective, algorithm, [ranks named]) of every stall message."""
    return [(int(r), name, alg, [int(p) for p in peers.split(",")])
            for r, name, alg, peers in WAITED.findall(stderr)]


def test_a_stalled_barrier_names_the_missing_rank(tmp_path):
    proc, elapsed = run_script(tmp_path, """
        w = init(timeout=2)
        if w.rank == 1:
            time.sleep(60)
        w.barrier()
    """)
    assert proc.returncode != 0
    assert (0, "barrier", "dissemination", [1]) in waits(proc.stderr), proc.stderr
    assert "too many values to unpack" not in proc.stderr
    assert elapsed < 45


def test_small_all_reduce_names_the_pending_receive(tmp_path):
    # recursive doubling over 4 ranks with rank 2 stopped: rank 0 and rank 3 wait for rank 2
    # itself, rank 1 for rank 3 (which waits for 2); never a list of partners
    proc, elapsed = run_script(tmp_path, """
        w = init(timeout=2)
        if w.rank == 2:
            time.sleep(60)
        w.all_reduce(np.ones(4))
    """, nranks=4)
    assert proc.returncode != 0
    seen = waits(proc.stderr)
    assert seen, proc.stderr
    pending = {0: 2, 3: 2, 1: 3}
    for rank, name, alg, peers in seen:
        assert name == "all_reduce" and peers == [pending[rank]], proc.stderr
    assert elapsed < 45


def test_ring_names_one_neighbour_the_wait_is_on(tmp_path):
    # a rank waits on its receive from the left or, for a large message, on its send to the
    # right: either way one rank, never both neighbours; rank 2's neighbours name rank 2
    proc, elapsed = run_script(tmp_path, """
        w = init(timeout=2)
        if w.rank == 2:
            time.sleep(60)
        w.all_reduce(np.ones(1 << 16), algorithm="ring")
    """, nranks=4)
    assert proc.returncode != 0
    seen = waits(proc.stderr)
    assert seen, proc.stderr
    for rank, name, alg, peers in seen:
        assert alg == "ring" and len(peers) == 1, proc.stderr
        assert peers[0] in ((rank - 1) % 4, (rank + 1) % 4), proc.stderr
        if rank in (1, 3):
            assert peers == [2], proc.stderr
    assert elapsed < 45


def test_a_count_mismatch_without_debug_mode_ends_the_job(tmp_path):
    proc, elapsed = run_script(tmp_path, """
        w = init(timeout=3)
        w.all_reduce(np.ones(1000 if w.rank == 1 else 10))
    """)
    assert proc.returncode != 0
    assert elapsed < 45


def test_an_op_mismatch_is_caught_in_debug_mode(tmp_path):
    proc, elapsed = run_script(tmp_path, """
        w = init(timeout=3, debug=True)
        w.all_reduce(np.ones(4), op="max" if w.rank == 1 else "sum")
    """)
    assert proc.returncode != 0
    assert "op" in proc.stderr and "max" in proc.stderr and "sum" in proc.stderr, proc.stderr
    assert elapsed < 45
