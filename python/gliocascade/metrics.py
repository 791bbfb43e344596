"""BraTS segmentation metrics per region (WT, TC, ET): Dice, HD95, sensitivity, specificity, volumes.

Researchers publish these numbers, so they follow the BraTS challenge conventions exactly and
agree with MedPy (the reference implementation of the official ``brats-evaluation``):

* both masks empty -> Dice 1, HD95 0, sensitivity 1;
* one mask empty, the other not -> Dice 0, HD95 = the BraTS 240x240x155 diagonal (computed), sensitivity 0;
* HD95 = 95th percentile of the pooled distances (mm) from each border voxel to the other border,
  where a border is the mask minus its erosion by the 6-connected cross (MedPy's definition).

Borders are found on the union's bounding box plus a one-voxel margin (every border voxel lies
inside it, so they are exactly those of the full image), and border-to-border distances come from
a k-d tree of the border voxels' positions in mm: exact Euclidean distances, at a cost that grows
with the border size rather than with the box (scattered metastases span most of the brain).
"""
from __future__ import annotations

import logging
import time
import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.ndimage import binary_erosion, generate_binary_structure
from scipy.spatial import cKDTree

from .errors import InputError
from .io import atomic_path, check_same_grid, load_nifti, read_labels, same_grid
from .labels import REGIONS, labels_to_regions
from .provenance import write_provenance

log = logging.getLogger(__name__)

# HD95 when exactly one of the two masks is empty: the diagonal of the BraTS grid, in mm.
BRATS_DIAGONAL_MM = math.sqrt(240.0 ** 2 + 240.0 ** 2 + 155.0 ** 2)
METRICS = ("dice", "hd95", "sensitivity", "specificity", "volume_pred_ml", "volume_ref_ml")
_CROSS = generate_binary_structure(3, 1)


def metric_columns(with_reference: bool = True) -> list[str]:
    """The column names of a metrics row, in their stable order."""
    names = METRICS if with_reference else ("volume_pred_ml",)
    return ["case_id"] + [f"{m}_{r}" for r in REGIONS for m in names]


def spacing_from_affine(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size (mm) along each array axis: the lengths of the affine's columns."""
    return tuple(float(v) for v in np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0)))


def bounding_box(mask: np.ndarray, margin: int = 1) -> tuple[slice, ...] | None:
    """Slices of the bounding box of ``mask`` grown by ``margin`` (clipped to the image); None if empty."""
    slices = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hit = np.flatnonzero(np.any(mask, axis=other))
        if hit.size == 0:
            return None
        slices.append(slice(max(int(hit[0]) - margin, 0), min(int(hit[-1]) + margin + 1, mask.shape[axis])))
    return tuple(slices)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two boolean masks; 1.0 when both are empty (BraTS convention)."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    total = int(np.count_nonzero(a)) + int(np.count_nonzero(b))
    if total == 0:
        return 1.0
    return 2.0 * int(np.count_nonzero(a & b)) / total


def _border(mask: np.ndarray) -> np.ndarray:
    """The mask minus its erosion by the 6-connected cross (voxels outside the array count as background)."""
    return mask & ~binary_erosion(mask, structure=_CROSS, iterations=1)


def hd95(pred_mask: np.ndarray, ref_mask: np.ndarray, spacing: tuple[float, ...]) -> float:
    """95th percentile of the symmetric border distances in mm (BraTS conventions for empty masks)."""
    pred_mask, ref_mask = np.asarray(pred_mask, dtype=bool), np.asarray(ref_mask, dtype=bool)
    return _hd95_cropped(pred_mask, ref_mask, spacing)


def _hd95_cropped(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...]) -> float:
    box = bounding_box(pred | ref, margin=1)
    if box is None:
        return 0.0
    pred, ref = pred[box], ref[box]
    has_pred, has_ref = bool(pred.any()), bool(ref.any())
    if not has_pred and not has_ref:
        return 0.0
    if has_pred != has_ref:
        return BRATS_DIAGONAL_MM
    sampling = np.asarray(spacing, dtype=np.float64)
    pred_border, ref_border = _border(pred), _border(ref)
    shared = pred_border & ref_border  # border voxels of both: distance exactly 0, no search needed
    n_shared = int(np.count_nonzero(shared))
    pred_pts = np.argwhere(pred_border) * sampling
    ref_pts = np.argwhere(ref_border) * sampling
    # Exact nearest-border distances; a k-d tree costs O(border log border) where a distance
    # transform costs the whole box, which is large for scattered lesions (metastases).
    to_ref = cKDTree(ref_pts).query(np.argwhere(pred_border & ~shared) * sampling, k=1)[0]
    to_pred = cKDTree(pred_pts).query(np.argwhere(ref_border & ~shared) * sampling, k=1)[0]
    return float(np.percentile(np.hstack((np.zeros(2 * n_shared), to_ref, to_pred)), 95))


def _region_metrics(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...], n_voxels: int) -> dict:
    """Metrics of one region on arrays cropped around the union (``n_voxels``: size of the full image)."""
    voxel_ml = float(np.prod(spacing)) / 1000.0
    n_pred, n_ref = int(np.count_nonzero(pred)), int(np.count_nonzero(ref))
    tp = int(np.count_nonzero(pred & ref))
    fp, fn = n_pred - tp, n_ref - tp
    tn = n_voxels - tp - fp - fn
    return {
        "dice": 1.0 if n_pred + n_ref == 0 else 2.0 * tp / (n_pred + n_ref),
        "hd95": _hd95_cropped(pred, ref, spacing),
        # Empty reference: 1 when the prediction is empty too, else 0 (BraTS).
        "sensitivity": (1.0 if n_pred == 0 else 0.0) if n_ref == 0 else tp / n_ref,
        # A reference that fills the image leaves no negatives: perfect unless something was missed.
        "specificity": 1.0 if tn + fp == 0 else tn / (tn + fp),
        "volume_pred_ml": n_pred * voxel_ml,
        "volume_ref_ml": n_ref * voxel_ml,
    }


def region_metrics(pred_mask: np.ndarray, ref_mask: np.ndarray, spacing: tuple[float, ...]) -> dict:
    """Dice, HD95 (mm), sensitivity, specificity and both volumes (mL) of one region's masks."""
    pred_mask, ref_mask = np.asarray(pred_mask, dtype=bool), np.asarray(ref_mask, dtype=bool)
    if pred_mask.shape != ref_mask.shape:
        raise ValueError(f"mask shapes differ: {pred_mask.shape} vs {ref_mask.shape}")
    box = bounding_box(pred_mask | ref_mask, margin=1)
    if box is None:
        box = tuple(slice(0, 0) for _ in pred_mask.shape)
    return _region_metrics(pred_mask[box], ref_mask[box], spacing, int(pred_mask.size))


def evaluate_arrays(pred: np.ndarray, ref: np.ndarray | None, spacing: tuple[float, ...],
                    pred_labels: str = "2019", gt_labels: str = "2019") -> dict[str, float]:
    """Metrics of validated label maps per region, keyed ``<metric>_<region>`` (volumes only without ``ref``)."""
    voxel_ml = float(np.prod(spacing)) / 1000.0
    if ref is None:
        regions = labels_to_regions(pred, pred_labels)
        return {f"volume_pred_ml_{r}": int(np.count_nonzero(regions[i])) * voxel_ml
                for i, r in enumerate(REGIONS)}
    box = bounding_box((pred > 0) | (ref > 0), margin=1)
    if box is None:
        box = tuple(slice(0, 0) for _ in pred.shape)
    p_regions = labels_to_regions(pred[box], pred_labels)
    r_regions = labels_to_regions(ref[box], gt_labels)
    row: dict[str, float] = {}
    for i, r in enumerate(REGIONS):
        for name, value in _region_metrics(p_regions[i], r_regions[i], spacing, int(pred.size)).items():
            row[f"{name}_{r}"] = value
    return row


def evaluate_case(pred: Path, gt: Path | None, case_id: str, pred_labels: str = "2019",
                  gt_labels: str = "2019") -> dict:
    """One metrics row for a case: ``case_id`` then the columns of :func:`metric_columns`.

    Both maps must share the grid (affines within 1e-3 mm); HD95 and volumes use its spacing.
    """
    p, p_aff = read_labels(Path(pred), pred_labels)
    spacing = spacing_from_affine(p_aff)
    if gt is None:
        values = evaluate_arrays(p, None, spacing, pred_labels)
    else:
        g, g_aff = read_labels(Path(gt), gt_labels)
        check_same_grid(pred, (p, p_aff), gt, (g, g_aff))
        values = evaluate_arrays(p, g, spacing, pred_labels, gt_labels)
    row = {"case_id": case_id, **values}
    return {k: row[k] for k in metric_columns(gt is not None)}


def write_metrics_csv(rows: list[dict], out: Path) -> Path:
    """Write metrics rows atomically (full float precision)."""
    out = Path(out)
    if out.exists() and out.is_dir():
        raise InputError(out, "output is a folder, expected a CSV file path")
    with atomic_path(out) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
    return out


def prediction_for_reference(pred: Path, pred_native: Path | None, gt: Path | None) -> Path:
    """The labels to compare with ``gt``: the native-grid labels when the reference lies on that grid.

    A native row's reference is drawn on the patient's T1Gd grid, a BraTS row's on the BraTS grid;
    both front doors hand evaluate both label maps and this one rule picks, so a case is judged
    the same way whichever door ran it. Without a reference the BraTS-space labels give the volumes.
    """
    if gt is None or pred_native is None:
        return Path(pred)
    ref, native = load_nifti(gt), load_nifti(pred_native)
    if same_grid(native.affine, native.shape, ref.affine, ref.shape):
        return Path(pred_native)
    return Path(pred)


def evaluate_command(pred: Path, gt: Path | None, case_id: str, out: Path, pred_labels: str,
                     gt_labels: str, pred_native: Path | None = None) -> int:
    """CLI body of `gliocascade evaluate`: one row per case, volumes only without ``--gt``."""
    started = time.time()
    gt = None if gt is None else Path(gt)
    chosen = prediction_for_reference(Path(pred), None if pred_native is None else Path(pred_native), gt)
    row = evaluate_case(chosen, gt, case_id, pred_labels, gt_labels)
    write_metrics_csv([row], Path(out))
    write_provenance(Path(out).parent / "provenance_evaluate.json", "evaluate", {"pred": chosen, "gt": gt},
                     {"case_id": case_id, "pred_labels": pred_labels, "gt_labels": gt_labels}, started,
                     extra={"output": str(out)})
    log.info("wrote %s", out)
    return 0
