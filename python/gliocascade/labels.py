"""The label-convention table and every label <-> region conversion.

The networks predict regions (WT, TC, ET), not labels; each BraTS edition numbered the labels its
own way. One table owns the conventions (values, regions, readable/writable) so that training
targets, predictions, metrics, the samplesheet and both front doors agree on one definition.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputError

log = logging.getLogger(__name__)

REGIONS = ("WT", "TC", "ET")
# Each region as the label classes it unites (class keys as in Convention.values; a class a
# convention lacks is skipped).
REGION_CLASSES = {"WT": ("NCR", "NET", "ED", "ET"), "TC": ("NCR", "NET", "ET"), "ET": ("ET",), "RC": ("RC",)}
# Where a class goes in a convention that lacks it: BraTS 2017 merged the non-enhancing core into
# the necrotic core; a resection cavity is no tumour region at all (None: background).
CLASS_FALLBACK = {"NET": "NCR", "RC": None}


@dataclass(frozen=True)
class Convention(Mapping):
    """One BraTS labelling: class -> value (NCR necrosis/non-enhancing core, NET non-enhancing tumour,
    ED oedema, ET enhancing tumour, RC resection cavity), whether maps of it may be read and written,
    and its regions.

    A Mapping of its values, so ``CONVENTIONS["2019"]["ET"]`` is 4.
    """

    name: str
    values: dict[str, int]
    readable: bool = True
    writable: bool = True
    description: str = ""
    # Classes whose value a written map never holds (the model has no output for them).
    not_written: tuple[str, ...] = field(default_factory=tuple)

    def __getitem__(self, key: str) -> int:
        return self.values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)

    @property
    def regions(self) -> tuple[str, ...]:
        """WT, TC, ET and, where the convention labels it, RC as a region of its own."""
        return REGIONS + tuple(r for r in REGION_CLASSES if r not in REGIONS and r in self.values)

    @property
    def written_values(self) -> set[int]:
        return {0, *(v for k, v in self.values.items() if k not in self.not_written)}


CONVENTIONS: dict[str, Convention] = {c.name: c for c in (
    Convention("2015", {"NCR": 1, "ED": 2, "NET": 3, "ET": 4}, writable=False,
               description="BraTS 2012-2016: 1 necrosis, 2 oedema, 3 non-enhancing, 4 enhancing"),
    Convention("2019", {"NCR": 1, "ED": 2, "ET": 4}, description="BraTS 2017-2021: ET = 4"),
    Convention("2023", {"NCR": 1, "ED": 2, "ET": 3}, description="BraTS 2023: ET = 3"),
    Convention("2024", {"NCR": 1, "ED": 2, "ET": 3, "RC": 4}, not_written=("RC",),
               description="BraTS 2024 adult glioma post-treatment: 1 NETC, 2 SNFH, 3 ET, 4 RC"),
)}
READABLE = tuple(n for n, c in CONVENTIONS.items() if c.readable)
WRITABLE = tuple(n for n, c in CONVENTIONS.items() if c.writable)


@dataclass(frozen=True)
class Signature:
    """A label pattern that fits ``declared`` by its values but is typical of another labelling."""

    declared: str
    present: tuple[int, ...]
    absent: tuple[int, ...]
    meaning: str


SIGNATURES = (
    Signature("2015", present=(3,), absent=(4,),
              meaning="the signature of a 2023 or 2024 map (ET = 3), or of a 2015 map without enhancing tumour"),
    Signature("2024", present=(4,), absent=(3,),
              meaning="the signature of a 2019 map (ET = 4), or of a post-operative 2024 map with a resection "
                      "cavity and no enhancing tumour"),
)


def convention(name: str | int) -> Convention:
    """The table's row for ``name``; an unknown name is an InputError listing the known ones."""
    key = str(name)
    if key not in CONVENTIONS:
        raise InputError(None, f"unknown label convention {name!r} (use {', '.join(CONVENTIONS)})")
    return CONVENTIONS[key]


def writable_convention(name: str | int) -> Convention:
    """Like :func:`convention`, refusing conventions that label maps are never written in."""
    conv = convention(name)
    if not conv.writable:
        raise InputError(None, f"label convention {conv.name} is read only (write {', '.join(WRITABLE)})")
    return conv


def allowed_labels(name: str | int = "2019") -> set[int]:
    """The label values a map of this convention may contain (0 included)."""
    return {0, *convention(name).values.values()}


# A map of hundreds of values (an intensity image given as labels) is named by its count and first few.
SHOWN_LABEL_VALUES = 5


def _outside_text(bad: list[int], name: str | int) -> str:
    allowed = sorted(allowed_labels(name))
    if len(bad) <= SHOWN_LABEL_VALUES:
        return f"label values {bad} are outside the BraTS {name} convention {allowed}"
    first = ", ".join(str(v) for v in bad[:SHOWN_LABEL_VALUES])
    return (f"{len(bad)} label values outside the BraTS {name} convention {allowed} "
            f"({first}, ...; an intensity image given as labels?)")


def present_values(labels: np.ndarray) -> set[int]:
    """The values of a validated (uint8) map; a histogram, far faster than np.unique on 24M voxels."""
    counts = np.bincount(np.asarray(labels, dtype=np.uint8).ravel(order="K"), minlength=256)
    return {int(v) for v in np.flatnonzero(counts)}


def signature_warning(labels: np.ndarray, name: str | int, path: str | Path | None = None) -> str | None:
    """One line when a validated map's pattern is the signature of another convention than declared.

    Conventions sharing values cannot be told apart by values alone, so this warns, never refuses.
    """
    values = present_values(labels)
    for sig in SIGNATURES:
        if sig.declared == str(name) and set(sig.present) <= values and not values & set(sig.absent):
            has = ", ".join(str(v) for v in sig.present)
            lacks = ", ".join(str(v) for v in sig.absent)
            where = f"{path}: " if path is not None else ""
            return (f"{where}declared label convention {name} but the map has label {has} and no {lacks}: "
                    f"{sig.meaning}; check label_convention")
    return None


def validate_labels(labels: np.ndarray, name: str | int = "2019",
                    path: str | Path | None = None) -> np.ndarray:
    """Return the map as uint8, refusing NaN, non-integers and values outside the convention.

    Float maps are accepted when every value is an integer of the convention, because published
    BraTS tools write float32 label maps. A pattern typical of another convention is logged as a
    warning (see :func:`signature_warning`).
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
    bad = sorted(values - allowed_labels(name))
    if bad:
        raise InputError(path, _outside_text(bad, name))
    out = arr.astype(np.uint8)
    warning = signature_warning(out, name, path)
    if warning:
        log.warning("%s", warning)
    return out


def region_masks(labels: np.ndarray, name: str | int = "2019") -> dict[str, np.ndarray]:
    """Region -> bool mask for every region of the convention (WT, TC, ET, and RC where labelled)."""
    conv = convention(name)
    return {r: np.isin(labels, [conv[c] for c in REGION_CLASSES[r] if c in conv]) for r in conv.regions}


def labels_to_regions(labels: np.ndarray, name: str | int = "2019") -> np.ndarray:
    """(X, Y, Z) labels -> (3, X, Y, Z) bool regions WT = {NCR, NET, ED, ET}, TC = {NCR, NET, ET}, ET.

    The model's three outputs; a resection cavity (2024's RC) belongs to none of them.
    """
    masks = region_masks(labels, name)
    return np.stack([masks[r] for r in REGIONS])


def regions_to_labels(regions: np.ndarray, name: str | int = "2019") -> np.ndarray:
    """(3, ...) region masks (bool or probabilities > 0.5) -> labels: ET -> ET, else TC -> NCR, else WT -> ED."""
    c = writable_convention(name)
    r = np.asarray(regions)
    if r.dtype != bool:
        r = r > 0.5
    out = np.zeros(r.shape[1:], dtype=np.uint8)
    out[r[0]] = c["ED"]
    out[r[1]] = c["NCR"]
    out[r[2]] = c["ET"]
    return out


def convert_labels(labels: np.ndarray, source: str | int, target: str | int) -> np.ndarray:
    """Relabel a map from one convention to another, class by class.

    A class the target lacks goes where CLASS_FALLBACK says: 2015's non-enhancing tumour (3) joins
    the necrotic core (1), 2024's resection cavity becomes background (it is tumour in no region).
    """
    s, t = convention(source), convention(target)
    out = np.zeros(np.shape(labels), dtype=np.uint8)
    for cls, value in s.items():
        target_cls = cls if cls in t else CLASS_FALLBACK.get(cls)
        if target_cls is not None:
            out[labels == value] = t[target_cls]
    return out
