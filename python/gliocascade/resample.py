"""The BraTS output grid and one-shot resampling onto it.

Each modality is resampled exactly once, through the composition of its co-registration and the
atlas registration, so interpolation blur is not compounded. The grid is built from DESIGN's
numbers (never copied from the atlas, whose headers are quirky): ITK origin (0, -239, 0),
identity direction, 240x240x155 voxels of 1 mm, i.e. nibabel affine diag(-1, -1, 1) + (0, 239, 0).
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from .io import BRATS_SHAPE

BRATS_ORIGIN_LPS = (0.0, -239.0, 0.0)


def brats_grid(pixel: int = sitk.sitkUInt8) -> sitk.Image:
    """An all-zero image on the BraTS grid (the reference for every resampling)."""
    img = sitk.Image([int(s) for s in BRATS_SHAPE], pixel)
    img.SetOrigin(BRATS_ORIGIN_LPS)
    img.SetSpacing((1.0, 1.0, 1.0))
    img.SetDirection((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    return img


def to_array(image: sitk.Image) -> np.ndarray:
    """SimpleITK (z, y, x) array -> nibabel voxel order (i, j, k)."""
    return np.ascontiguousarray(sitk.GetArrayFromImage(image).transpose(2, 1, 0))


def from_array(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    """nibabel-ordered array -> SimpleITK image carrying ``reference``'s geometry."""
    img = sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(array).transpose(2, 1, 0)))
    img.CopyInformation(reference)
    return img


def resample(image: sitk.Image, reference: sitk.Image, transform: sitk.Transform,
             interpolator: int = sitk.sitkLinear, pixel: int = sitk.sitkFloat32) -> sitk.Image:
    """Resample ``image`` onto ``reference``'s grid; ``transform`` maps reference -> image points."""
    return sitk.Resample(image, reference, transform, interpolator, 0.0, pixel)


def to_brats(image: sitk.Image, transform: sitk.Transform, interpolator: int = sitk.sitkLinear) -> np.ndarray:
    """``image`` on the BraTS grid as a float32 array in nibabel voxel order."""
    return to_array(resample(image, brats_grid(), transform, interpolator, sitk.sitkFloat32)).astype(np.float32)


def field_of_view(image: sitk.Image, transform: sitk.Transform, reference: sitk.Image | None = None) -> np.ndarray:
    """Boolean mask of the reference voxels that map inside ``image``'s extent (its field of view)."""
    ones = sitk.Image(image.GetSize(), sitk.sitkUInt8) + 1
    ones.CopyInformation(image)
    ref = reference if reference is not None else brats_grid()
    return to_array(resample(ones, ref, transform, sitk.sitkNearestNeighbor, sitk.sitkUInt8)) > 0


def compose(*transforms: sitk.Transform) -> sitk.Transform:
    """``compose(a, b)`` maps p -> a(b(p)) (SimpleITK applies the last transform of the list first)."""
    return sitk.CompositeTransform(list(transforms))


def as_affine(transform: sitk.Transform) -> sitk.AffineTransform:
    """One affine transform equal to a linear ``transform`` (also a composite of linear ones).

    The written BraTS -> native transform stays a single matrix whatever route the registration
    took; it is read off the transform's action on the origin and the unit vectors (exact for
    linear maps).
    """
    origin = np.array(transform.TransformPoint((0.0, 0.0, 0.0)))
    columns = [np.array(transform.TransformPoint(tuple(e))) - origin for e in np.eye(3)]
    out = sitk.AffineTransform(3)
    out.SetMatrix(tuple(np.column_stack(columns).ravel()))
    out.SetTranslation(tuple(origin))
    return out
