"""The four expert-labelled BRATS 2013 cases as learning data: load, coarsen to 2 mm, score.

``<data>/expert_flair_t1c/brats_2013_pat000{3..6}_1`` hold FLAIR and T1Gd (T1 and T2 absent), a
brain mask and the expert ``OTMultiClass`` map (BraTS 2015 convention). Two cores cannot train on
them at 1 mm, so the learning benchmark and the learning test train and predict on 2 mm copies and
score at 1 mm against the untouched expert labels. Torch-free, so the data side can be checked alone.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from .data import zscore
from .labels import labels_to_regions, regions_to_labels
from .layout import brainmask_name, image_name, seg_name
from .metrics import region_metrics

EXPERT_FOLDER = "expert_flair_t1c"
EXPERT_CASES = tuple(f"brats_2013_pat000{i}_1" for i in (3, 4, 5, 6))
REGIONS = ("WT", "TC", "ET")


def load_case(folder: Path) -> dict[str, Any]:
    """The case at 1 mm: z-scored FLAIR and T1Gd (over the brain mask), mask and expert regions."""
    mask_img = nib.load(folder / "brainmask.nii.gz")
    mask = np.asarray(mask_img.dataobj) > 0
    stack = np.stack([np.asarray(nib.load(folder / f"{m}_subtrMeanDivStd.nii.gz").dataobj, dtype=np.float32)
                      for m in ("Flair", "T1c")])
    images = zscore(stack, mask)
    labels = np.asarray(nib.load(folder / "OTMultiClass.nii.gz").dataobj).astype(np.uint8)
    return {"flair": images[0], "t1ce": images[1], "mask": mask, "labels": labels,
            "regions": labels_to_regions(labels, "2015").astype(bool), "affine": mask_img.affine,
            "spacing": tuple(float(z) for z in mask_img.header.get_zooms()[:3])}


def _blocks(a: np.ndarray) -> np.ndarray:
    """2x2x2 block means (odd trailing planes dropped)."""
    x, y, z = (s // 2 * 2 for s in a.shape)
    a = a[:x, :y, :z].astype(np.float32)
    return a.reshape(x // 2, 2, y // 2, 2, z // 2, 2).mean(axis=(1, 3, 5))


def coarsen(case: dict[str, Any], out: Path, cid: str, labels: np.ndarray | None = None) -> dict[str, Path]:
    """2 mm copies of a case's FLAIR, T1Gd, mask and labels (2x2x2 block means; labels:
    ``block_labels``, the region majorities), as NIfTI files a samplesheet can name.

    ``labels`` (1 mm, the case's grid) replaces the case's own map: a control writes other targets
    beside the same images.
    """
    affine = case["affine"].copy()
    affine[:3, :3] = affine[:3, :3] * 2.0
    affine[:3, 3] = affine[:3, 3] + case["affine"][:3, :3] @ np.full(3, 0.5)
    out.mkdir(parents=True, exist_ok=True)
    mask = _blocks(case["mask"]) >= 0.5
    files = {}
    # the original z-scored values (background constant, not 0): the brain mask decides what counts
    for name in ("flair", "t1ce"):
        files[name] = out / image_name(cid, name)
        nib.save(nib.Nifti1Image(_blocks(case[name]) * mask, affine), files[name])
    files["brainmask"] = out / brainmask_name(cid)
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), affine), files["brainmask"])
    files["seg"] = out / seg_name(cid)
    source = case["labels"] if labels is None else labels
    nib.save(nib.Nifti1Image(block_labels(source), affine), files["seg"])
    return files


def block_labels(labels: np.ndarray) -> np.ndarray:
    """2 mm labels (BraTS 2015) that sit where the 2 mm block-mean images do: each region (WT, TC,
    ET) where it fills at least half of a 2x2x2 block.

    One voxel of each block (its corner) would shift every target 0.5 mm along each axis against the
    images, which costs 0.01-0.04 Dice once brought back to 1 mm. The region majorities nest (ET
    inside TC inside WT), so they are written back as labels: 4 ET, 1 TC without ET (necrosis and
    non-enhancing alike, which no region tells apart), 2 the rest of WT; these values mean the same
    regions read as 2015 or as 2019.
    """
    return regions_to_labels(np.stack([_blocks(r) for r in labels_to_regions(labels, "2015")]) >= 0.5, "2019")


def swapped_labels(cases: list[dict[str, Any]]) -> list[np.ndarray]:
    """Control targets: case i gets the expert map of case i+1 (cyclically), cut to its own brain.

    The set of tumour shapes, sizes, positions and label proportions stays that of the real
    targets; only the pairing of images and labels is broken, so what a model trained on these
    still scores comes from priors (where and how large tumours are), not from seeing them.
    """
    if len(cases) < 2:
        raise ValueError("swapping labels needs at least two cases")
    if len({c["labels"].shape for c in cases}) > 1:
        raise ValueError("swapping labels needs cases on one grid")
    return [np.where(c["mask"], cases[(i + 1) % len(cases)]["labels"], 0).astype(np.uint8)
            for i, c in enumerate(cases)]


def samplesheet(path: Path, rows: dict[str, dict[str, Path]]) -> Path:
    """A samplesheet of space=brats rows with T1 and T2 empty (the expert cases lack them)."""
    lines = ["case_id,t1,t1ce,t2,flair,seg,brainmask,label_convention,space"]
    for cid, f in rows.items():
        lines.append(f"{cid},,{f['t1ce']},,{f['flair']},{f['seg']},{f['brainmask']},2015,brats")
    path.write_text("\n".join(lines) + "\n")
    return path


def to_fine_grid(prob: np.ndarray, case: dict[str, Any]) -> np.ndarray:
    """Region masks at 1 mm from 2 mm probabilities (3, X, Y, Z): trilinear, > 0.5, inside the brain.

    ``grid_mode`` places each 2 mm value at the centre of its 2x2x2 block, as ``coarsen`` made it
    (1 mm voxel i lies at 2 mm coordinate i/2 - 1/4); the default zoom aligns the first and last
    voxel centres instead, which drifts by up to half a millimetre across the volume.
    """
    from scipy import ndimage

    target = case["regions"].shape[1:]
    fine = np.zeros((3, *target), dtype=np.float32)
    for r in range(3):
        up = ndimage.zoom(prob[r], 2.0, order=1, grid_mode=True, mode="nearest")[: target[0], : target[1], : target[2]]
        fine[r][: up.shape[0], : up.shape[1], : up.shape[2]] = up
    return (fine > 0.5) & case["mask"][None]


def scores(pred: np.ndarray, case: dict[str, Any]) -> dict[str, float]:
    """Dice and HD95 (mm) of each region against the case's expert regions at 1 mm."""
    out = {}
    for i, r in enumerate(REGIONS):
        m = region_metrics(pred[i], case["regions"][i], case["spacing"])
        out[f"dice_{r}"], out[f"hd95_{r}"] = float(m["dice"]), float(m["hd95"])
    return out
