"""Errors that the CLI turns into one-line messages and exit code 2."""
from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """Bad input: names the offending file (when there is one) and the problem in one line."""

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else str(path)
        # One line always: library messages (nibabel's truncation error) can contain newlines.
        self.problem = " ".join(str(problem).split())
        super().__init__(f"{self.path}: {self.problem}" if self.path else self.problem)
