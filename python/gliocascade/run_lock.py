"""One `run` at a time per output folder: an exclusive lock on ``OUT/.gliocascade.lock``.

Two runs writing one folder would publish each other's half-finished steps, so the second is
refused at once, naming the holder. The lock is ``flock``: the kernel releases it when the holder
dies, however it dies, so a lock file left behind by a killed run is stale and simply taken over.
The file records who holds it (pid, host, start time) for the refusal message; a clean run removes
it at the end.
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import socket
import time
from pathlib import Path
from types import TracebackType

from .errors import InputError

log = logging.getLogger(__name__)

LOCK_NAME = ".gliocascade.lock"


def _holder_text() -> str:
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return f"pid {os.getpid()} on host {socket.gethostname()}, started {started}"


def _read(fd: int) -> str:
    return os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


class OutLock:
    """Context manager holding the exclusive lock of ``folder`` (which must exist) for a run."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise InputError naming the live holder (exit 2, nothing written)."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = _read(fd)
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EACCES):
                    raise InputError(self.path, f"{self.folder} is in use by another gliocascade run "
                                                f"({holder or 'holder unknown'}); wait for it or stop it") from None
                log.warning("%s: cannot lock (%s); a second run on this folder would not be detected",
                            self.path, exc.strerror or exc)
                return
            if _same_file(fd, self.path):
                break
            os.close(fd)  # a finishing run removed the file between our open and lock: lock the new one
        stale = _read(fd)
        if stale:
            log.info("%s: taking over the lock left by a run that is gone (%s)", self.path, stale)
        os.ftruncate(fd, 0)
        os.pwrite(fd, (_holder_text() + "\n").encode(), 0)
        self.fd = fd

    def release(self) -> None:
        """Remove the lock file (while still holding it, so no one can lock a deleted file) and unlock."""
        if self.fd is None:
            return
        try:
            if _same_file(self.fd, self.path):
                self.path.unlink()
        except OSError:
            pass
        finally:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> "OutLock":
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
