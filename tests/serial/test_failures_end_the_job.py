"""No rank hangs when another fails: each case starts a real 2-rank job that must end, non-zero,
with a message naming the rank and the cause, well within the subprocess timeout."""
import textwrap
import time

from launch import run_mpi

PRELUDE = "import time, numpy as np\nfrom mpitrain.comm import init\n"


def run_script(tmp_path, body, env=None, nranks=2):
    script = tmp_path / "job.py"
    script.write_text(PRELUDE + textwrap.dedent(body))
    start = time.monotonic()
    proc = run_mpi(nranks, [str(script)], env=env, timeout=90)
    return proc, time.monotonic() - start


def test_uncaught_exception_aborts_every_rank(tmp_path):
    proc, elapsed = run_script(tmp_path, """
        w = init(timeout=0)                     # no watchdog: the abort hook alone must end it
        if w.rank == 1:
            raise RuntimeError("boom on purpose")
        w.all_reduce(np.zeros(4))               # rank 0 would wait here forever
    """)
    assert proc.returncode != 0
    assert "rank 1 of 2" in proc.stderr and "boom on purpose" in proc.stderr, proc.stderr
    assert elapsed < 60


def test_timeout_names_the_missing_rank(tmp_path):
    proc, elapsed = run_script(tmp_path, """
        w = init(timeout=2)
        if w.rank == 0:
            w.all_reduce(np.zeros(4))
        else:
            time.sleep(60)                      # never arrives
    """)
    assert proc.returncode != 0
    assert "rank 0: all_reduce #1" in proc.stderr and "for rank 1" in proc.stderr, proc.stderr
    assert "has not arrived" in proc.stderr
    assert elapsed < 45


def test_debug_mode_names_ranks_that_never_arrive(tmp_path):
    proc, elapsed = run_script(tmp_path, """
        w = init(timeout=2, debug=True)
        if w.rank != 2:
            w.broadcast(np.zeros(4))
        else:
            time.sleep(60)
    """, nranks=3)
    assert proc.returncode != 0
    assert "rank(s) [2] have not arrived" in proc.stderr, proc.stderr
    assert elapsed < 45


def test_debug_flag_from_environment(tmp_path):
    proc, _ = run_script(tmp_path, """
        w = init()
        print("debug", w.debug, "timeout", w.timeout, flush=True)
    """, env={"MPITRAIN_DEBUG": "1", "MPITRAIN_TIMEOUT": "7"}, nranks=1)
    assert proc.returncode == 0, proc.stderr
    assert "debug True timeout 7.0" in proc.stdout
