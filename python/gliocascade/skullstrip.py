"""Skull-stripping in BraTS space.

The default needs no downloaded weights: the atlas brain mask (skull-stripped SRI24 T1 > 0),
which registration has already brought onto the subject, is refined on the subject itself:
cut to the voxels every modality actually covers (thick-slice exams often miss the vertex),
and stripped of the dark rim (bone, air) that all four modalities agree is not tissue.
HD-BET and SynthStrip are plug-ins, run only when their programs and weights are already
installed; otherwise a clear error says what is missing.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from scipy import ndimage

from .errors import InputError
from .geometry import bounding_box, brats_affine
from .io import load_nifti, write_image

METHODS = ("atlas", "hd-bet", "synthstrip")
# A brain (plus the tumour) in BraTS space has a volume in this range (ml); outside it the
# registration or the mask has failed.
PLAUSIBLE_BRAIN_ML = (700.0, 2200.0)


def _ball(radius: int) -> np.ndarray:
    r = np.arange(-radius, radius + 1)
    x, y, z = np.meshgrid(r, r, r, indexing="ij")
    return (x * x + y * y + z * z) <= radius * radius


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 6-connected component (empty input stays empty)."""
    lab, n = ndimage.label(mask)
    if n <= 1:
        return mask.astype(bool)
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == int(np.argmax(sizes))


def refine_atlas_mask(atlas_mask: np.ndarray, images: dict[str, np.ndarray], fov: np.ndarray,
                      band_mm: int = 4, dark_fraction: float = 0.15) -> np.ndarray:
    """Refine the registered atlas brain mask on the subject (see module docstring).

    A voxel of the mask's outer ``band_mm`` rim is dropped when every modality is darker than
    ``dark_fraction`` of its median inside the mask (bone and air are dark in all of them,
    cerebrospinal fluid is bright in T2). The result is cut to ``fov``, hole-filled and reduced
    to its largest component. The work is done inside the mask's bounding box (with room for the
    morphology), which gives the same voxels as the whole grid at a third of the cost.
    """
    mask = atlas_mask.astype(bool) & fov
    if not mask.any():
        return mask
    box = bounding_box(mask, band_mm + 2)
    refined = np.zeros_like(mask)
    refined[box] = _refine(mask[box], {m: a[box] for m, a in images.items()}, fov[box], band_mm, dark_fraction)
    return refined


def _refine(mask: np.ndarray, images: dict[str, np.ndarray], fov: np.ndarray, band_mm: int,
            dark_fraction: float) -> np.ndarray:
    inner = ndimage.binary_erosion(mask, structure=_ball(band_mm))
    rim = mask & ~inner
    dark = np.ones_like(mask)
    for arr in images.values():
        ref = float(np.median(arr[mask]))
        if ref > 0:
            dark &= arr < dark_fraction * ref
    mask = mask & ~(rim & dark)
    mask = ndimage.binary_opening(mask, structure=_ball(1))
    return filled_largest_component(mask) & fov


def filled_largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest component with its holes filled slice by slice (axial): ventricles and tumour
    cavities belong to the brain, and 3D filling would miss holes open at a cut-off slab end."""
    mask = largest_component(mask)
    filled = np.zeros_like(mask)
    for k in range(mask.shape[2]):
        filled[:, :, k] = ndimage.binary_fill_holes(mask[:, :, k])
    return filled


def check_plausible(mask: np.ndarray, where: str | Path) -> None:
    """Refuse a brain mask whose volume is not that of a brain (1 mm voxels)."""
    ml = float(mask.sum()) / 1000.0
    lo, hi = PLAUSIBLE_BRAIN_ML
    if not lo <= ml <= hi:
        raise InputError(where, f"brain mask volume {ml:.0f} ml is implausible (expected {lo:.0f}-{hi:.0f} ml): "
                                "registration to the atlas probably failed")


def _run_plugin(cmd: list[str], out_mask: Path, name: str) -> np.ndarray:
    try:
        subprocess.run(cmd, check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        raise InputError(None, f"{name} failed: {detail.strip().splitlines()[-1] if detail.strip() else exc}") from None
    return np.asanyarray(load_nifti(out_mask).dataobj) > 0


def plugin_mask(method: str, t1ce_brats: np.ndarray) -> np.ndarray:
    """Brain mask from HD-BET or SynthStrip run on the BraTS-space T1Gd (weights must be present)."""
    if method == "hd-bet":
        exe = shutil.which("hd-bet")
        weights = Path(os.environ.get("HD_BET_PARAMS", Path.home() / "hd-bet_params"))
        if exe is None or not weights.is_dir() or not any(weights.iterdir()):
            raise InputError(weights, "HD-BET is not installed with its weights (need the `hd-bet` program and "
                                      "its parameter folder; set HD_BET_PARAMS), or use --skull-strip atlas")
    elif method == "synthstrip":
        exe = shutil.which("mri_synthstrip")
        weights = Path(os.environ.get("SYNTHSTRIP_MODEL", Path(os.environ.get("FREESURFER_HOME", "/nonexistent"))
                                      / "models" / "synthstrip.1.pt"))
        if exe is None or not weights.is_file():
            raise InputError(weights, "SynthStrip is not installed with its model (need `mri_synthstrip` and "
                                      "SYNTHSTRIP_MODEL), or use --skull-strip atlas")
    else:
        raise InputError(None, f"unknown skull-stripping method {method!r} (choose from {', '.join(METHODS)})")
    with tempfile.TemporaryDirectory(prefix="gliocascade_strip_") as tmp:
        src = write_image(Path(tmp) / "t1ce.nii.gz", t1ce_brats, brats_affine())
        out_mask = Path(tmp) / "mask.nii.gz"
        if method == "hd-bet":
            cmd = [exe, "-i", str(src), "-o", str(Path(tmp) / "brain.nii.gz"), "-device", "cpu", "-mode", "fast",
                   "-tta", "0"]
            mask = _run_plugin(cmd, Path(tmp) / "brain_mask.nii.gz", "HD-BET")
        else:
            cmd = [exe, "-i", str(src), "-m", str(out_mask), "--model", str(weights)]
            mask = _run_plugin(cmd, out_mask, "SynthStrip")
    return mask
