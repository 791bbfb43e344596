"""BraTS segmentation metrics per region (WT, TC, ET): Dice, HD95, sensitivity, specificity, volumes.

Researchers publish these numbers, so they follow the BraTS challenge conventions exactly and
agree with MedPy (the reference implementation of the official ``brats-evaluation``):

* both masks empty -> Dice 1, HD95 0, sensitivity 1;
* one mask empty, the other not -> Dice 0, HD95 = the BraTS 240x240x155 diagonal (computed), sensitivity 0;
* HD95 = 95th percentile of the pooled distances (mm) from each border voxel to the other border,
  where a border is the mask minus its erosion by the 6-connected cross (MedPy's definition).

Borders are found on the union's bounding box plus a one-voxel margin (every border voxel lies
inside it, so they are exactly those of the full image), and border-to-border distances come from
a k-d tree of the border voxels' positions in mm, searched up to ``KD_SEARCH_LIMIT_MM``: exact
Euclidean distances, at a cost that grows with the border size rather than with the box (scattered
metastases span most of the brain). When more than 5 % of the distances lie beyond the limit (huge
borders far apart: a reference filling the image), the distances come from exact Euclidean distance
transforms of the box instead, whose cost is bounded by the box whatever the border size.

A reference label map can be implausible (every voxel labelled, the whole brain box, tumour outside
the brain): :func:`reference_qc` says so in the provenance QC block; evaluate flags it
(``qc_reference`` 0 and a warning) and training refuses it.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from scipy.ndimage import binary_erosion, distance_transform_edt, generate_binary_structure
from scipy.spatial import cKDTree

from .errors import InputError
from .overlap import dice  # noqa: F401  (re-exported: metrics.dice is the reported metric)
from .geometry import BRATS_DIAGONAL_MM, bounding_box  # HD95 of one empty mask: the grid's diagonal
from .io import atomic_path, check_same_grid, load_nifti, read_labels, same_grid
from .labels import REGIONS, labels_to_regions, signature_warning
from .layout import provenance_name
from .provenance import write_provenance

log = logging.getLogger(__name__)

METRICS = ("dice", "hd95", "sensitivity", "specificity", "volume_pred_ml", "volume_ref_ml")
# 1 when the reference passed reference_qc, 0 when it is implausible (its metrics mean little).
QC_COLUMN = "qc_reference"
_CROSS = generate_binary_structure(3, 1)
# Nearest-border searches stop here: beyond it a k-d tree visits much of a dense border per query.
KD_SEARCH_LIMIT_MM = 20.0


def metric_columns(with_reference: bool = True) -> list[str]:
    """The column names of a metrics row, in their stable order."""
    names = METRICS if with_reference else ("volume_pred_ml",)
    return ["case_id"] + [f"{m}_{r}" for r in REGIONS for m in names] + ([QC_COLUMN] if with_reference else [])


def spacing_from_affine(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size (mm) along each array axis: the lengths of the affine's columns."""
    return tuple(float(v) for v in np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0)))


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
    distances = np.hstack((np.zeros(2 * n_shared), *_nearest_border(pred_border, ref_border, shared, sampling)))
    return float(np.percentile(distances, 95))


def _nearest_border(pred_border: np.ndarray, ref_border: np.ndarray, shared: np.ndarray,
                    sampling: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact distances (mm) from each unshared border voxel of one mask to the other's border.

    A k-d tree searched up to KD_SEARCH_LIMIT_MM is cheap for the usual borders; it is exact for the
    95th percentile whenever the order statistics it reads are found within the limit. Otherwise
    (huge borders far apart) two distance transforms of the box give every distance exactly.
    """
    from_pred, from_ref = pred_border & ~shared, ref_border & ~shared
    to_ref = cKDTree(np.argwhere(ref_border) * sampling).query(
        np.argwhere(from_pred) * sampling, k=1, distance_upper_bound=KD_SEARCH_LIMIT_MM)[0]
    to_pred = cKDTree(np.argwhere(pred_border) * sampling).query(
        np.argwhere(from_ref) * sampling, k=1, distance_upper_bound=KD_SEARCH_LIMIT_MM)[0]
    n = 2 * int(np.count_nonzero(shared)) + to_ref.size + to_pred.size
    needed = int(np.ceil(0.95 * (n - 1))) + 1  # the highest sorted index the 95th percentile reads (+1: rounding)
    n_found = n - int(np.count_nonzero(np.isinf(to_ref))) - int(np.count_nonzero(np.isinf(to_pred)))
    if n_found > needed:  # everything beyond the limit sorts above what is read: any finite stand-in
        return np.nan_to_num(to_ref, posinf=np.finfo(np.float64).max), np.nan_to_num(
            to_pred, posinf=np.finfo(np.float64).max)
    return (distance_transform_edt(~ref_border, sampling=sampling)[from_pred],
            distance_transform_edt(~pred_border, sampling=sampling)[from_ref])


def _region_metrics(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...], n_voxels: int) -> dict:
    """Metrics of one region on arrays cropped around the union (``n_voxels``: size of the full image)."""
    voxel_ml = float(np.prod(spacing)) / 1000.0
    n_pred, n_ref = int(np.count_nonzero(pred)), int(np.count_nonzero(ref))
    tp = int(np.count_nonzero(pred & ref))
    fp, fn = n_pred - tp, n_ref - tp
    tn = n_voxels - tp - fp - fn
    return {
        "dice": dice(pred, ref),
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


# Plausibility limits of a reference's whole tumour (WT), from the references at hand: the real
# BraTS-space labels (two cases, seven algorithm maps) and the four expert BRATS 2013 maps cover at
# most 2.4 % of the image and 20 % of the brain, fill at most 36 % of their bounding box and leave at
# most 0.22 % of the tumour outside the brain; phantoms (64x64x48, seeds 0-299) at most 8 %, 33 %,
# 51 % and 0 %. A reference of every voxel, or of the whole brain box, fills 100 % of its box and
# covers 37-48 % of the image (or all of it). Each limit leaves a wide margin on both sides.
QC_LIMITS = {"reference_fraction_of_image": 0.25, "reference_box_fill": 0.85,
             "reference_fraction_of_brain": 0.6, "reference_outside_brain": 0.05}
# Below this many voxels a box is the natural shape of a lesion (a few voxels), so fill is not judged.
QC_MIN_BOX_VOXELS = 1000
_QC_REASONS = {"reference_fraction_of_image": "tumour covers {:.1%} of the image (limit {:.0%})",
               "reference_box_fill": "tumour fills {:.1%} of its bounding box (limit {:.0%}: a box, not a lesion)",
               "reference_fraction_of_brain": "tumour covers {:.1%} of the brain (limit {:.0%})",
               "reference_outside_brain": "{:.1%} of the tumour lies outside the brain (limit {:.0%})"}


def _qc_check(name: str, score: float, judged: bool = True) -> dict:
    threshold = QC_LIMITS[name]
    return {"score": float(score), "threshold": threshold, "passed": bool(not judged or score <= threshold)}


def reference_qc(labels: np.ndarray, convention: str = "2019", brain: np.ndarray | None = None) -> dict:
    """Plausibility of a validated reference label map, as a provenance QC block.

    ``{checks: {name: {score, threshold, passed}}, decision: pass|fail, reasons: [...]}``; with the
    case's ``brain`` (mask, on the reference's grid) also the tumour's share of the brain and the part
    of it outside. Every non-zero label is tumour in both conventions.
    """
    wt = np.asarray(labels) > 0
    n = int(np.count_nonzero(wt))
    box = bounding_box(wt, margin=0)
    box_voxels = int(np.prod([b.stop - b.start for b in box])) if box else 0
    checks = {"reference_fraction_of_image": _qc_check("reference_fraction_of_image", n / wt.size),
              "reference_box_fill": _qc_check("reference_box_fill", n / box_voxels if box_voxels else 0.0,
                                              judged=box_voxels >= QC_MIN_BOX_VOXELS)}
    if brain is not None and np.any(brain):
        brain = np.asarray(brain, dtype=bool)
        inside = int(np.count_nonzero(wt & brain))
        checks["reference_fraction_of_brain"] = _qc_check("reference_fraction_of_brain",
                                                          inside / int(np.count_nonzero(brain)))
        checks["reference_outside_brain"] = _qc_check("reference_outside_brain", (n - inside) / n if n else 0.0)
    reasons = [_QC_REASONS[k].format(c["score"], c["threshold"]) for k, c in checks.items() if not c["passed"]]
    return {"checks": checks, "decision": "fail" if reasons else "pass", "reasons": reasons}


def evaluate_case_qc(pred: Path, gt: Path | None, case_id: str, pred_labels: str = "2019",
                     gt_labels: str = "2019", brain: np.ndarray | None = None,
                     lesion_task: str | None = None) -> tuple[dict, dict | None, list[str]]:
    """The metrics row of :func:`evaluate_case`, the reference's QC block (None without ``gt``) and
    the warnings about the maps' label patterns (see labels.signature_warning), for the report.

    ``lesion_task`` (with ``gt``) appends the lesion-wise columns of that BraTS task
    (:mod:`gliocascade.lesion_metrics`) after the voxel-wise ones.
    """
    p, p_aff = read_labels(Path(pred), pred_labels)
    spacing = spacing_from_affine(p_aff)
    qc = None
    warnings = [w for w in [signature_warning(p, pred_labels, pred)] if w]
    if gt is None:
        values = evaluate_arrays(p, None, spacing, pred_labels)
    else:
        g, g_aff = read_labels(Path(gt), gt_labels)
        check_same_grid(pred, (p, p_aff), gt, (g, g_aff))
        values = evaluate_arrays(p, g, spacing, pred_labels, gt_labels)
        qc = reference_qc(g, gt_labels, brain if brain is not None and brain.shape == g.shape else None)
        values[QC_COLUMN] = 1 if qc["decision"] == "pass" else 0
        warnings += [w for w in [signature_warning(g, gt_labels, gt)] if w]
    row = {"case_id": case_id, **values}
    row = {k: row[k] for k in metric_columns(gt is not None)}
    if gt is not None and lesion_task:
        from .lesion_metrics import lesion_wise_metrics

        row.update(lesion_wise_metrics(p, g, spacing, lesion_task, pred_labels, gt_labels))
    return row, qc, warnings


def evaluate_case(pred: Path, gt: Path | None, case_id: str, pred_labels: str = "2019",
                  gt_labels: str = "2019") -> dict:
    """One metrics row for a case: ``case_id`` then the columns of :func:`metric_columns`.

    Both maps must share the grid (affines within 1e-3 mm); HD95 and volumes use its spacing.
    ``qc_reference`` is 0 when the reference is implausible (see :func:`reference_qc`).
    """
    return evaluate_case_qc(pred, gt, case_id, pred_labels, gt_labels)[0]


def brain_on_grid(images: dict[str, Path], grid_of: Path) -> np.ndarray | None:
    """Where the images have data (voxels non-zero in every modality) when they lie on ``grid_of``'s
    grid, else None (a native row's reference is on another grid than its images).

    Not the brain mask: a tumour must lie where the images show something, whatever mask z-scoring
    uses, and the same rule holds in training (data.load_volume).
    """
    from .io import MODALITIES, read_image

    ref = load_nifti(grid_of)
    arrays = []
    for path in (images[m] for m in MODALITIES if images.get(m) is not None):  # absent modalities: no vote
        arr, aff = read_image(path)
        if not same_grid(aff, arr.shape, ref.affine, ref.shape):
            return None
        arrays.append(arr != 0)
    return np.all(arrays, axis=0)


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
    try:  # headers only: evaluate_case reads (and checks) the chosen maps in full
        ref, native = nib.load(str(gt)), nib.load(str(pred_native))
    except Exception:  # unreadable: evaluate_case gives the one-line error naming the file
        return Path(pred_native)
    if same_grid(native.affine, native.shape[:3], ref.affine, ref.shape[:3]):
        return Path(pred_native)
    return Path(pred)


def evaluate_to_files(pred: Path, gt: Path | None, case_id: str, out: Path, pred_labels: str = "2019",
                      gt_labels: str = "2019", pred_native: Path | None = None,
                      brain_images: dict[str, Path] | None = None, lesion_task: str | None = None) -> dict | None:
    """Evaluate one case into ``out`` (one metrics row, volumes only without ``gt``) and
    ``provenance_evaluate.json`` beside it; returns the reference's QC block (None without ``gt``).

    An implausible reference is evaluated all the same and flagged (``qc_reference`` 0, the QC block
    in provenance). ``brain_images`` (`run`, space=brats rows) add the checks that need the brain:
    tumour share of the brain, tumour outside it. ``lesion_task`` adds the lesion-wise metrics.
    """
    started = time.time()
    if lesion_task is not None and gt is None:  # lesions are matched against a reference: none, nothing to count
        raise InputError(Path(pred), "lesion-wise metrics need a reference segmentation")
    gt = None if gt is None else Path(gt)
    chosen = prediction_for_reference(Path(pred), None if pred_native is None else Path(pred_native), gt)
    brain = brain_on_grid(brain_images, gt) if gt is not None and brain_images else None
    row, qc, warnings = evaluate_case_qc(chosen, gt, case_id, pred_labels, gt_labels, brain, lesion_task)
    write_metrics_csv([row], Path(out))
    write_provenance(Path(out).parent / provenance_name("evaluate"), "evaluate", {"pred": chosen, "gt": gt},
                     {"case_id": case_id, "pred_labels": pred_labels, "gt_labels": gt_labels,
                      **({"lesion_task": lesion_task} if lesion_task is not None else {})}, started,
                     extra={"output": str(out), "warnings": warnings, **({"qc": qc} if qc is not None else {})})
    log.info("wrote %s", out)
    return qc
