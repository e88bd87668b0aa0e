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
    assert "Questions (this run's numbers answer them):\n  1. " in proc.stdout   # every lab ends so
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
        assert seen.count("(Enter: next step)") == 1 and "round 1 of" not in seen, seen
        os.write(master, b"\n")
        assert read_until("round 1 of", 60), seen
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
    assert "round 6 of 6 (the result)" in out and "6 steps per rank: 3 of reduce-scatter, then 3 of all-gather" in out
    assert "rank 3: [   600    604    608    612    616    620    624    628 ]" in out
    events = json.loads(trace.read_text())["traceEvents"]
    moves = [e for e in events if e["ph"] == "X"]
    assert len(moves) == 4 * 6
    assert {e["args"]["round"] for e in moves} == set(range(1, 7))      # one round a step
    assert any(e["name"] == "all_reduce step 4: -> 1 [0:2] <- 3 [6:8]" and e["tid"] == 0 for e in moves)
    starts = {e["id"] for e in events if e["ph"] == "s"}
    ends = {e["id"] for e in events if e["ph"] == "f"}
    assert len(starts) == 4 * 6 and starts == ends     # every receive joined to its send
    assert png.stat().st_size > 2000


@pytest.mark.parametrize("ranks", [2, 3])
def test_lab6_zero_memory_and_step(tmp_path, ranks):
    out = run_lab("06_zero.py", "--steps", "2", "--trace", str(tmp_path / "z.json"),
                  "--png", str(tmp_path / "z.png"), ranks=ranks)
    assert "the collectives of step 2 (the last)" in out and "\n   2 " in out and "\n   0 " not in out
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
    events = json.loads((tmp_path / "z.json").read_text())["traceEvents"]
    stages = [e["args"]["name"] for e in events if e["name"] == "process_name"]
    assert stages == ["zero1, step 2", "zero2, step 2", "zero3, step 2"]
    for par in ("zero1", "zero2", "zero3"):
        assert (tmp_path / f"z-{par}.png").stat().st_size > 2000


def test_lab4_cost_model(tmp_path):
    out = run_lab("04_doubling_cost_model.py", "--sizes", "1K,64K", "--repeats", "3",
                  "--png", str(tmp_path / "m.png"))
    assert "model: alpha" in out and "rabenseifner" in out
    assert (tmp_path / "m-model.png").stat().st_size > 2000     # the model, beside
    assert (tmp_path / "m.png").stat().st_size > 2000           # the timeline, where asked
    run_lab("04_doubling_cost_model.py", "--sizes", "1K", "--repeats", "2", "--png",
            str(tmp_path / "t.png"), "--model-png", str(tmp_path / "fit.png"))
    assert (tmp_path / "t.png").stat().st_size > 2000 and (tmp_path / "fit.png").exists()
    assert not (tmp_path / "t-model.png").exists()


def test_lab5_data_parallel(tmp_path):
    out = run_lab("05_data_parallel.py", "--steps", "4", "--sweep-steps", "3", "--png",
                  str(tmp_path / "b.png"))
    assert "bucket   0" in out and "4 ranks follow the single-process losses" in out
    assert "median of steps 3-4" in out and "why: one all-reduce costs at least" in out
    assert "naive: 200 all-reduces" in out and "buckets of 1 MB:   2 all-reduces" in out
    assert (tmp_path / "b.png").stat().st_size > 2000


def test_lab7_baselines(tmp_path):
    out = run_lab("07_baselines.py", "--quick", "--sweep", "--sweep-max-mb", "4", "--png",
                  str(tmp_path / "sweep.png"), timeout=400)
    assert "mpi (native)" in out and "ddp" in out
    assert "all_reduce from 1 MB to 4MB" in out and (tmp_path / "sweep.png").stat().st_size > 2000


def test_lab8_diloco():
    out = run_lab("08_diloco.py", "--epochs", "1", "--sync-every", "5")
    assert "MB between workers" in out and "fewer bytes between workers" in out


@pytest.mark.parametrize("lab, flag", [("01_scatter_reduce.py", "--trace"),
                                       ("05_data_parallel.py", "--trace"),
                                       ("06_zero.py", "--step"), ("07_baselines.py", "--size"),
                                       ("08_diloco.py", "--png")])
def test_a_common_flag_a_lab_does_not_take_is_refused_by_name(lab, flag):
    value = {"--step": [], "--size": ["3"]}.get(flag, ["x.out"])
    proc = run_mpi(1, [str(LABS / lab), flag, *value], timeout=60)
    assert proc.returncode == 2 and f"{flag}: this lab has no" in proc.stderr, proc.stderr
