"""Per-step provenance records: what went in (hashes), with what (versions, parameters), how long.

Cohort studies must be able to say exactly how each output was made; every step writes one
``provenance_<step>.json`` through here so the records look the same everywhere.
"""
from __future__ import annotations

import json
import platform
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from . import __version__
from .hashing import sha256_file
from .io import atomic_path

TRACKED_PACKAGES = ("numpy", "nibabel", "SimpleITK", "antspyx", "torch", "scipy", "pydicom", "dcm2niix")


def package_versions(names: tuple[str, ...] = TRACKED_PACKAGES) -> dict[str, str]:
    """Installed versions of the packages that can change results (absent ones are skipped)."""
    out = {"gliocascade": __version__, "python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def write_provenance(path: str | Path, step: str, inputs: dict[str, str | Path | None],
                     parameters: dict[str, Any], started: float, extra: dict[str, Any] | None = None,
                     timings: dict[str, float] | None = None) -> Path:
    """Write ``provenance_<step>.json`` atomically at ``path`` (a file path).

    ``inputs`` maps a role to a file (hashed here); ``started`` is a ``time.time()`` stamp.
    Wall-clock fields are the only ones that change between identical runs.
    """
    record = {
        "step": step,
        "command": " ".join(sys.argv),
        "inputs": {k: {"path": str(v), "sha256": sha256_file(v)} for k, v in inputs.items()
                   if v is not None and Path(v).is_file()},
        "parameters": _jsonable(parameters),
        "versions": package_versions(),
        "platform": {"machine": platform.machine(), "system": platform.system()},
        "timings_s": {"total": round(time.time() - started, 3), **(timings or {})},
    }
    if extra:
        record.update(_jsonable(extra))
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=2, sort_keys=False) + "\n")
    return Path(path)
