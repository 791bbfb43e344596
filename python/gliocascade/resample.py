"""The BraTS output grid and one-shot resampling onto it.

Each modality is resampled exactly once, through the composition of its co-registration and the
atlas registration, so interpolation blur is not compounded. The grid is built from DESIGN's
numbers (``geometry``; never copied from the atlas, whose headers are quirky).
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from .geometry import BRATS_DIRECTION_LPS, BRATS_ORIGIN_LPS, BRATS_SHAPE, BRATS_SPACING_MM, Box, full_box
from .sitk_arrays import to_array


def brats_grid(pixel: int = sitk.sitkUInt8) -> sitk.Image:
    """An all-zero image on the BraTS grid (the reference for every resampling)."""
    img = sitk.Image([int(s) for s in BRATS_SHAPE], pixel)
    img.SetOrigin(BRATS_ORIGIN_LPS)
    img.SetSpacing(BRATS_SPACING_MM)
    img.SetDirection(BRATS_DIRECTION_LPS)
    return img


def whole_grid() -> Box:
    """The box of the whole BraTS grid."""
    return full_box(BRATS_SHAPE)


def sub_grid(grid: sitk.Image, box: Box) -> sitk.Image:
    """The part of ``grid`` inside ``box`` (same spacing and direction, shifted origin)."""
    start = [int(s.start) for s in box]
    sub = sitk.Image([int(s.stop - s.start) for s in box], grid.GetPixelID())
    sub.SetSpacing(grid.GetSpacing())
    sub.SetDirection(grid.GetDirection())
    sub.SetOrigin(grid.TransformIndexToPhysicalPoint(start))
    return sub


def resample(image: sitk.Image, reference: sitk.Image, transform: sitk.Transform,
             interpolator: int = sitk.sitkLinear, pixel: int = sitk.sitkFloat32) -> sitk.Image:
    """Resample ``image`` onto ``reference``'s grid; ``transform`` maps reference -> image points."""
    return sitk.Resample(image, reference, transform, interpolator, 0.0, pixel)


def to_brats(image: sitk.Image, transform: sitk.Transform, interpolator: int = sitk.sitkLinear,
             box: Box | None = None) -> np.ndarray:
    """``image`` on the BraTS grid as a float32 array in nibabel voxel order (zero outside ``box``)."""
    box = box or whole_grid()
    out = np.zeros(BRATS_SHAPE, dtype=np.float32)
    out[box] = to_array(resample(image, sub_grid(brats_grid(), box), transform, interpolator, sitk.sitkFloat32))
    return out


def field_of_view(image: sitk.Image, transform: sitk.Transform, box: Box | None = None) -> np.ndarray:
    """Boolean mask of the BraTS voxels (inside ``box``) that map inside ``image``'s extent."""
    box = box or whole_grid()
    ones = sitk.Image(image.GetSize(), sitk.sitkUInt8) + 1
    ones.CopyInformation(image)
    out = np.zeros(BRATS_SHAPE, dtype=bool)
    out[box] = to_array(resample(ones, sub_grid(brats_grid(), box), transform, sitk.sitkNearestNeighbor,
                                 sitk.sitkUInt8)) > 0
    return out


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
