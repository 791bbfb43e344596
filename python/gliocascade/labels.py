"""Label maps <-> the three overlapping BraTS regions (WT, TC, ET), in the 2019 and 2023 conventions.

The networks predict regions, not labels; every conversion between the two lives here so that
training targets, predictions and metrics agree on one definition.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import InputError

REGIONS = ("WT", "TC", "ET")
# Label values of each convention: necrosis/non-enhancing core, oedema, enhancing tumour.
CONVENTIONS = {"2019": {"NCR": 1, "ED": 2, "ET": 4}, "2023": {"NCR": 1, "ED": 2, "ET": 3}}


def _convention(name: str | int) -> dict[str, int]:
    key = str(name)
    if key not in CONVENTIONS:
        raise InputError(None, f"unknown label convention {name!r} (use 2019 or 2023)")
    return CONVENTIONS[key]


def allowed_labels(convention: str | int = "2019") -> set[int]:
    """The label values a map of this convention may contain (0 included)."""
    return {0, *_convention(convention).values()}


# A map of hundreds of values (an intensity image given as labels) is named by its count and first few.
SHOWN_LABEL_VALUES = 5


def _outside_text(bad: list[int], convention: str | int) -> str:
    allowed = sorted(allowed_labels(convention))
    if len(bad) <= SHOWN_LABEL_VALUES:
        return f"label values {bad} are outside the BraTS {convention} convention {allowed}"
    first = ", ".join(str(v) for v in bad[:SHOWN_LABEL_VALUES])
    return (f"{len(bad)} label values outside the BraTS {convention} convention {allowed} "
            f"({first}, ...; an intensity image given as labels?)")


def validate_labels(labels: np.ndarray, convention: str | int = "2019",
                    path: str | Path | None = None) -> np.ndarray:
    """Return the map as uint8, refusing NaN, non-integers and values outside the convention.

    Float maps are accepted when every value is an integer of the convention, because published
    BraTS tools write float32 label maps.
    """
    arr = np.asarray(labels)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)):
            raise InputError(path, "label map contains NaN or infinite values")
        if not np.all(arr == np.round(arr)):
            raise InputError(path, "label map contains non-integer values")
    elif arr.dtype.kind not in "iub":
        raise InputError(path, f"label map has unsupported data type {arr.dtype}")
    # ravel(order="K") avoids copying NIfTI's Fortran-ordered arrays (6x faster on 24M voxels).
    values = set(np.unique(arr.ravel(order="K")).astype(np.int64).tolist())
    bad = sorted(values - allowed_labels(convention))
    if bad:
        raise InputError(path, _outside_text(bad, convention))
    return arr.astype(np.uint8)


def labels_to_regions(labels: np.ndarray, convention: str | int = "2019") -> np.ndarray:
    """(X, Y, Z) labels -> (3, X, Y, Z) bool regions WT = {NCR, ED, ET}, TC = {NCR, ET}, ET."""
    c = _convention(convention)
    et = labels == c["ET"]
    tc = et | (labels == c["NCR"])
    wt = tc | (labels == c["ED"])
    return np.stack([wt, tc, et])


def regions_to_labels(regions: np.ndarray, convention: str | int = "2019") -> np.ndarray:
    """(3, ...) region masks (bool or probabilities > 0.5) -> labels: ET -> ET, else TC -> NCR, else WT -> ED."""
    c = _convention(convention)
    r = np.asarray(regions)
    if r.dtype != bool:
        r = r > 0.5
    out = np.zeros(r.shape[1:], dtype=np.uint8)
    out[r[0]] = c["ED"]
    out[r[1]] = c["NCR"]
    out[r[2]] = c["ET"]
    return out


def convert_labels(labels: np.ndarray, source: str | int, target: str | int) -> np.ndarray:
    """Relabel a map from one convention to the other (only ET's value differs)."""
    s, t = _convention(source), _convention(target)
    out = labels.astype(np.uint8).copy()
    out[labels == s["ET"]] = t["ET"]
    return out
