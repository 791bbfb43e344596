"""What the report knows about one case: images in RAS, provenance, facts.

A case's files are found by role (``layout.REPORT_ROLES``): in a run folder by its layout
(:func:`run_dir_files`), or from the list a workflow engine hands over (``case_files.py``), so
both doors' pages are made from the same files by the same code. Everything is read once per case
(labels, T1Gd, FLAIR, reference, provenance records) so the case page, the cohort row, its
thumbnail and its QC flags come from the same arrays.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .io import load_nifti, same_grid
from .labels import REGIONS, labels_to_regions
from .layout import MODALITIES, NATIVE_T1CE_ROLE, STEPS, SUFFIXES, case_paths, image_name
from .qc_flags import TumourFacts, tumour_facts

log = logging.getLogger(__name__)


def read_record(path: Path) -> dict[str, Any]:
    """A provenance JSON object, or {} when absent or unreadable (the page says what is missing)."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def find_modality(run_dir: Path, case_id: str, modality: str = "t1ce") -> Path | None:
    """A BraTS-space modality of the case, by the case layout: preprocessed/, then the case folder
    (2019 names before 2023 ones); failing both, the file predict read (a BraTS-space case is not
    copied into the run folder, so only its provenance knows where it lies)."""
    paths = case_paths(run_dir, case_id)
    for naming in SUFFIXES:
        name = image_name(case_id, modality, naming)
        for candidate in (paths.preprocessed / name, paths.root / name):
            if candidate.is_file():
                return candidate
    return _recorded(read_record(paths.provenance("predict")), modality)


def _recorded(record: dict[str, Any], role: str) -> Path | None:
    """An input file a provenance record names, when it still exists."""
    try:
        recorded = Path(record["inputs"][role]["path"])
    except (KeyError, TypeError):
        return None
    return recorded if recorded.is_file() else None


def run_dir_files(run_dir: Path, case_id: str) -> dict[str, Path]:
    """Role -> file of one case of a run folder (``OUT/<id>/...``, inputs as provenance names them)."""
    paths = case_paths(run_dir, case_id)
    files = {"seg": paths.seg, "seg_native": paths.seg_native, "brainmask": paths.brainmask,
             **{f"provenance_{s}": paths.provenance(s) for s in STEPS}}
    files = {role: f for role, f in files.items() if f.is_file()}
    for modality in MODALITIES:
        found = find_modality(run_dir, case_id, modality)
        if found is not None:
            files[modality] = found
    records = {role: read_record(f) for role, f in files.items() if role.startswith("provenance_")}
    for role, step, key in (("reference", "evaluate", "gt"), (NATIVE_T1CE_ROLE, "preprocess", "t1ce")):
        found = _recorded(records.get(f"provenance_{step}", {}), key)
        if found is not None:
            files[role] = found
    return files


def canonical(path: Path, like: Any | None = None, dtype: type = np.float32) -> np.ndarray | None:
    """The image as a RAS array; None when ``like`` (a nibabel image) is given and the grids differ."""
    import nibabel as nib

    img = load_nifti(path)
    if like is not None and not same_grid(img.affine, img.shape, like.affine, like.shape):
        log.warning("%s: not on the grid of the segmentation; left out of the report's images", path)
        return None
    return np.asarray(nib.as_closest_canonical(img).dataobj, dtype=dtype)


def _labels(path: Path) -> tuple[Any, np.ndarray, tuple[float, ...]]:
    import nibabel as nib

    img = load_nifti(path)
    ras = nib.as_closest_canonical(img)
    labels = np.rint(np.asarray(ras.dataobj, dtype=np.float32)).astype(np.int16)
    return img, labels, tuple(float(z) for z in ras.header.get_zooms()[:3])


@dataclass
class CaseData:
    """One case's arrays (RAS) and records; optional parts are None when the run has none."""

    case_id: str
    files: dict[str, Path]  # role -> file (layout.REPORT_ROLES)
    labels: np.ndarray
    zooms: tuple[float, ...]
    convention: str = "2019"
    t1ce: np.ndarray | None = None
    flair: np.ndarray | None = None
    reference: np.ndarray | None = None  # (3, X, Y, Z) bool regions WT, TC, ET
    reference_path: Path | None = None
    provenance: dict[str, dict] = field(default_factory=dict)

    @property
    def voxel_ml(self) -> float:
        return float(np.prod(self.zooms)) / 1000.0

    @property
    def regions(self) -> np.ndarray:
        return labels_to_regions(self.labels, self.convention)

    def facts(self) -> TumourFacts:
        return tumour_facts(self.labels, self.voxel_ml)

    def volumes_ml(self) -> dict[str, float]:
        regions = self.regions
        return {r: float(regions[i].sum()) * self.voxel_ml for i, r in enumerate(REGIONS)}

    def warnings(self) -> list[str]:
        """The model's warnings (predict) and those about the label maps' conventions (evaluate)."""
        return [str(w) for step in ("predict", "evaluate") for w in self.provenance.get(step, {}).get("warnings") or []]


def load_case(case_id: str, files: dict[str, Path]) -> CaseData:
    """Read one case from its files by role: the labels, T1Gd and FLAIR, reference and provenance."""
    seg_img, labels, zooms = _labels(files["seg"])
    provenance = {s: r for s in STEPS if f"provenance_{s}" in files and (r := read_record(files[f"provenance_{s}"]))}
    params = provenance.get("evaluate", {}).get("parameters") or {}
    data = CaseData(case_id, dict(files), labels, zooms, str(params.get("pred_labels") or "2019"),
                    provenance=provenance)
    for modality in ("t1ce", "flair"):
        if modality in files:
            setattr(data, modality, canonical(files[modality], seg_img))
    gt = files.get("reference")
    if gt is not None:
        ref = canonical(gt, seg_img)
        if ref is not None:
            data.reference = labels_to_regions(np.rint(ref).astype(np.int16), str(params.get("gt_labels") or "2019"))
            data.reference_path = Path(gt)
    return data
