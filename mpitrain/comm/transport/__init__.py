"""Point-to-point movers under the algorithms. Each offers send, recv and sendrecv on flat arrays."""
from .host import HostTransport

__all__ = ["HostTransport"]
