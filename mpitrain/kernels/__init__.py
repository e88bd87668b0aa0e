"""Python face of the kernels: reduce and divide (more arrive with csrc/).

Each function takes flat arrays in their storage dtype and the element type's name.
"""
from .reference import divide_, reduce_, reducer

__all__ = ["reduce_", "reducer", "divide_"]
