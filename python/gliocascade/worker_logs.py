"""Log records of `run`'s worker processes, handed to the run's own handlers.

The entry layer sets up logging once (format with timestamps, or lines above a progress bar on a
terminal); worker processes of the pool never see that set-up. Each worker therefore puts its
records on a queue and a thread of the run re-logs them, so a worker's warning looks like any
other line and never breaks the cohort bar. The thread is a daemon with a bounded join: a worker
killed mid-write can cost a log line, never a hung run.

A step writes into a staging folder that is renamed once the step succeeded; the lines it logs
meanwhile (``wrote <file>``) are rewritten to name the published place (:func:`logged_as_published`),
so that a log names files a person can open.
"""
from __future__ import annotations

import logging
import logging.handlers
import queue as _queue
import contextlib
import threading
from pathlib import Path
from typing import Any, Iterator


def worker_logging(log_queue: Any, level: int) -> None:
    """In a worker: send every record of level ``level`` and above to ``log_queue``."""
    log_queue.cancel_join_thread()  # a worker's exit never waits for a record a dead peer blocks
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(logging.handlers.QueueHandler(log_queue))
    root.setLevel(level)


class LogRelay:
    """In the run: re-log the workers' records through the logger each came from, until stopped."""

    def __init__(self, log_queue: Any) -> None:
        self.queue = log_queue
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="worker-logs", daemon=True)

    def __enter__(self) -> "LogRelay":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while True:
            try:
                record = self.queue.get(timeout=0.1)
            except _queue.Empty:
                if self._stop.is_set():
                    return
                continue
            except Exception:  # the queue was closed, or a killed worker left half a record in it
                return
            logger = logging.getLogger(record.name)
            if logger.isEnabledFor(record.levelno):
                logger.handle(record)


class _RenamePath(logging.Filter):
    """Replace one path prefix by another in every record's message (the record is changed in place,
    so each handler, the workers' queue included, passes on the rewritten line)."""

    def __init__(self, old: str, new: str) -> None:
        super().__init__()
        self.old, self.new = old, new

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.old in message:
            record.msg, record.args = message.replace(self.old, self.new), None
        return True


@contextlib.contextmanager
def logged_as_published(stage: Path, dest: Path) -> Iterator[None]:
    """While a step writes into ``stage``, log lines name ``dest`` (where its files are published) instead."""
    rename = _RenamePath(str(stage), str(dest))
    handlers = list(logging.getLogger().handlers)
    for handler in handlers:
        handler.addFilter(rename)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(rename)
