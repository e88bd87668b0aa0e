"""Starts that are not MPI's (torchrun, srun without PMI) are stopped with a message saying how
to launch, instead of each process training alone."""
import os
import subprocess
import sys

from mpitrain.comm.launcher import foreign_launcher


def test_torchrun_and_srun_without_pmi_are_named():
    torch_env = {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}
    assert "mpiexec -n 2" in foreign_launcher(1, torch_env)
    assert "srun --mpi=pmix" in foreign_launcher(1, {"SLURM_NTASKS": "4", "SLURM_PROCID": "0"})


def test_right_starts_pass():
    assert foreign_launcher(2, {"WORLD_SIZE": "2", "RANK": "0"}) is None      # MPI sees both
    assert foreign_launcher(1, {}) is None                                    # one process
    assert foreign_launcher(1, {"WORLD_SIZE": "1", "RANK": "0"}) is None
    assert foreign_launcher(1, {"SLURM_NTASKS": "1", "SLURM_PROCID": "0"}) is None


def test_the_trainer_stops_a_torchrun_start_in_one_line():
    env = dict(os.environ, WORLD_SIZE="2", RANK="0", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
               MASTER_PORT="29500")
    proc = subprocess.run([sys.executable, "-m", "mpitrain.train", "vit_digits", "--steps", "1"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "torch launcher (WORLD_SIZE=2" in proc.stderr and "Traceback" not in proc.stderr
