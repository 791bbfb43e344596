"""Tuning the ET threshold on validation cases: the voxel count below which postprocess turns ET
into necrosis, chosen by mean ET Dice and recorded in each model's card.

The paper (and nnU-Net after it) relabels small enhancing tumour because a few false-positive ET
voxels in a case without ET cost a Dice of 0 under the BraTS convention; ``postprocess`` applies
the threshold, this module only finds it.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable

import numpy as np

from .errors import InputError
from .io import read_labels
from .labels import CONVENTIONS
from .layout import PRED_GLOB, case_id_of_prediction, pred_name, seg_name
from .metrics import dice
from .model_card import update_model_json

log = logging.getLogger(__name__)

# Search grid of tune-threshold (voxels), as nnU-Net: 0..1000 in steps of 10.
THRESHOLD_GRID = tuple(range(0, 1001, 10))


def et_summary(pred_labels: np.ndarray, gt_labels: np.ndarray, pred_convention: str = "2019",
               gt_convention: str = "2019") -> tuple[int, float, bool]:
    """(predicted ET voxels, ET Dice as predicted, reference ET empty) of one case.

    That is all tuning needs: relabelling removes all of a case's ET or none of it, so its ET
    Dice at threshold N is the Dice as predicted when N <= count, else 1 or 0 as the reference
    ET is empty or not (BraTS convention for empty regions).
    """
    pet = pred_labels == CONVENTIONS[str(pred_convention)]["ET"]
    get = gt_labels == CONVENTIONS[str(gt_convention)]["ET"]
    return int(pet.sum()), float(dice(pet, get)), not bool(get.any())


def best_threshold(summaries: list[tuple[int, float, bool]],
                   grid: Iterable[int] = THRESHOLD_GRID) -> tuple[int, float, dict[int, float]]:
    """(threshold with the highest mean ET Dice — the smallest on ties —, that mean, every mean)."""
    if not summaries:
        raise InputError(None, "no validation cases to tune the ET threshold on")
    means: dict[int, float] = {}
    for n in grid:
        scores = []
        for count, dice_as_predicted, gt_empty in summaries:
            if 0 < count < n:
                scores.append(1.0 if gt_empty else 0.0)
            else:
                scores.append(dice_as_predicted)
        means[int(n)] = float(np.mean(scores))
    top = max(means.values())
    best = min(n for n, m in means.items() if m >= top - 1e-12)
    return best, means[best], means


def write_threshold(model_dir: Path, threshold: int, extra: dict | None = None) -> Path:
    """Record ``et_threshold`` (and how it was found) in the model's card; the weight hashes stay."""
    fields: dict = {"et_threshold": int(threshold)}
    if extra:
        fields["et_threshold_tuning"] = extra
    return update_model_json(model_dir, fields)


def find_reference(gt_dir: Path, case_id: str) -> Path | None:
    """``<id>_seg`` (or ``<id>-seg``) in ``gt_dir`` or in its case folder ``gt_dir/<id>``."""
    for folder in (gt_dir, gt_dir / case_id):
        for stem in (f"{case_id}_seg", f"{case_id}-seg"):
            for ext in (".nii.gz", ".nii"):
                p = folder / f"{stem}{ext}"
                if p.is_file():
                    return p
    return None


def prediction_files(pred_dir: Path) -> dict[str, Path]:
    """Case id -> its prediction (``layout.pred_name``) below ``pred_dir`` (the first found per case)."""
    if not pred_dir.is_dir():
        raise InputError(pred_dir, "prediction folder not found")
    found: dict[str, Path] = {}
    for p in sorted(pred_dir.rglob(PRED_GLOB)):
        found.setdefault(case_id_of_prediction(p.name), p)
    if not found:
        raise InputError(pred_dir, f"no {pred_name('<id>')} files found")
    return found


def reference_files(gt: Path | None, references: Path | None, case_ids: list[str],
                    gt_labels: str) -> dict[str, tuple[Path, str]]:
    """Each predicted case's reference and its convention: from a references CSV (per row) or a
    ground-truth folder (``<id>_seg`` files, all in ``gt_labels``)."""
    from .io import read_references

    if (gt is None) == (references is None):
        raise InputError(None, "give exactly one of a ground-truth folder or a references CSV")
    if references is not None:
        table = read_references(references)
        missing = [c for c in case_ids if c not in table]
        if missing:
            raise InputError(references, f"no reference for case {missing[0]}")
        return {c: table[c] for c in case_ids}
    gt = Path(gt)
    if not gt.is_dir():
        raise InputError(gt, "ground-truth folder not found")
    out = {}
    for cid in case_ids:
        gpath = find_reference(gt, cid)
        if gpath is None:
            raise InputError(gt / seg_name(cid), f"no ground truth for case {cid}")
        out[cid] = (gpath, gt_labels)
    return out


__all__ = ["THRESHOLD_GRID", "best_threshold", "et_summary", "find_reference", "prediction_files",
           "reference_files", "write_threshold"]


def tune_threshold(pred: Path, gt: Path | None, models: list[Path], pred_labels: str = "2019",
                   gt_labels: str = "2019", references: Path | None = None) -> tuple[int, dict]:
    """Pick the ET threshold N maximising mean ET Dice on validation cases; write it to each model.json.

    Returns N and the record written beside it (cases, mean ET Dice with and without relabelling)."""
    from .model_card import read_model_json

    pred = Path(pred)
    for folder in models:  # check the model folders before the (slow) reading of cases
        read_model_json(Path(folder))
    preds = prediction_files(pred)
    refs = reference_files(gt, references, list(preds), gt_labels)
    summaries = []
    for cid, ppath in preds.items():
        gpath, gconv = refs[cid]
        plab, paff = read_labels(ppath, pred_labels)
        glab, gaff = read_labels(gpath, gconv)
        if plab.shape != glab.shape or not np.allclose(paff, gaff, atol=1e-3):
            raise InputError(gpath, f"grid differs from the prediction {ppath.name}")
        summaries.append(et_summary(plab, glab, pred_labels, gconv))
    best, mean, means = best_threshold(summaries)
    log.info("ET threshold %d voxels: mean ET Dice %.4f over %d cases (%.4f without relabelling)",
             best, mean, len(summaries), means[0])
    info = {"cases": len(summaries), "mean_et_dice": round(mean, 6), "mean_et_dice_at_0": round(means[0], 6),
            "grid": [THRESHOLD_GRID[0], THRESHOLD_GRID[-1], 10]}
    for folder in models:
        write_threshold(Path(folder), best, info)
    return best, info
