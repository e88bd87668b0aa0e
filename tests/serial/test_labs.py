"""Every lab runs at small sizes under mpiexec and passes its own oracle check (`OK: ...`)."""
import json
from pathlib import Path

import pytest

from launch import run_mpi

LABS = Path(__file__).resolve().parents[2] / "examples" / "labs"


def run_lab(name, *flags, ranks=4, timeout=300):
    proc = run_mpi(ranks, [str(LABS / name), *flags], timeout=timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "\nOK: " in "\n" + proc.stdout, proc.stdout
    return proc.stdout


@pytest.mark.parametrize("ranks", [2, 4])
def test_lab1_scatter_compute_reduce_broadcast(ranks):
    out = run_lab("01_scatter_reduce.py", ranks=ranks)
    if ranks == 4:
        assert "rank 0: got 39, halved to 19.5, average 35.25 (sum of halves 141)" in out
        assert out.count(", average 35.25") == 8         # 4 ranks x (mpi4py, mpitrain)
        ranks = [int(line.split()[1].rstrip(":")) for line in out.splitlines()
                 if line.startswith("rank ") and ": got " in line]
        assert ranks == [0, 1, 2, 3, 0, 1, 2, 3]          # in rank order, every run


def test_step_pauses_for_enter_under_mpiexec_at_a_terminal():
    """As a student runs it: mpiexec in a terminal (a pseudo-terminal here), --step. The next
    step appears only after Enter; every Enter brings one more."""
    import os
    import pty
    import select
    import sys
    import time

    from launch import mpiexec_command
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_mpi_yield_when_idle="1", PYTHONUNBUFFERED="1")
    cmd = [*mpiexec_command(), "-n", "2", sys.executable, str(LABS / "03_ring.py"), "--step",
           "--size", "4"]
    pid, master = pty.fork()           # a session of its own, the pty its terminal: a user's
    if pid == 0:
        os.execvpe(cmd[0], cmd, env)
    seen = ""

    def read_until(text, seconds):
        nonlocal seen
        deadline = time.time() + seconds
        while text not in seen and time.time() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    seen += os.read(master, 65536).decode(errors="replace")
                except OSError:
                    break
        return text in seen

    try:
        assert read_until("(Enter: next step)", 120), seen
        time.sleep(2)                                     # nobody pressed Enter yet
        read_until("never printed", 0.5)
        assert seen.count("(Enter: next step)") == 1 and "after step 1" not in seen, seen
        os.write(master, b"\n")
        assert read_until("after step 1", 60), seen
        for _ in range(10):                               # the remaining steps, one Enter each
            os.write(master, b"\n")
            time.sleep(0.3)
        assert read_until("OK: ", 60), seen
        _, status = os.waitpid(pid, 0)
        pid = None
        assert os.waitstatus_to_exitcode(status) == 0, seen
    finally:
        if pid is not None:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        os.close(master)


def test_lab2_trees(tmp_path):
    out = run_lab("02_trees.py", "--trace", str(tmp_path / "t.json"))
    assert "broadcast #1 (linear)" in out and "reduce #4 (binomial)" in out
    events = json.loads((tmp_path / "t.json").read_text())["traceEvents"]
    assert any(e.get("cat") == "broadcast/binomial" for e in events)


def test_lab3_ring_steps_and_pictures(tmp_path):
    trace, png = tmp_path / "ring.json", tmp_path / "ring.png"
    out = run_lab("03_ring.py", "--step", "--trace", str(trace), "--png", str(png))
    assert "after step 6" in out and "6 steps per rank: 3 of reduce-scatter, then 3 of all-gather" in out
    assert "rank 3: [   600    604    608    612    616    620    624    628 ]" in out
    moves = [e for e in json.loads(trace.read_text())["traceEvents"] if e["ph"] == "X"]
    assert len(moves) == 4 * 6
    assert png.stat().st_size > 2000


@pytest.mark.parametrize("ranks", [2, 3])
def test_lab6_zero_memory_and_step(tmp_path, ranks):
    out = run_lab("06_zero.py", "--steps", "2", "--trace", str(tmp_path / "z.json"), ranks=ranks)
    zero1 = out.split("zero1: the collectives")[1].split("zero2:")[0]
    zero2 = out.split("zero2: the collectives")[1].split("zero3:")[0]
    zero3 = out.split("zero3: the collectives")[1].split("\nstep")[0]
    assert "reduce_scatter" in zero1 and "after backward" in zero1   # stage 1: after backward
    assert "backward\n" in zero2.split("all_gather")[0]              # stage 2: inside backward
    assert "optimizer step + gather" in zero2.split("all_gather")[1].splitlines()[0]
    lines = [line.split() for line in zero3.strip().splitlines()[1:]]
    assert ["all_gather", "forward"] in [[w[0], w[2]] for w in lines]    # stage 3: blocks
    assert ["all_gather", "backward"] in [[w[0], w[2]] for w in lines]   # gathered twice,
    assert ["reduce_scatter", "backward"] in [[w[0], w[2]] for w in lines]
    assert not any(w[0] == "all_gather" and w[2] == "optimizer" for w in lines)
    assert json.loads((tmp_path / "z.json").read_text())["traceEvents"]


def test_lab4_cost_model(tmp_path):
    out = run_lab("04_doubling_cost_model.py", "--sizes", "1K,64K", "--repeats", "3",
                  "--png", str(tmp_path / "m.png"))
    assert "model: alpha" in out and "rabenseifner" in out
    assert (tmp_path / "m-model.png").stat().st_size > 2000


def test_lab5_data_parallel():
    out = run_lab("05_data_parallel.py", "--steps", "4")
    assert "bucket   0" in out and "4 ranks follow the single-process losses" in out


def test_lab7_baselines():
    out = run_lab("07_baselines.py", "--quick", timeout=400)
    assert "mpi (native)" in out and "ddp" in out


def test_lab8_diloco():
    out = run_lab("08_diloco.py", "--epochs", "1", "--sync-every", "5")
    assert "MB between workers" in out and "fewer bytes between workers" in out
    proc = run_mpi(2, [str(LABS / "08_diloco.py"), "--png", "x.png"], timeout=60)
    assert proc.returncode != 0 and "lab 8 has no step-through" in proc.stderr
