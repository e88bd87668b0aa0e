"""Timeout watchdog: a collective that waits too long for a peer aborts the whole job.

The hot path only writes three attributes before each blocking wait (what, which peer, since
when); a daemon thread wakes every second or so and, if the current wait is older than the
timeout, prints which collective, which step and which rank(s) have not arrived, then aborts.
MPI's blocking calls release the GIL, so the thread runs while the main thread is stuck in MPI.
"""
import sys
import threading
import time

class Watchdog:
    """The hot path stores who it waits for and bumps a counter; the thread notices when the
    counter stops moving while a collective is in progress."""

    def __init__(self, rank, timeout_s, abort):
        self.rank = rank
        self.timeout_s = timeout_s
        self._abort = abort          # abort(message): ends the job
        self.what = None             # the collective in progress: (name, call number, algorithm)
        self.peers = ()              # the rank(s) the current wait needs, or an object whose
                                     # .value is that rank (the C lane writes a ctypes int)
        self.progress = 0            # bumped at every wait: the thread sees whether we move
        # GPU waits the host does not see (stream memory operations, comm/peer_workspace.py): callables
        # (now, timeout_s) -> a message when one is overdue, else None; checked every poll
        self.gpu_checks = []
        if timeout_s > 0:
            threading.Thread(target=self._watch, name="mpitrain-watchdog", daemon=True).start()

    def begin(self, what):
        self.what = what
        self.progress += 1

    def end(self):
        self.what = None

    def _watch(self):
        poll = min(1.0, self.timeout_s / 4)
        seen, since = None, time.monotonic()
        while True:
            time.sleep(poll)
            now = time.monotonic()
            for check in list(self.gpu_checks):
                message = check(now, self.timeout_s)
                if message:
                    self._abort(f"mpitrain: rank {self.rank}: {message} (timeout {self.timeout_s:g} "
                                f"s, MPITRAIN_TIMEOUT); aborting the job")
                    return
            state = (self.what, self.progress)
            if state[0] is None or state != seen:
                seen, since = state, now
                continue
            if now - since > self.timeout_s:
                name, number, algorithm = state[0]
                who = describe_peers(self.peers)
                self._abort(f"mpitrain: rank {self.rank}: {name} #{number} ({algorithm}) has waited "
                            f"{now - since:.1f} s for rank {who}, which has not arrived (timeout "
                            f"{self.timeout_s:g} s, set with init(timeout=...) or MPITRAIN_TIMEOUT); "
                            f"aborting the job")
                return


def describe_peers(peers):
    """'3' or '1, 2' for the ranks a wait needs; 'a peer' when none is known."""
    if hasattr(peers, "value"):
        peers = (peers.value,) if peers.value >= 0 else ()
    return ", ".join(str(p) for p in peers) or "a peer"


def abort_job(comm, message, code=2):
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
    comm.Abort(code)
