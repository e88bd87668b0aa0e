"""Where the kernels' sources and compiled libraries live, in a source tree and once installed.

    sources:   mpitrain/kernels/csrc/ (an installed package: pip ships them there), else the
               repository's csrc/ (a source tree or an editable install)
    libraries: mpitrain/kernels/_lib/ (built by `make install`, by `pip install`, or by
               `python -m mpitrain.kernels.build`), else the cache directory
               $MPITRAIN_KERNEL_CACHE (default ~/.cache/mpitrain/kernels-VERSION), where a
               library missing at first use is built (compiled.py)

This module imports nothing of mpitrain, so setup.py can load it by its path.
"""
import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PACKAGE_LIB_DIR = PACKAGE_DIR / "_lib"
VERSION_FILE = PACKAGE_DIR.parent / "__init__.py"


def source_dir():
    """The csrc directory to compile from, or None when neither place has it."""
    for candidate in (PACKAGE_DIR / "csrc", PACKAGE_DIR.parents[1] / "csrc"):
        if (candidate / "mt_common.h").is_file():
            return candidate
    return None


def _version():
    for line in VERSION_FILE.read_text().splitlines():
        if line.startswith("__version__"):
            return line.split("=", 1)[1].strip().strip("\"'")
    return "unknown"


def cache_dir():
    """Where libraries are built when the package directory has none (and is not writable)."""
    configured = os.environ.get("MPITRAIN_KERNEL_CACHE")
    if configured:
        return Path(configured)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "mpitrain" / f"kernels-{_version()}"


def library_dirs():
    return [PACKAGE_LIB_DIR, cache_dir()]


def find_library(name):
    """The first existing path of library `name` (e.g. libmpitrain_cpu.so), or None."""
    for directory in library_dirs():
        if (directory / name).is_file():
            return directory / name
    return None


def writable_lib_dir():
    """The package's _lib when it can be written (a source tree, a user's venv), else the cache."""
    try:
        PACKAGE_LIB_DIR.mkdir(exist_ok=True)
        if os.access(PACKAGE_LIB_DIR, os.W_OK):
            return PACKAGE_LIB_DIR
    except OSError:
        pass
    return cache_dir()
