"""How the entry layer shows progress: a cohort bar on a terminal, plain timestamped lines elsewhere.

A person at a terminal wants one line that says how far the cohort is (cases done and failed, ETA)
with the log lines scrolling above it; a cluster job's log wants lines that each carry their time
and no carriage-return refreshes. Library code only logs and calls back (``on_result``, a case's
``on_pass``); this module decides how that is shown. A bar is drawn only by the command a person
started: `run`'s workers call `predict` without one, so no per-case bar flashes into the run's
terminal or log.
"""
from __future__ import annotations

import contextlib
import logging
import sys
from typing import IO, Any, Callable, Iterator

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"

log = logging.getLogger(__name__)


def timestamped_lines() -> None:
    """Give the command line's log handlers a format with the time first, and route Python warnings
    through logging, so that every line a run writes to a log file says when it happened."""
    formatter = logging.Formatter(LOG_FORMAT, DATE_FORMAT)
    for handler in logging.getLogger().handlers:
        if type(handler) is logging.StreamHandler:  # the command line's own, not a test harness's
            handler.setFormatter(formatter)
    logging.captureWarnings(True)


def is_terminal(stream: IO[str]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class CohortProgress:
    """Counts a cohort's finished cases; on a terminal as a tqdm bar, elsewhere as one log line per case."""

    def __init__(self, total: int, stream: IO[str] | None = None) -> None:
        self.total, self.done, self.failed = total, 0, 0
        self.stream = stream or sys.stderr
        self.bar: Any = None

    def __call__(self, result: Any) -> None:
        """``on_result`` callback of `pipeline.run_cases`: one more case finished (``result.ok``)."""
        self.done += 1
        self.failed += 0 if result.ok else 1
        if self.bar is not None:
            self.bar.set_postfix(failed=self.failed, refresh=False)
            self.bar.update(1)
        else:
            log.info("cases: %d of %d finished (%d failed)", self.done, self.total, self.failed)

    @contextlib.contextmanager
    def shown(self) -> Iterator["CohortProgress"]:
        """While the cases run: the bar at the bottom of the terminal, log lines printed above it."""
        if not is_terminal(self.stream):
            yield self
            return
        from tqdm import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        with tqdm(total=self.total, desc="cases", unit="case", file=self.stream, dynamic_ncols=True) as bar, \
                logging_redirect_tqdm():
            self.bar = bar
            try:
                yield self
            finally:
                self.bar = None


@contextlib.contextmanager
def cohort_progress(total: int, stream: IO[str] | None = None) -> Iterator[Callable[[Any], None]]:
    """The ``progress`` factory `pipeline.run_pipeline` takes: yields the per-case callback."""
    with CohortProgress(total, stream).shown() as progress:
        yield progress


@contextlib.contextmanager
def pass_progress(case_id: str, total: int, stream: IO[str] | None = None) -> Iterator[Callable[[int], None] | None]:
    """The ``progress`` factory `predict.predict_case` takes when `predict` is the entry command: one
    case's TTA passes as a bar on a terminal (log lines above it), nothing when not a terminal."""
    stream = stream or sys.stderr
    if not is_terminal(stream):
        yield None
        return
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    with tqdm(total=total, desc=f"{case_id} TTA passes", unit="pass", file=stream, leave=False) as bar, \
            logging_redirect_tqdm():
        yield bar.update
