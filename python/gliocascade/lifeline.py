"""Worker processes live no longer than the run that started them, and signals stop a run cleanly.

A `run` killed by SIGKILL cannot clean up, so the processes below it must notice on their own:
the kernel sends them SIGKILL when their parent dies (Linux ``PR_SET_PDEATHSIG``). The fork server
is the parent of the workers and the run the parent of the fork server, so both levels set it.
Note the kernel's rule: the signal fires when the *thread* that forked the child ends, so the pool
must be started from a thread that lives as long as the run (the main thread, in `run`).

SIGTERM (what SLURM sends at the wall-time limit) and SIGINT (Ctrl-C) become :class:`Interrupted`
in the main thread, which the pipeline turns into: stop the workers, remove unfinished staging,
one line saying how to resume, exit 128 + signal number.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
from typing import Iterator

PR_SET_PDEATHSIG = 1

# Set by the run just before its fork server starts: the pid the fork server must die with.
PARENT_ENV = "GLIOCASCADE_FORKSERVER_PARENT"


class Interrupted(BaseException):
    """The run was stopped by a signal; finished steps are kept (a BaseException, like Ctrl-C,
    so that no ``except Exception`` that isolates one case can swallow it)."""

    def __init__(self, signum: int):
        self.signum = int(signum)
        self.exit_code = 128 + self.signum
        name = signal.Signals(self.signum).name
        super().__init__(f"stopped by {name}; finished steps are kept, unfinished ones were removed: "
                         "rerun the same command to resume")


def set_parent_death_signal(sig: int = signal.SIGKILL) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):  # pragma: no cover - no libc prctl
        return False


def die_with_parent(parent: int | None = None) -> None:
    """Die (SIGKILL) when the parent dies; exit at once if it is already gone (``parent`` = its pid)."""
    parent = os.getppid() if parent is None else int(parent)
    if set_parent_death_signal() and os.getppid() != parent:
        os._exit(1)  # the parent died before the request took effect


def process_alive(pid: int) -> bool:
    """Whether a process with this pid exists (signal 0 checks without sending anything)."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def stop_on_signals(signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """Within the block, the first of ``signals`` raises :class:`Interrupted` in the main thread;
    later ones are ignored while the run stops (a second Ctrl-C must not cut the clean-up short).
    Outside the main thread (signals cannot be handled there) the block runs unchanged."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired: list[int] = []

    def handler(signum: int, frame: object) -> None:
        if not fired:
            fired.append(signum)
            raise Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in signals}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)
