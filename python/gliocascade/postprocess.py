"""Post-processing: small enhancing tumour becomes necrosis; the ET threshold is tuned on validation.

The paper (and nnU-Net after it) relabels enhancing tumour as necrosis when its total volume is
below a threshold, because a few false-positive ET voxels in a case without ET cost a Dice of 0
under the BraTS convention. The threshold is chosen on validation cases by mean ET Dice.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Iterable

import numpy as np

from .errors import InputError
from .io import atomic_path, load_nifti, read_labels, write_labels
from .labels import CONVENTIONS, validate_labels
from .provenance import write_provenance

log = logging.getLogger(__name__)

# Search grid of tune-threshold (voxels), as nnU-Net: 0..1000 in steps of 10.
THRESHOLD_GRID = tuple(range(0, 1001, 10))


def relabel_small_et(labels: np.ndarray, et_threshold: int, convention: str = "2019") -> np.ndarray:
    """A copy of ``labels`` where ET becomes necrosis (label 1) if fewer than ``et_threshold`` ET voxels."""
    c = CONVENTIONS[str(convention)]
    out = np.array(labels, dtype=np.uint8, copy=True)
    et = out == c["ET"]
    n = int(et.sum())
    if 0 < n < int(et_threshold):
        out[et] = c["NCR"]
    return out


def _read_model_json(folder: Path) -> dict:
    from .model_io import read_model_json

    return read_model_json(folder)


def threshold_from_models(models: Iterable[Path]) -> int | None:
    """The ``et_threshold`` recorded in the models' model.json (they must agree); None when absent."""
    found: dict[Path, int] = {}
    for folder in models:
        card = _read_model_json(Path(folder))
        if card.get("et_threshold") is not None:
            value = card["et_threshold"]
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise InputError(Path(folder) / "model.json", f"et_threshold {value!r} is not a voxel count >= 0")
            found[Path(folder)] = value
    if not found:
        return None
    values = set(found.values())
    if len(values) > 1:
        detail = ", ".join(f"{k}: {v}" for k, v in found.items())
        raise InputError(next(iter(found)) / "model.json", f"model folders disagree on et_threshold ({detail})")
    return values.pop()


def postprocess_labels(pred: Path, out: Path, et_threshold: int, native_transforms: Path | None,
                       label_convention: str) -> list[Path]:
    """Write the final labels at ``out`` (and ``<stem>_native`` with transforms); return the paths.

    Everything is read and checked before anything is written, so bad input leaves no output.
    """
    from .native_space import labels_to_native, native_output_path, transform_files

    started = time.time()
    pred, out = Path(pred), Path(out)
    img = load_nifti(pred)
    labels = validate_labels(np.asanyarray(img.dataobj), label_convention, pred)
    if native_transforms is not None:
        transform_files(native_transforms)  # fail before writing anything
    final = relabel_small_et(labels, et_threshold, label_convention)
    changed = int((final != labels).sum())
    if changed:
        log.info("%s: %d ET voxels (< %d) relabelled as necrosis", pred.name, changed, et_threshold)
    written = []
    if native_transforms is not None:
        native_path = native_output_path(out)
        # Map first: a bad transform must not leave a BraTS-space output without its native twin.
        native, native_affine = labels_to_native(final, img, native_transforms)
        written.append(write_labels(out, final, img.affine))
        written.append(write_labels(native_path, native, native_affine))
    else:
        written.append(write_labels(out, final, img.affine))
    inputs = {"pred": pred}
    if native_transforms is not None:
        inputs.update({f"transform_{p.name}": p for p in Path(native_transforms).iterdir() if p.is_file()})
    write_provenance(out.parent / "provenance_postprocess.json", "postprocess", inputs,
                     {"et_threshold": et_threshold, "label_convention": label_convention,
                      "native_transforms": native_transforms},
                     started, extra={"outputs": [str(p) for p in written], "et_voxels_relabelled": changed})
    return written


# --------------------------------------------------------------------------- threshold tuning

def _find_gt(gt_dir: Path, case_id: str) -> Path | None:
    for folder in (gt_dir, gt_dir / case_id):
        for stem in (f"{case_id}_seg", f"{case_id}-seg"):
            for ext in (".nii.gz", ".nii"):
                p = folder / f"{stem}{ext}"
                if p.is_file():
                    return p
    return None


def _et_dice(pred_et: np.ndarray, gt_et: np.ndarray) -> float:
    from .metrics import dice

    return float(dice(pred_et, gt_et))


def et_summary(pred_labels: np.ndarray, gt_labels: np.ndarray, pred_convention: str = "2019",
               gt_convention: str = "2019") -> tuple[int, float, bool]:
    """(predicted ET voxels, ET Dice as predicted, reference ET empty) of one case.

    That is all tuning needs: relabelling removes all of a case's ET or none of it, so its ET
    Dice at threshold N is the Dice as predicted when N <= count, else 1 or 0 as the reference
    ET is empty or not (BraTS convention for empty regions).
    """
    pet = pred_labels == CONVENTIONS[str(pred_convention)]["ET"]
    get = gt_labels == CONVENTIONS[str(gt_convention)]["ET"]
    return int(pet.sum()), _et_dice(pet, get), not bool(get.any())


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
    """Set ``et_threshold`` in model.json atomically, leaving every other field (hashes) as it was."""
    path = Path(model_dir) / "model.json"
    card = _read_model_json(Path(model_dir))
    card["et_threshold"] = int(threshold)
    if extra:
        card["et_threshold_tuning"] = extra
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(card, indent=2) + "\n")
    return path


def _pred_cases(pred_dir: Path) -> dict[str, Path]:
    if not pred_dir.is_dir():
        raise InputError(pred_dir, "prediction folder not found")
    found: dict[str, Path] = {}
    for p in sorted(pred_dir.rglob("*_pred.nii*")):
        name = p.name
        cid = name[: name.index("_pred.nii")]
        found.setdefault(cid, p)
    if not found:
        raise InputError(pred_dir, "no <id>_pred.nii.gz files found")
    return found


def _references(gt: Path | None, references: Path | None, case_ids: list[str],
                gt_labels: str) -> dict[str, tuple[Path, str]]:
    """Each predicted case's reference and its convention: from ``--references CSV`` (per row) or
    ``--gt DIR`` (``<id>_seg`` files, all in ``gt_labels``)."""
    from .io import read_references

    if (gt is None) == (references is None):
        raise InputError(None, "give exactly one of --gt DIR or --references CSV")
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
        gpath = _find_gt(gt, cid)
        if gpath is None:
            raise InputError(gt / f"{cid}_seg.nii.gz", f"no ground truth for case {cid}")
        out[cid] = (gpath, gt_labels)
    return out


def tune_threshold(pred: Path, gt: Path | None, models: list[Path], pred_labels: str = "2019",
                   gt_labels: str = "2019", references: Path | None = None) -> tuple[int, dict]:
    """Pick the ET threshold N maximising mean ET Dice on validation cases; write it to each model.json.

    Returns N and the record written beside it (cases, mean ET Dice with and without relabelling)."""
    pred = Path(pred)
    for folder in models:  # check the model folders before the (slow) reading of cases
        _read_model_json(Path(folder))
    preds = _pred_cases(pred)
    refs = _references(gt, references, list(preds), gt_labels)
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


__all__ = ["relabel_small_et", "postprocess_labels", "best_threshold",
           "et_summary", "tune_threshold", "threshold_from_models", "write_threshold"]
