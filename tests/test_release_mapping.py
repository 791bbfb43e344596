"""Moving BraTS-space images between atlas releases: a known rotation is recovered, and two
different templates are refused rather than 'aligned'."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from gliocascade.errors import InputError
from gliocascade.io import brats_affine, write_image
from gliocascade.phantom import make_phantom
from gliocascade.release_mapping import t1_transform, to_release
from gliocascade.resample import brats_grid
from gliocascade.sitk_arrays import from_array, to_array

ANGLES_RAD = (0.03, -0.02, 0.015)  # about the rotation between the two real releases


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """A head phantom (with skull) on the BraTS grid, standing in for an atlas T1 (smoothed: a
    template is an average of many heads and carries no noise)."""
    t1 = _template_like(make_phantom(7, with_skull=True).images["t1"])
    path = write_image(tmp_path_factory.mktemp("release_a") / "t1.nii.gz", t1, brats_affine())
    return path, t1


def _template_like(t1: np.ndarray) -> np.ndarray:
    """Smoothed, with a few off-centre blocks: a real template's structure pins every rotation,
    a near-ellipsoidal phantom's would not."""
    t1 = t1.copy()
    for x, y, z in [(80, 90, 60), (150, 70, 90), (110, 160, 50), (140, 140, 110), (70, 150, 95)]:
        t1[x:x + 12, y:y + 8, z:z + 6] = 1.5 * t1.max()
    return to_array(sitk.SmoothingRecursiveGaussian(from_array(t1, brats_grid(sitk.sitkFloat32)), 1.5))


def _rotated(t1: np.ndarray, out: Path) -> tuple[Path, sitk.Euler3DTransform]:
    """The template resampled through a rotation about the grid centre (another 'release')."""
    grid = brats_grid(sitk.sitkFloat32)
    rotation = sitk.Euler3DTransform()
    rotation.SetCenter(grid.TransformContinuousIndexToPhysicalPoint([s / 2 for s in grid.GetSize()]))
    rotation.SetRotation(*ANGLES_RAD)
    moved = sitk.Resample(from_array(t1, grid), grid, rotation.GetInverse(), sitk.sitkLinear, 0.0)
    return write_image(out / "t1.nii.gz", to_array(moved), brats_affine()), rotation


@pytest.fixture(scope="module")
def rotated_release(template, tmp_path_factory) -> tuple[Path, sitk.Euler3DTransform, sitk.Transform]:
    """The rotated 'release', the true rotation, and the map ``t1_transform`` finds."""
    path, t1 = template
    source, rotation = _rotated(t1, tmp_path_factory.mktemp("release_b"))
    return source, rotation, t1_transform(path, source)


def test_a_rotated_release_is_mapped_back(template, rotated_release):
    _, t1 = template
    source, rotation, transform = rotated_release
    head = np.argwhere(t1 > 0.05 * t1.max())[::499]
    points = np.array([brats_grid().TransformIndexToPhysicalPoint([int(v) for v in p]) for p in head])
    expected = np.array([rotation.TransformPoint(tuple(p)) for p in points])
    found = np.array([transform.TransformPoint(tuple(p)) for p in points])
    assert np.linalg.norm(found - expected, axis=1).mean() < 0.5
    assert np.linalg.norm(expected - points, axis=1).mean() > 1.0, "the test rotation is not negligible"
    back = to_release(to_array(sitk.ReadImage(str(source), sitk.sitkFloat32)), transform)
    inside = t1 > 0
    assert np.corrcoef(back[inside], t1[inside])[0, 1] > 0.98


def test_labels_keep_their_values(template, rotated_release):
    _, t1 = template
    labels = (t1 > np.percentile(t1[t1 > 0], 50)).astype(np.uint8) * 4
    moved = to_release(labels, rotated_release[2], labels=True)
    assert moved.dtype == np.uint8 and set(np.unique(moved)) <= {0, 4}


def test_another_template_is_refused(template, tmp_path):
    path, _ = template
    other = write_image(tmp_path / "t1.nii.gz", _template_like(make_phantom(8, with_skull=True).images["t1"]),
                        brats_affine())
    with pytest.raises(InputError, match="not a release of the same atlas"):
        t1_transform(path, other)
