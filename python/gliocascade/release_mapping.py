"""Move BraTS-space images between atlas releases.

The releases of the SRI24 BraTS-space atlas are different resamplings of one T1 template (about
2 degrees apart), so images made in one release's space (e.g. by BraTS Toolkit, in the 0.1.4
release) are not voxel-aligned with this pipeline's default output. Registering one release's T1
onto the other's is a registration of an image to itself: it is exact up to interpolation, and
the check below refuses anything less.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .atlas import locate_atlas
from .errors import InputError
from .preprocess import read_input
from .registration import RegistrationParams, normalized_cross_correlation, register
from .resample import brats_grid, to_brats
from .sitk_arrays import from_array

# Two resamplings of one template agree to this correlation once aligned (measured 0.999).
MIN_ALIGNED_NCC = 0.995
# One percent of the 9 M atlas voxels pins a rigid self-registration (same result as 5 %).
SAMPLING_PERCENTAGE = 0.01


def release_transform(target_atlas: Path, source_atlas: Path) -> sitk.Transform:
    """The rigid map from the BraTS points of the release in folder ``target_atlas`` to those of
    the release in ``source_atlas`` (resamples images made in the source release onto the
    target release's grid)."""
    return t1_transform(locate_atlas(Path(target_atlas))["t1"], locate_atlas(Path(source_atlas))["t1"])


def t1_transform(target_t1: Path, source_t1: Path) -> sitk.Transform:
    """``release_transform`` from the two atlas T1 files; refuses two different templates."""
    target = read_input(target_t1, "atlas T1")
    source_path = Path(source_t1)
    source = read_input(source_path, "atlas T1")
    params = dataclasses.replace(RegistrationParams(), sampling_percentage=SAMPLING_PERCENTAGE)
    transform = register(target, source, params=params).transform
    fixed, moved = to_brats(target, sitk.Transform(3, sitk.sitkIdentity)), to_brats(source, transform)
    ncc = normalized_cross_correlation(fixed, moved, (fixed > 0) & (moved > 0))
    if ncc < MIN_ALIGNED_NCC:
        raise InputError(source_path, f"is not a release of the same atlas (NCC {ncc:.3f} after alignment)")
    return transform


def to_release(array: np.ndarray, transform: sitk.Transform, labels: bool = False) -> np.ndarray:
    """A BraTS-grid array (nibabel voxel order) of the source release resampled onto the target's
    grid through ``release_transform``; ``labels`` uses nearest neighbour."""
    image = from_array(np.asarray(array, dtype=np.float32), brats_grid(sitk.sitkFloat32))
    out = to_brats(image, transform, sitk.sitkNearestNeighbor if labels else sitk.sitkLinear)
    return out.astype(np.asarray(array).dtype) if labels else out
