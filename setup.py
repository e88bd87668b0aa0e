"""Packaging: metadata lives in pyproject.toml; this file builds the kernels into the package.

    pip install .            the C (and, where nvcc is, the CUDA) kernels compiled into the wheel,
                             with csrc/ shipped beside them so `python -m mpitrain.kernels.build`
                             rebuilds from site-packages
    pip install -e .         (make install) the kernels are built by `make kernels` instead

MPITRAIN_BUILD_CUDA=0 leaves the CUDA library out of the wheel (it is then built at first use on
a GPU, where nvcc is). The wheel's C kernels are built without -march=native, so the wheel runs
on other CPUs of the same architecture; `python -m mpitrain.kernels.build --force` on the
machine itself builds them for its CPU.
"""
import os
import shutil
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = Path(__file__).resolve().parent


class BuildWithKernels(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        package = Path(self.build_lib).resolve() / "mpitrain" / "kernels"
        shipped = package / "csrc"
        if shipped.exists():
            shutil.rmtree(shipped)
        shutil.copytree(HERE / "csrc", shipped)
        sys.path.insert(0, str(HERE / "mpitrain" / "kernels"))
        try:
            import build as kernel_build          # mpitrain/kernels/build.py, stdlib only
        finally:
            sys.path.pop(0)
        kernel_build.build_all(shipped, package / "_lib", native=False,
                               cuda=os.environ.get("MPITRAIN_BUILD_CUDA", "1") != "0")


class WithCompiledLibraries(Distribution):
    def has_ext_modules(self):           # a platform wheel: it carries .so files
        return True


setup(cmdclass={"build_py": BuildWithKernels}, distclass=WithCompiledLibraries)
