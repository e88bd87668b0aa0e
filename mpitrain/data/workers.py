"""Who decodes the images of a batch: a pool of threads (the plain version) or of worker processes
writing into shared memory (the fast one). Both take a batch's items, (path, rng seed) pairs, and
give back a uint8 array (B, 3, S, S).

    threads    decode() on a ThreadPoolExecutor. PIL releases the GIL while it decodes and
               resizes, but the Python around it (crop boxes, generators, numpy) holds it, so the
               threads stop scaling at a few cores.
    processes  one `python -m mpitrain.data.decode_worker` per thread of the pool; the thread
               hands its process a chunk of the batch over a pipe, the process decodes it into a
               shared-memory slot (a deleted file under /dev/shm that both map), and answers when
               done. Nothing crosses the pipe but names and seeds; the processes import numpy and
               PIL, not torch, and are not forked from an MPI process (fork after MPI_Init is
               unsafe), so they start fresh with the same Python.

    MPITRAIN_LOADER           auto (processes on Linux, threads elsewhere) | processes | threads
    MPITRAIN_LOADER_WORKERS   how many (default: the cores this rank may run on)

A worker that dies or fails names the file it was decoding in a DataError; the trainer turns that
into a job abort, so no rank waits for a batch that will never come.
"""
import itertools
import mmap
import os
import pickle
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor, wait

import numpy as np

from .decode import DataError, decode
from .. import settings

CHUNK = 4                       # images per message to a worker process (load balance vs. overhead)


def loader_workers():
    return settings.get("MPITRAIN_LOADER_WORKERS") or max(1, len(os.sched_getaffinity(0)))


def loader_kind():
    kind = settings.get("MPITRAIN_LOADER")
    if kind == "auto":                       # the processes open their slots through /proc
        kind = "processes" if os.path.isdir("/proc/self/fd") else "threads"
    return kind


def make_decoder():
    return ProcessDecoder(loader_workers()) if loader_kind() == "processes" else \
        ThreadDecoder(loader_workers())


class ThreadDecoder:
    """decode() on a pool of threads: simple, and enough for small images or few cores."""

    def __init__(self, workers):
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="mpitrain-loader")

    def start(self, items, img_size, train):
        futures = [self.pool.submit(decode, path, img_size, train, np.random.default_rng(seed))
                   for path, seed in items]
        return lambda out=None: np.stack([f.result() for f in futures], out=out)

    def close(self):
        self.pool.shutdown(wait=False, cancel_futures=True)


class Slot:
    """A shared-memory buffer for one batch: a file under /dev/shm, deleted at once, mapped here
    and opened by the workers through /proc/PID/fd (so nothing is left behind if we die)."""

    serials = itertools.count()

    def __init__(self, nbytes):
        folder = "/dev/shm" if os.path.isdir("/dev/shm") else None
        self.fd, path = tempfile.mkstemp(prefix="mpitrain-loader-", dir=folder)
        os.unlink(path)
        os.ftruncate(self.fd, nbytes)
        self.nbytes = nbytes
        self.map = mmap.mmap(self.fd, nbytes)
        self.key = (f"/proc/{os.getpid()}/fd/{self.fd}", next(Slot.serials))

    def view(self, count, img_size):
        return np.frombuffer(self.map, np.uint8, count * 3 * img_size * img_size).reshape(
            count, 3, img_size, img_size)

    def close(self):
        self.map.close()
        os.close(self.fd)


class ProcessDecoder:
    """Worker processes, one per pool thread, decoding into shared-memory slots."""

    def __init__(self, workers):
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="mpitrain-loader")
        self.local = threading.local()
        self.processes = []
        self.free = []                     # slots not in use by a batch
        self.lock = threading.Lock()

    def _process(self):
        proc = getattr(self.local, "proc", None)
        if proc is None:
            proc = subprocess.Popen([sys.executable, "-m", "mpitrain.data.decode_worker"],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            self.local.proc = proc
            with self.lock:
                self.processes.append(proc)
        return proc

    def _decode_chunk(self, slot, first, chunk, img_size, train):
        proc = self._process()
        try:
            pickle.dump((slot.key, slot.nbytes, first, chunk, img_size, train), proc.stdin)
            proc.stdin.flush()
            status, detail = pickle.load(proc.stdout)
        except (EOFError, BrokenPipeError, pickle.UnpicklingError):
            code = proc.poll()
            raise DataError(f"an image loader process exited (code {code}) while decoding "
                            f"{chunk[0][0]} and {len(chunk) - 1} more") from None
        if status != "ok":
            raise DataError(detail)

    def _slot(self, nbytes):
        with self.lock:
            for slot in self.free:
                if slot.nbytes >= nbytes:
                    self.free.remove(slot)
                    return slot
            while len(self.free) > 2:              # sizes changed: let old slots go
                self.free.pop(0).close()
        return Slot(nbytes)

    def start(self, items, img_size, train):
        slot = self._slot(len(items) * 3 * img_size * img_size)
        futures = [self.pool.submit(self._decode_chunk, slot, first, items[first:first + CHUNK],
                                    img_size, train) for first in range(0, len(items), CHUNK)]

        def result(out=None):
            wait(futures)                            # every chunk ends before the slot is reused
            try:
                for f in futures:
                    f.result()
                view = slot.view(len(items), img_size)
                if out is None:
                    return view.copy()
                out[...] = view
                return out
            finally:
                with self.lock:
                    self.free.append(slot)
        return result

    def close(self):
        self.pool.shutdown(wait=False, cancel_futures=True)
        for proc in self.processes:
            try:
                proc.stdin.close()
            except OSError:
                pass
        for proc in self.processes:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.processes = []
