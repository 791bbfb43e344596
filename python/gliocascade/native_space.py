"""BraTS-space label maps back onto each patient's native T1Gd grid.

Clinicians read the segmentation on the scan they acquired, not on the atlas grid, so the final
labels are also written on the native T1Gd grid using the transform files that preprocess leaves
in ``transforms/``: ``brats_to_native.tfm`` maps a BraTS-space physical point (ITK LPS) to the
native T1Gd point, and ``native_reference.nii.gz`` carries the native grid. ITK's resampler wants
the transform from OUTPUT points (native) to INPUT points (BraTS), i.e. the inverse of the file's.
"""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from .errors import InputError
from .io import load_nifti
from .layout import NATIVE_REFERENCE_NAME, TRANSFORM_NAME
from .sitk_arrays import from_nifti, to_array


def transform_files(transforms_dir: str | Path) -> tuple[Path, Path]:
    """(transform file, native reference) in ``transforms_dir``; InputError naming what is missing."""
    d = Path(transforms_dir)
    if not d.is_dir():
        raise InputError(d, "transforms folder not found")
    tfm, ref = d / TRANSFORM_NAME, d / NATIVE_REFERENCE_NAME
    for p in (tfm, ref):
        if not p.is_file():
            raise InputError(p, "file not found (expected in the transforms folder written by preprocess)")
    return tfm, ref


def read_native_transform(path: str | Path) -> sitk.Transform:
    """The BraTS -> native transform of ``path`` (InputError when ITK cannot read it)."""
    try:
        return sitk.ReadTransform(str(path))
    except Exception as exc:  # SimpleITK raises RuntimeError with a long multi-line message
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(path, f"not a readable ITK transform file ({first})") from None


def _inverse(transform: sitk.Transform, path: Path) -> sitk.Transform:
    try:
        return transform.GetInverse()
    except Exception:
        raise InputError(path, "transform is not invertible (labels cannot be mapped to native space)") from None


def labels_to_native(labels: np.ndarray, labels_img: nib.Nifti1Image,
                     transforms_dir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Resample a BraTS-space label map onto the native T1Gd grid (nearest neighbour).

    Returns (uint8 labels on the native grid, native affine). Geometry is taken from the
    NIfTI affines (converted to ITK LPS), so both images are compared in world space.
    """
    tfm_path, ref_path = transform_files(transforms_dir)
    forward = read_native_transform(tfm_path)
    native_to_brats = _inverse(forward, tfm_path)
    ref_img = load_nifti(ref_path)
    moving = from_nifti(labels_img.affine, np.asarray(labels, dtype=np.uint8))
    reference = from_nifti(ref_img.affine, np.zeros(ref_img.shape, dtype=np.uint8))
    out = sitk.Resample(moving, reference, native_to_brats, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    arr = to_array(out).astype(np.uint8)
    return arr, ref_img.affine.copy()


def native_output_path(out: str | Path) -> Path:
    """``X_seg.nii.gz`` -> ``X_seg_native.nii.gz`` (beside the BraTS-space output)."""
    out = Path(out)
    name = out.name
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            return out.with_name(f"{name[: -len(ext)]}_native{ext}")
    return out.with_name(f"{name}_native.nii.gz")


