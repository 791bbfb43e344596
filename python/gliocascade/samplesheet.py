"""The one samplesheet reader: the CSV read once, checked once, handed on as typed rows.

As nf-core pipelines validate their samplesheet once in their initialisation, every command that
takes a samplesheet (`run`, `train --samplesheet`) calls ``read_samplesheet`` and passes its rows
on. The order of the checks:

1. the table: the file exists and is a CSV (``io.read_samplesheet_table``);
2. its header: the columns a sheet must or may have (a structural rule of the CSV, which the
   row-wise schema cannot name as one column);
3. every value rule (ids, spaces, conventions, which cells go together): the JSON schema
   ``assets/schema_input.json``, the one the Nextflow pipeline validates with
   (``samplesheet_schema``);
4. typed ``io.SampleRow`` objects, with paths resolved against the sheet's folder and missing
   files listed in each row's ``problems`` (only that case fails, not the run).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .io import MODALITIES, SampleRow, SamplesheetError, read_samplesheet_table
from .samplesheet_schema import load_schema, raise_schema_errors, table_rows

IMAGE_COLUMNS = list(MODALITIES)
OPTIONAL_COLUMNS = ["seg", "space", "label_convention", "dicom_dir", "brainmask"]


def check_columns(path: Path, table: pd.DataFrame) -> None:
    """Refuse a header that lacks case_id or images, names only some modalities, or names an unknown
    column; refuse a sheet without rows."""
    cols = set(table.columns)
    if "case_id" not in cols:
        raise SamplesheetError(path, "missing column 'case_id'")
    has_images = any(c in cols for c in IMAGE_COLUMNS)
    if not has_images and "dicom_dir" not in cols:
        raise SamplesheetError(path, "needs columns t1,t1ce,t2,flair or dicom_dir")
    if has_images:
        missing = [c for c in IMAGE_COLUMNS if c not in cols]
        if missing:
            raise SamplesheetError(path, f"missing column(s) {','.join(missing)} (all of t1,t1ce,t2,flair are needed)")
    unknown = sorted(cols - {"case_id", *IMAGE_COLUMNS, *OPTIONAL_COLUMNS})
    if unknown:
        raise SamplesheetError(path, f"unknown column(s) {','.join(unknown)}")
    if table.empty:
        raise SamplesheetError(path, "samplesheet has no rows")


def _default(column: str) -> str:
    """The schema's default for an absent cell (space, label_convention)."""
    return load_schema()["items"]["properties"][column]["default"]


def typed_row(cells: dict[str, str], base: Path) -> SampleRow:
    """A schema-valid row (nf-schema's view: stripped strings, empty cells absent) as a SampleRow.

    Relative paths resolve against ``base``; a file or folder that does not exist is listed in the
    row's ``problems`` rather than raised.
    """
    def resolve(value: str | None) -> Path | None:
        if not value:
            return None
        p = Path(value).expanduser()
        return p if p.is_absolute() else base / p

    images = {m: resolve(cells[m]) for m in IMAGE_COLUMNS if m in cells}
    dicom, seg, mask = (resolve(cells.get(c)) for c in ("dicom_dir", "seg", "brainmask"))
    problems = [f"{p}: {m} file not found" for m, p in images.items() if not p.exists()]
    if dicom is not None and not dicom.is_dir():
        problems.append(f"{dicom}: DICOM folder not found")
    if seg is not None and not seg.exists():
        problems.append(f"{seg}: seg file not found")
    if mask is not None and not mask.exists():
        problems.append(f"{mask}: brainmask file not found")
    return SampleRow(cells["case_id"], images, dicom, seg, cells.get("space", _default("space")),
                     cells.get("label_convention", _default("label_convention")), problems, mask)


def read_samplesheet(path: str | Path) -> list[SampleRow]:
    """Read, check and type a samplesheet CSV (see the module docstring for the order of checks).

    A broken rule raises SamplesheetError naming the file, the row (CSV line) and the column.
    """
    path = Path(path)
    table = read_samplesheet_table(path)
    check_columns(path, table)
    cells = table_rows(table)
    raise_schema_errors(path, cells)
    return [typed_row(row, path.parent) for row in cells]
