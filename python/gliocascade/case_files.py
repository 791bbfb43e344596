"""The case-files list: which file plays which part in a case's report, for files not laid out as a run folder.

A workflow engine stages every task's outputs in a folder of its own (all provenance files are
called ``provenance_<step>.json``), so the report cannot find a case's files by name as it does in
a run folder. The Nextflow REPORT task is therefore given a CSV (``case_id,role,path``) naming
each staged file's role; the report then reads exactly what `gliocascade run`'s report reads.
"""
from __future__ import annotations

from pathlib import Path

from .errors import InputError
from .io import read_csv_rows
from .layout import REPORT_ROLES

COLUMNS = ("case_id", "role", "path")


def read_case_files(path: Path) -> dict[str, dict[str, Path]]:
    """Case id -> role -> file from a case-files CSV (relative paths are relative to the CSV's folder).

    Unknown roles, a role named twice for one case, or a missing file are InputErrors: a report
    built from a wrong list would show one case's images under another's name.
    """
    path = Path(path)
    rows = read_csv_rows(path, COLUMNS, "case-files list")
    cases: dict[str, dict[str, Path]] = {}
    for n, row in enumerate(rows, start=2):
        case_id, role, name = (row[c] or "" for c in COLUMNS)
        if not case_id or role not in REPORT_ROLES:
            raise InputError(path, f"line {n}: needs a case_id and a role among {', '.join(REPORT_ROLES)}")
        if role in cases.get(case_id, {}):
            raise InputError(path, f"line {n}: case {case_id!r} names role {role!r} twice")
        file = Path(name) if Path(name).is_absolute() else path.parent / name
        if not file.is_file():
            raise InputError(file, f"named by {path} line {n} ({case_id} {role}) but not found")
        cases.setdefault(case_id, {})[role] = file
    missing = sorted(c for c, roles in cases.items() if "seg" not in roles)
    if missing:
        raise InputError(path, f"case {missing[0]!r} has no 'seg' file")
    return cases
