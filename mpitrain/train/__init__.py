"""python -m mpitrain.train MODEL [flags]: train a Vision Transformer over the ranks of mpiexec.

    mpiexec -n 4 python -m mpitrain.train vit_digits --epochs 30     # the `make train` job
    python -m mpitrain.train --help                                  # every flag
"""
from .config import ConfigError, TrainConfig
from .loop import TrainingError, train

__all__ = ["TrainConfig", "ConfigError", "TrainingError", "train"]
