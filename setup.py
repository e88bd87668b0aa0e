"""mpitrain: hand-rolled MPI collectives, data-parallel and ZeRO training of Vision Transformers.

    pip install -e .          (the Makefile does this, and everything else: `make install`)
"""
from setuptools import find_packages, setup

setup(
    name="mpitrain",
    version="0.1.0",
    description="Hand-rolled MPI collectives and data-parallel / ZeRO training of Vision Transformers",
    packages=find_packages(include=["mpitrain", "mpitrain.*"]),
    python_requires=">=3.10",
    install_requires=["numpy", "mpi4py"],
    extras_require={"train": ["torch", "tqdm", "scikit-learn"], "plot": ["matplotlib"],
                    "test": ["pytest", "pytest-mpi", "hypothesis"]},
)
