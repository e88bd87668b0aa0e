"""Gradient accumulation as DDP's `no_sync()`, one definition for every engine that sends
gradients during backward (data parallel, ZeRO 1-3): backwards inside the block accumulate into
.grad and send nothing; the next backward outside sends the sum."""
import contextlib


class NoSync:
    _sync = True                 # False inside no_sync(): the gradient hooks send nothing

    @contextlib.contextmanager
    def no_sync(self):
        previous, self._sync = self._sync, False
        try:
            yield
        finally:
            self._sync = previous
