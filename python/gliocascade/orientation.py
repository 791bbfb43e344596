"""Array orientation: bring a case's voxels to the axis order a model was trained in, and back.

A convolutional network is not invariant to permuting or flipping its input axes, so the same
brain stored in another axis order (same voxels, same world geometry) would be segmented
differently. Cases are therefore reoriented to the model's orientation before normalisation and
inference, and results are brought back to the stored order before they are written with the
stored header.

Orientations are nibabel axis codes: for each array axis, the direction it increases toward
("L", "P", "S" for the BraTS grid: x toward left, y toward posterior, z toward superior). For an
oblique grid nibabel assigns each array axis to the nearest world axis, so the codes (and hence
the reorientation) are those of the closest axis-aligned grid; the voxels are never resampled.
Torch-free: numpy and nibabel only.
"""
from __future__ import annotations

from typing import Sequence

import nibabel as nib
import numpy as np

BRATS_ORIENTATION = "LPS"  # the storage order of the BraTS arrays, and of every model trained on them
_PAIRS = ({"L", "R"}, {"P", "A"}, {"S", "I"})


def parse_codes(codes: str | Sequence[str]) -> tuple[str, str, str]:
    """Three upper-case axis codes, one from each of L/R, P/A, S/I; anything else is a ValueError saying why."""
    if not isinstance(codes, (str, tuple, list)):
        raise ValueError(f"orientation must be three axis codes such as 'LPS', not {codes!r}")
    letters = tuple(str(c) for c in codes)
    if len(letters) != 3 or not all(len(c) == 1 for c in letters):
        raise ValueError(f"orientation must be three axis codes such as 'LPS', not {codes!r}")
    if sorted(sum(c in pair for c in letters) for pair in _PAIRS) != [1, 1, 1]:
        raise ValueError(f"orientation {''.join(letters)!r} needs one code from each of L/R, P/A and S/I")
    return letters  # type: ignore[return-value]


def codes_text(codes: str | Sequence[str]) -> str:
    """The codes as one checked string, e.g. ``"LPS"`` (the form model.json and provenance record)."""
    return "".join(parse_codes(codes))


def axis_codes(affine: np.ndarray) -> tuple[str, str, str]:
    """The nibabel axis codes of a voxel-to-world affine (nearest axes for an oblique grid).

    A degenerate affine (an axis with no direction) has no orientation: ValueError.
    """
    codes = nib.aff2axcodes(np.asarray(affine, dtype=np.float64))
    if any(c is None for c in codes):
        raise ValueError("the affine has a degenerate axis, so the array orientation is undefined")
    return codes  # type: ignore[return-value]


def _ornts(affine: np.ndarray, target_codes: str | Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """nibabel ornt arrays of the stored grid and of the target (degenerate affines refused first)."""
    stored = nib.orientations.axcodes2ornt(axis_codes(affine))
    return stored, nib.orientations.axcodes2ornt(parse_codes(target_codes))


def _transform(affine: np.ndarray, target_codes: str | Sequence[str]) -> np.ndarray:
    """nibabel ornt mapping stored array axes to the target orientation's axes."""
    stored, target = _ornts(affine, target_codes)
    return nib.orientations.ornt_transform(stored, target)


def _back(affine: np.ndarray, target_codes: str | Sequence[str]) -> np.ndarray:
    """nibabel ornt mapping target-orientation axes back to the stored array axes."""
    stored, target = _ornts(affine, target_codes)
    return nib.orientations.ornt_transform(target, stored)


def _is_identity(ornt: np.ndarray) -> bool:
    return bool(np.array_equal(ornt, [[0, 1], [1, 1], [2, 1]]))


def _apply(array: np.ndarray, ornt: np.ndarray) -> np.ndarray:
    """Permute/flip the last three axes of ``array`` by ``ornt``; leading (channel) axes stay."""
    arr = np.asarray(array)
    if arr.ndim < 3:
        raise ValueError(f"expected an (X, Y, Z) or (C, ..., X, Y, Z) array, got shape {arr.shape}")
    if _is_identity(ornt):
        return arr
    lead = arr.ndim - 3
    spatial_first = np.moveaxis(arr, list(range(lead)), list(range(3, arr.ndim)))
    out = nib.orientations.apply_orientation(spatial_first, ornt)
    return np.ascontiguousarray(np.moveaxis(out, list(range(3, arr.ndim)), list(range(lead))))


def to_orientation(array: np.ndarray, affine: np.ndarray, target_codes: str | Sequence[str]) -> np.ndarray:
    """``array`` (stored on the grid of ``affine``) with its voxels in ``target_codes`` order.

    An exact permutation and flip of voxels (the last three axes; leading channel axes are kept).
    An array already in the target orientation is returned as it is; otherwise a contiguous copy.
    """
    return _apply(array, _transform(affine, target_codes))


def from_orientation(array: np.ndarray, affine: np.ndarray, target_codes: str | Sequence[str]) -> np.ndarray:
    """The inverse of :func:`to_orientation`: a result computed in ``target_codes`` order, back in
    the stored order of the grid of ``affine`` (so it can be written with that grid's header)."""
    return _apply(array, _back(affine, target_codes))


def box_from_orientation(box: Sequence[Sequence[int]], shape: Sequence[int], affine: np.ndarray,
                         target_codes: str | Sequence[str]) -> list[list[int]]:
    """A box of ``[start, stop)`` index intervals on a ``shape`` grid in ``target_codes`` order, as
    intervals of the stored axes (so records name voxels of the files as stored)."""
    out: list[list[int]] = [[], [], []]
    for i, (axis, flip) in enumerate(_back(affine, target_codes)):
        start, stop, n = int(box[i][0]), int(box[i][1]), int(shape[i])
        out[int(axis)] = [n - stop, n - start] if flip < 0 else [start, stop]
    return out


def sizes_from_orientation(sizes: Sequence[int], affine: np.ndarray, target_codes: str | Sequence[str]) -> list[int]:
    """Per-axis sizes in ``target_codes`` order, listed in the stored axis order."""
    out = [0, 0, 0]
    for i, (axis, _) in enumerate(_back(affine, target_codes)):
        out[int(axis)] = int(sizes[i])
    return out
