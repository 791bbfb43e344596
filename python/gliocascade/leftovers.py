"""What a killed writer leaves behind, and its removal before a rerun or after a stop.

Steps stage into ``<case>/.partial-<step>/`` (steps.py) and files are written through
``io.atomic_path``: a ``.<name>.<random>.part<suffix>`` beside the target, renamed into place when
complete. Neither is ever an output, so whoever holds the folder (the run's lock, or the one
`predict --cases` that writes it) may remove them; finished outputs are never touched.
"""
from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

from .layout import REPORT_DIR

log = logging.getLogger(__name__)

STAGING_PREFIX = ".partial-"
_TEMPORARY = re.compile(r"^\..*\.part(\.|$)")


def is_temporary(name: str) -> bool:
    """A temporary file of ``io.atomic_path`` (hidden, with ``.part`` before its suffix)."""
    return bool(_TEMPORARY.match(name)) and not name.startswith(STAGING_PREFIX)


def discard_temporaries(folder: Path) -> list[Path]:
    """Remove atomic-write temporaries directly in ``folder``; returns what was removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = [p for p in folder.iterdir() if p.is_file() and is_temporary(p.name)]
    for p in removed:
        p.unlink(missing_ok=True)
    return removed


def discard_case_leftovers(case_root: Path) -> list[Path]:
    """Staging folders and temporaries of one case folder; the folder too when nothing else is in it."""
    root = Path(case_root)
    if not root.is_dir():
        return []
    removed = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(STAGING_PREFIX)]
    for p in removed:
        shutil.rmtree(p, ignore_errors=True)
    removed += discard_temporaries(root)
    if removed and not any(root.iterdir()):
        root.rmdir()
    return removed


def discard_run_leftovers(out: Path, case_ids: list[str]) -> list[Path]:
    """Everything unfinished in a run folder: each case's staging and temporaries, the report's temporaries."""
    out = Path(out)
    removed: list[Path] = []
    for cid in case_ids:
        removed += discard_case_leftovers(out / cid)
    removed += discard_temporaries(out / REPORT_DIR)
    if removed:
        log.info("removed %d unfinished leftover(s) of an interrupted run in %s", len(removed), out)
    return removed
