"""Refused cases as a small CSV (case_id, step, message): what `run` writes as report/failures.csv
and what each Nextflow task writes when it refuses its case, so both reports list them alike."""
from __future__ import annotations

import csv
import io as _io
from pathlib import Path

from .io import atomic_path

COLUMNS = ("case_id", "step", "message")


def failures_text(rows: list[tuple[str, str, str]]) -> str:
    """The CSV text of (case_id, step, message) rows, header first."""
    buf = _io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(rows)
    return buf.getvalue()


def write_refusal(path: Path, case_id: str, step: str, message: str) -> Path:
    """Write one refusal record atomically (a task writes at most one: it stops at the first)."""
    with atomic_path(path) as tmp:
        tmp.write_text(failures_text([(case_id, step, message)]))
    return path


def read_failures(path: Path) -> list[tuple[str, str, str]]:
    """The (case_id, step, message) rows of a failures CSV; an unreadable one is an InputError."""
    from .io import read_csv_rows

    return [(r["case_id"], r["step"], r["message"]) for r in read_csv_rows(path, COLUMNS, "failures file")]
