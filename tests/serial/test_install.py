"""`pip install .` gives a working package: the kernels compiled into the wheel, csrc/ shipped
so a rebuild works from site-packages, and a library missing at first use built into the cache
by one process while the others wait.

The wheel is built here (without the CUDA library, which takes minutes) and installed into a
directory of its own; every check runs a fresh Python outside the source tree, so the installed
copy is the one imported.
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mpitrain

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("install")
    env = {**os.environ, "MPITRAIN_BUILD_CUDA": "0"}
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps",
                    "--no-build-isolation", "-q", "-w", str(tmp / "wheels")], check=True, env=env,
                   cwd=tmp)
    wheels = list((tmp / "wheels").glob("mpitrain-*.whl"))
    assert len(wheels) == 1, wheels
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(tmp / "site"), str(wheels[0])], check=True, cwd=tmp)
    return tmp


def run_installed(tmp, code, **env):
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(tmp / "site"), **env}, timeout=300)
    assert result.returncode == 0, result.stderr
    return result


def test_the_wheel_is_a_platform_wheel_with_the_kernels_and_their_sources(installed):
    wheel = next((installed / "wheels").glob("*.whl")).name
    assert "linux" in wheel and "none-any" not in wheel
    package = installed / "site" / "mpitrain" / "kernels"
    assert (package / "_lib" / "libmpitrain_cpu.so").is_file()
    shipped = sorted(p.name for p in (package / "csrc").iterdir())
    assert shipped == sorted(p.name for p in (ROOT / "csrc").iterdir())


def test_the_installed_package_is_imported_and_its_kernels_reduce(installed):
    out = run_installed(installed, """
import numpy as np, mpitrain
from mpitrain import kernels
from mpitrain.kernels import compiled, locations
print(mpitrain.__file__)
print(locations.find_library("libmpitrain_cpu.so"))
a = np.arange(1000, dtype=np.float32); b = np.ones(1000, np.float32)
kernels.reducer("float32", "sum", min_bytes=0)(a, b)
assert compiled.cpu_lib() is not None
print(float(a.sum()))
""").stdout.split("\n")
    site = str(installed / "site")
    assert out[0].startswith(site) and out[1].startswith(site)
    assert float(out[2]) == float((np.arange(1000, dtype=np.float32) + 1).sum())


def test_version_command(installed):
    result = subprocess.run([sys.executable, "-m", "mpitrain", "--version"], cwd=installed,
                            env={**os.environ, "PYTHONPATH": str(installed / "site")},
                            capture_output=True, text=True, check=True)
    assert result.stdout.strip() == f"mpitrain {mpitrain.__version__}"


def test_a_rebuild_works_from_site_packages(installed):
    lib = installed / "site" / "mpitrain" / "kernels" / "_lib" / "libmpitrain_cpu.so"
    before = lib.stat().st_mtime_ns
    result = subprocess.run([sys.executable, "-m", "mpitrain.kernels.build", "--force",
                             "--cpu-only"], cwd=installed, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(installed / "site")})
    assert result.returncode == 0, result.stderr
    assert lib.stat().st_mtime_ns > before


def test_a_missing_library_is_built_once_at_first_use_while_the_others_wait(installed):
    """Four processes at once, as four ranks of a node: one builds into the cache, the others
    wait on its lock and load what it built."""
    lib_dir = installed / "site" / "mpitrain" / "kernels" / "_lib"
    for f in lib_dir.iterdir():
        f.unlink()
    lib_dir.chmod(0o500)          # as a read-only site-packages: the build goes to the cache
    cache = installed / "cache"
    code = ("from mpitrain.kernels import compiled, locations\n"
            "assert compiled.cpu_lib() is not None\n"
            "print(locations.find_library('libmpitrain_cpu.so'))\n")
    env = {**os.environ, "PYTHONPATH": str(installed / "site"), "MPITRAIN_KERNEL_CACHE": str(cache)}
    try:
        procs = [subprocess.Popen([sys.executable, "-c", code], cwd=installed, env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(4)]
        outputs = [p.communicate(timeout=300) for p in procs]
    finally:
        lib_dir.chmod(0o700)
    assert all(p.returncode == 0 for p in procs), outputs
    assert {out.strip() for out, _ in outputs} == {str(cache / "libmpitrain_cpu.so")}
    builders = [err for _, err in outputs if "building libmpitrain_cpu.so" in err]
    assert len(builders) == 1, outputs


def test_mpicc_is_honoured_and_a_new_one_rebuilds_the_mpi_library(tmp_path, monkeypatch):
    """make install MPICC=... passes MPICC to the kernel build: the MPI library is built with it,
    and a library built with another compiler is rebuilt rather than kept."""
    from mpitrain.kernels import build, locations
    real = build.find_mpicc()
    if real is None:
        pytest.skip("no mpicc on this machine")
    calls = tmp_path / "calls"
    wrapper = tmp_path / "my-mpicc"
    wrapper.write_text(f"#!/bin/sh\necho called >> {calls}\nexec {real} \"$@\"\n")
    wrapper.chmod(0o755)
    out = tmp_path / "lib"
    monkeypatch.delenv("MPICC", raising=False)
    assert build.Build(locations.source_dir(), out).mpi()          # with the default mpicc
    assert not calls.exists()
    monkeypatch.setenv("MPICC", str(wrapper))
    assert build.find_mpicc() == str(wrapper)
    assert build.Build(locations.source_dir(), out).mpi()
    assert calls.read_text().count("called") >= 1
    assert str(wrapper) in (out / (build.MPI_LIB + ".recipe")).read_text()
    before = calls.read_text()
    build.Build(locations.source_dir(), out).mpi()                  # current: not rebuilt
    assert calls.read_text() == before
    monkeypatch.setenv("MPICC", str(tmp_path / "missing-mpicc"))
    assert build.find_mpicc() is None
