"""The one bridge between numpy arrays (nibabel voxel order) and SimpleITK images.

nibabel indexes voxels (i, j, k) with a RAS affine; SimpleITK's arrays are (k, j, i) and its
geometry is LPS. Every conversion goes through here so that the axis order and the RAS <-> LPS
flip are written once. ``itk_array``/``from_itk_array`` keep ITK's (k, j, i) order for code that
only measures voxels or writes them straight back into an image of the same grid.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from .errors import InputError

_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


def to_array(image: sitk.Image) -> np.ndarray:
    """SimpleITK image -> array in nibabel voxel order (i, j, k), a contiguous copy."""
    return np.ascontiguousarray(sitk.GetArrayFromImage(image).transpose(2, 1, 0))


def from_array(array: np.ndarray, reference: sitk.Image | None = None) -> sitk.Image:
    """nibabel-ordered array -> SimpleITK image, carrying ``reference``'s geometry when given."""
    img = sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(array).transpose(2, 1, 0)))
    if reference is not None:
        img.CopyInformation(reference)
    return img


def itk_array(image: sitk.Image, copy: bool = True) -> np.ndarray:
    """The image's voxels in ITK (k, j, i) order: a copy, or a read-only view with ``copy=False``."""
    return sitk.GetArrayFromImage(image) if copy else sitk.GetArrayViewFromImage(image)


def from_itk_array(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    """An ITK-ordered (k, j, i) array as an image on ``reference``'s grid."""
    img = sitk.GetImageFromArray(array)
    img.CopyInformation(reference)
    return img


def from_nifti(affine: np.ndarray, array: np.ndarray) -> sitk.Image:
    """A SimpleITK image of ``array`` (nibabel order) on the grid of a NIfTI ``affine`` (RAS -> LPS)."""
    out = from_array(array)
    affine = np.asarray(affine, dtype=np.float64)
    linear = _RAS_TO_LPS @ affine[:3, :3]
    spacing = np.linalg.norm(linear, axis=0)
    if np.any(spacing <= 0):
        raise InputError(None, "image affine has a zero-length axis")
    out.SetSpacing([float(s) for s in spacing])
    out.SetOrigin([float(v) for v in _RAS_TO_LPS @ affine[:3, 3]])
    out.SetDirection([float(v) for v in (linear / spacing).ravel()])
    return out
