"""The launch agent: what mpiexec calls instead of ssh to start its daemon on a node.

    AGENT [ssh options] HOST COMMAND...

It runs COMMAND inside HOST's network namespace with HOST as its hostname (a UTS namespace of
its own, so MPI sees different hosts), and then plays the part of ssh's keepalive: while the
daemon runs it looks at HOST's link once a second, and when the link has been down for
KEEPALIVE seconds ($MPITRAIN_CLUSTER_KEEPALIVE, default 30) it gives the node up, as ssh does
when its ServerAlive probes go unanswered: it fences the node (kills what still runs in its
namespace), writes STATE_DIR/lost-HOST saying what it found there, and exits 255. mpiexec then
sees its daemon gone and ends the job; without this, Open MPI waits for the unreachable daemon
forever.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .netns import PREFIX, STATE_DIR
from .. import settings

SSH_OPTIONS_WITH_VALUE = {"-o", "-p", "-l", "-i", "-F"}


def split_ssh_arguments(argv):
    """(host, command) from ssh's argument list, its options dropped."""
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        i += 2 if argv[i] in SSH_OPTIONS_WITH_VALUE else 1
    if i >= len(argv):
        raise SystemExit("mpitrain.cluster agent: no host given")
    return argv[i], argv[i + 1:]


def link_is_down(host):
    try:
        state = Path(f"/sys/class/net/{PREFIX}{host}-br/operstate").read_text().strip()
    except OSError:
        return True                               # the link is gone altogether
    return state == "down"


def keepalive_seconds():
    try:
        return settings.get("MPITRAIN_CLUSTER_KEEPALIVE")
    except settings.SettingError as exc:
        raise SystemExit(f"mpitrain.cluster agent: {exc}") from None


def fence(host):
    """Kill what runs in HOST's namespace; the names of what was there, for the record."""
    pids = subprocess.run(["ip", "netns", "pids", PREFIX + host], capture_output=True,
                          text=True).stdout.split()
    found = []
    for pid in pids:
        try:
            found.append(Path(f"/proc/{pid}/comm").read_text().strip())
            os.kill(int(pid), signal.SIGKILL)
        except (OSError, ValueError):
            pass
    return found


def main(argv):
    host, command = split_ssh_arguments(argv)
    keepalive = keepalive_seconds()
    daemon = subprocess.Popen(["ip", "netns", "exec", PREFIX + host, "unshare", "--uts", "sh",
                               "-c", f"hostname {host}; {' '.join(command)}"])
    down_since = None
    while daemon.poll() is None:
        time.sleep(1.0)
        if not link_is_down(host):
            down_since = None
            continue
        down_since = down_since or time.monotonic()
        if time.monotonic() - down_since >= keepalive:
            found = fence(host)
            daemon.kill()
            left = ", ".join(sorted(set(found))) or "nothing"
            (STATE_DIR / f"lost-{host}").write_text(
                f"{host}: link down for {keepalive:.0f} s, node given up; "
                f"still running there: {left}\n")
            return 255
    return daemon.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
