"""Log records of `run`'s worker processes, handed to the run's own handlers.

The entry layer sets up logging once (format with timestamps, or lines above a progress bar on a
terminal); worker processes of the pool never see that set-up. Each worker therefore puts its
records on a queue and a thread of the run re-logs them, so a worker's warning looks like any
other line and never breaks the cohort bar. The thread is a daemon with a bounded join: a worker
killed mid-write can cost a log line, never a hung run.
"""
from __future__ import annotations

import logging
import logging.handlers
import queue as _queue
import threading
from typing import Any


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
