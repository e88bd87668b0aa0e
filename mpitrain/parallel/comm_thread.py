"""A communication thread: the main thread hands it work and goes on computing.

    worker = CommThread("mpitrain-dp")
    worker.submit(lambda: comm.all_reduce(bucket))   # returns at once
    ...                                              # backward goes on meanwhile
    worker.wait_all()                                # every submitted job has finished

mpi4py releases the GIL inside blocking MPI calls and ctypes releases it inside the reduce
kernels, so the thread moves bytes while the main thread runs backward. Jobs run one at a time,
in the order submitted: that order is the order of the collectives, the same on every rank.
A job that raises is re-raised in the main thread by wait_all (with the failed job's name).
"""
import queue
import threading

_STOP = object()


class CommThread:
    def __init__(self, name):
        self._jobs = queue.SimpleQueue()
        self._done = threading.Condition()
        self._submitted = 0
        self._finished = 0
        self._error = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, job, label=""):
        """Run job() on the thread after every job submitted before it."""
        self._submitted += 1
        self._jobs.put((job, label))

    def wait_all(self):
        """Block until every submitted job has run; re-raise the first failure."""
        with self._done:
            while self._finished < self._submitted and self._error is None:
                self._done.wait()
        if self._error is not None:
            label, exc = self._error
            raise RuntimeError(f"communication thread failed in {label}: {exc}") from exc

    def close(self):
        self._jobs.put((_STOP, ""))
        self._thread.join()

    def _run(self):
        while True:
            job, label = self._jobs.get()
            if job is _STOP:
                return
            try:
                if self._error is None:        # after a failure, later jobs are skipped
                    job()
            except BaseException as exc:       # reported to the main thread by wait_all
                self._error = (label, exc)
            with self._done:
                self._finished += 1
                self._done.notify_all()
