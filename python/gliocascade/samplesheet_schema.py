"""Samplesheet rows checked against the JSON schema that the Nextflow pipeline also uses.

`assets/schema_input.json` (JSON Schema draft 2020-12, nf-schema style) is the single statement of
the samplesheet's value rules; `samplesheet.read_samplesheet` validates with it here so that a sheet
accepted by one front door is accepted by the other. Its ``errorMessage`` texts are predicates on
the value ("is not 'native' or 'brats'"), read after the value here and after the field by nf-schema. Rows are read as nf-schema reads them: every cell a string,
empty cells absent. nf-schema's ``uniqueEntries`` keyword is implemented as a validator extension;
its other annotations (``errorMessage``, ``meta``, ``format``) are used for messages or ignored.
"""
from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Iterator

import jsonschema
import pandas as pd

from .io import SamplesheetError, read_samplesheet_table

SCHEMA_RESOURCE = ("gliocascade", "assets/schema_input.json")


@lru_cache(maxsize=1)
def load_schema() -> dict[str, Any]:
    """The packaged samplesheet schema (parsed once)."""
    package, name = SCHEMA_RESOURCE
    return json.loads(resources.files(package).joinpath(name).read_text())


def _unique_entries(validator: Any, fields: list[str], instance: Any, schema: dict) -> Iterator[jsonschema.ValidationError]:
    """nf-schema's ``uniqueEntries``: the named fields' values may not repeat across rows."""
    if not validator.is_type(instance, "array"):
        return
    for field in fields:
        first: dict[Any, int] = {}
        for i, row in enumerate(instance):
            if not isinstance(row, dict) or field not in row:
                continue
            value = row[field]
            if value in first:
                yield jsonschema.ValidationError(
                    f"duplicate {field} {value!r} (first on row {first[value] + 2})", path=[i, field])
            else:
                first[value] = i


def case_collision(case_id: str, first: str, first_line: int) -> str:
    """The message for ids that differ only in case: one output folder on macOS and Windows."""
    return (f"{case_id!r} differs from {first!r} only in case (row {first_line}); their output folders "
            "would be one on a case-insensitive file system")


def case_collisions(rows: list[dict[str, str]]) -> list[tuple[int, str]]:
    """(row index, message) for each case_id equal to an earlier one but for case.

    ``uniqueEntries`` compares exactly, but C1 and c1 name one output folder on a case-insensitive
    file system (macOS, Windows), so `run` refuses them. This rule is ours: nf-schema does not apply
    it in the Nextflow door.
    """
    first: dict[str, tuple[str, int]] = {}
    out = []
    for i, row in enumerate(rows):
        cid = row.get("case_id")
        if not isinstance(cid, str):
            continue
        key = cid.casefold()
        if key in first and first[key][0] != cid:
            out.append((i, case_collision(cid, *first[key])))
        first.setdefault(key, (cid, i + 2))
    return out


def make_validator(schema: dict[str, Any] | None = None) -> jsonschema.protocols.Validator:
    """A draft 2020-12 validator for ``schema`` (default: the packaged one) with ``uniqueEntries``."""
    schema = load_schema() if schema is None else schema
    jsonschema.Draft202012Validator.check_schema(schema)
    cls = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"uniqueEntries": _unique_entries})
    return cls(schema)


def table_rows(table: pd.DataFrame) -> list[dict[str, str]]:
    """A samplesheet table's rows as nf-schema sees them: stripped strings, empty cells dropped."""
    rows = []
    for _, rec in table.iterrows():
        rows.append({k: str(v).strip() for k, v in rec.items() if str(v).strip()})
    return rows


def read_rows(path: str | Path) -> list[dict[str, str]]:
    """The sheet's rows as nf-schema sees them (``table_rows`` of the file)."""
    return table_rows(read_samplesheet_table(path))


def _missing(error: jsonschema.ValidationError) -> str | None:
    """The first field a ``required`` error finds absent."""
    if error.validator != "required" or not isinstance(error.instance, dict):
        return None
    return next((f for f in error.validator_value if f not in error.instance), None)


def _mixed(error: jsonschema.ValidationError) -> bool:
    """Whether a row breaking the images-or-dicom_dir rule gives both (rather than neither)."""
    row = error.instance if isinstance(error.instance, dict) else {}
    return "dicom_dir" in row and any(m in row for m in ("t1", "t1ce", "t2", "flair"))


def _message(error: jsonschema.ValidationError) -> str:
    """One readable sentence for a schema error (the schema's errorMessage when it has one)."""
    custom = error.schema.get("errorMessage") if isinstance(error.schema, dict) else None
    if error.validator == "oneOf":
        if _mixed(error):
            return "give either dicom_dir or t1,t1ce,t2,flair, not both"
        return "empty (each row needs t1,t1ce,t2,flair or dicom_dir)"
    if error.validator == "required":
        return f"empty ({custom})" if custom else f"empty {_missing(error)}"
    if error.validator == "additionalProperties":
        known = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
        return f"unknown column(s) {','.join(sorted(k for k in error.instance if k not in known))}"
    if error.validator == "minItems":
        return "samplesheet has no rows"
    if custom:
        return f"{error.instance!r} {custom}"
    return error.message


def _where(error: jsonschema.ValidationError) -> str:
    path = list(error.absolute_path)
    if not path:
        return ""
    where = f"row {int(path[0]) + 2}"  # the header is line 1
    column = path[1] if len(path) > 1 else None
    if column is None and error.validator == "required":
        column = _missing(error)
    if column is None and error.validator == "oneOf":
        column = "dicom_dir" if _mixed(error) else "t1ce"
    return f"{where}, column {column}" if column else where


def schema_errors(rows: list[dict[str, str]], schema: dict[str, Any] | None = None) -> list[str]:
    """Every schema violation of ``rows`` as 'row N, column C: problem', in row order."""
    validator = make_validator(schema)
    errors = sorted(validator.iter_errors(rows),
                    key=lambda e: [(0, p, "") if isinstance(p, int) else (1, 0, str(p)) for p in e.absolute_path])
    found: list[tuple[int, str]] = []
    seen: set[tuple] = set()
    for err in errors:
        where = _where(err)
        row = err.absolute_path[0] if err.absolute_path and isinstance(err.absolute_path[0], int) else -1
        text = f"{where}: {_message(err)}" if where else _message(err)
        rule = (row, tuple(err.schema_path))
        if err.validator == "required" and rule in seen:
            continue  # one message per unmet 'required' rule (jsonschema reports each absent field)
        seen.add(rule)
        found.append((row, text))
    if schema is None:  # the packaged schema's case_id rule goes beyond what JSON Schema can say
        found += [(i, f"row {i + 2}, column case_id: {m}") for i, m in case_collisions(rows)]
    return [m for _, m in sorted(found, key=lambda f: f[0])]


def raise_schema_errors(path: str | Path, rows: list[dict[str, str]]) -> None:
    """Raise SamplesheetError for the first schema problem of ``rows`` (read from ``path``).

    The message names the row (CSV line number) and column; all problems are listed when there
    are several, so a user fixes the sheet in one pass.
    """
    problems = schema_errors(rows)
    if problems:
        more = f" (and {len(problems) - 1} more: {'; '.join(problems[1:4])})" if len(problems) > 1 else ""
        raise SamplesheetError(path, f"schema error: {problems[0]}{more}")


def validate_samplesheet(path: str | Path) -> list[dict[str, str]]:
    """Validate a samplesheet CSV against the schema alone (as the Nextflow door does); the rows
    as nf-schema sees them. ``samplesheet.read_samplesheet`` is the reader commands use."""
    rows = read_rows(path)
    raise_schema_errors(path, rows)
    return rows
