"""The BraTS grid and the bounding box, stated once (numpy only: no torch, no SimpleITK).

The grid is DESIGN's: 240 x 240 x 155 voxels of 1 mm with LPS voxel axes, i.e. the nibabel affine
diag(-1, -1, 1) with origin (0, 239, 0) and, in ITK's LPS world, origin (0, -239, 0) with identity
direction. Preprocessing resamples onto it, phantoms are written on it, and the metrics' distance
bound is its diagonal.
"""
from __future__ import annotations

import math

import numpy as np

BRATS_SHAPE = (240, 240, 155)
BRATS_SPACING_MM = (1.0, 1.0, 1.0)
# The header of the BraTS cases: LPS voxel axes, 1 mm, origin at voxel (0, 239, 0) in nibabel RAS.
BRATS_AFFINE = np.array([[-1.0, 0, 0, 0], [0, -1.0, 0, 239.0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]])
# The same grid in ITK's LPS world coordinates (identity direction).
BRATS_ORIGIN_LPS = (0.0, -239.0, 0.0)
BRATS_DIRECTION_LPS = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
BRATS_DIAGONAL_MM = math.sqrt(sum((n * s) ** 2 for n, s in zip(BRATS_SHAPE, BRATS_SPACING_MM)))

Box = tuple[slice, ...]


def brats_affine() -> np.ndarray:
    """A fresh copy of the BraTS-space affine (callers may mutate it)."""
    return BRATS_AFFINE.copy()


def full_box(shape: tuple[int, ...]) -> Box:
    """The box of a whole array of ``shape``."""
    return tuple(slice(0, int(s)) for s in shape)


def bounding_box(mask: np.ndarray, margin: int = 0, whole_if_empty: bool = False) -> Box | None:
    """Slices of the box around ``mask``'s non-zero voxels grown by ``margin`` voxels on each side
    (clipped to the array).

    An empty mask has no box: None, or the whole array with ``whole_if_empty`` (for callers that
    restrict work to the box and must still cover everything when there is nothing to restrict to).
    """
    mask = np.asarray(mask)
    slices = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hit = np.flatnonzero(np.any(mask, axis=other))
        if hit.size == 0:
            return full_box(mask.shape) if whole_if_empty else None
        slices.append(slice(max(int(hit[0]) - margin, 0), min(int(hit[-1]) + margin + 1, mask.shape[axis])))
    return tuple(slices)
