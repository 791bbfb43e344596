"""Samplesheet rows checked against the JSON schema that the Nextflow pipeline also uses.

`assets/schema_input.json` (JSON Schema draft 2020-12, nf-schema style) is the single statement of
the samplesheet rules; `gliocascade run` validates with it here so that a sheet accepted by one
front door is accepted by the other. Rows are read as nf-schema reads them: every cell a string,
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


def case_collisions(rows: list[dict[str, str]]) -> list[tuple[int, str]]:
    """(row index, message) for each case_id equal to an earlier one but for case.

    ``uniqueEntries`` compares exactly, but C1 and c1 name one output folder on a case-insensitive
    file system (macOS, Windows), so `run` refuses them as `io.read_samplesheet` does. This rule is
    ours: nf-schema does not apply it in the Nextflow door.
    """
    from .io import case_collision

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


def read_rows(path: str | Path) -> list[dict[str, str]]:
    """The sheet's rows as nf-schema sees them: stripped strings, empty cells dropped."""
    df = read_samplesheet_table(path)
    rows = []
    for _, rec in df.iterrows():
        rows.append({k: str(v).strip() for k, v in rec.items() if str(v).strip()})
    return rows


def _message(error: jsonschema.ValidationError) -> str:
    """One readable sentence for a schema error (the schema's errorMessage when it has one)."""
    custom = error.schema.get("errorMessage") if isinstance(error.schema, dict) else None
    if error.validator == "oneOf":
        return "give either t1,t1ce,t2,flair or dicom_dir (not both)"
    if error.validator == "required":
        return f"{custom} ({error.message})" if custom else f"missing value ({error.message})"
    if error.validator == "additionalProperties":
        return f"unknown column ({error.message})"
    if error.validator == "minItems":
        return "samplesheet has no rows"
    if custom:
        return f"{custom} (got {error.instance!r})"
    return error.message


def _where(error: jsonschema.ValidationError) -> str:
    path = list(error.absolute_path)
    if not path:
        return ""
    where = f"row {int(path[0]) + 2}"  # the header is line 1
    column = path[1] if len(path) > 1 else None
    if column is None and error.validator == "required":
        column = ",".join(error.validator_value) if len(error.validator_value) == 1 else None
    if column is None and error.validator == "if":
        column = "space"
    return f"{where}, column {column}" if column else where


def schema_errors(rows: list[dict[str, str]], schema: dict[str, Any] | None = None) -> list[str]:
    """Every schema violation of ``rows`` as 'row N, column C: problem', in row order."""
    validator = make_validator(schema)
    errors = sorted(validator.iter_errors(rows),
                    key=lambda e: [(0, p, "") if isinstance(p, int) else (1, 0, str(p)) for p in e.absolute_path])
    found = []
    for err in errors:
        where = _where(err)
        row = err.absolute_path[0] if err.absolute_path and isinstance(err.absolute_path[0], int) else -1
        found.append((row, f"{where}: {_message(err)}" if where else _message(err)))
    if schema is None:  # the packaged schema's case_id rule goes beyond what JSON Schema can say
        found += [(i, f"row {i + 2}, column case_id: {m}") for i, m in case_collisions(rows)]
    return [m for _, m in sorted(found, key=lambda f: f[0])]


def validate_samplesheet(path: str | Path) -> list[dict[str, str]]:
    """Validate a samplesheet CSV against the schema; the first problem raises SamplesheetError.

    The message names the row (CSV line number) and column; all problems are listed when there
    are several, so a user fixes the sheet in one pass.
    """
    rows = read_rows(path)
    problems = schema_errors(rows)
    if problems:
        more = f" (and {len(problems) - 1} more: {'; '.join(problems[1:4])})" if len(problems) > 1 else ""
        raise SamplesheetError(path, f"schema error: {problems[0]}{more}")
    return rows
