"""Labels mapped back to a native grid through a known rigid transform land where they should."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from gliocascade.io import write_labels
from gliocascade.metrics import dice
from gliocascade.native_space import native_output_path

LPS = np.diag([-1.0, -1.0, 1.0])
BRATS_SHAPE = (72, 72, 56)
BRATS_AFF = np.array([[-1.0, 0, 0, 0], [0, -1.0, 0, BRATS_SHAPE[1] - 1.0], [0, 0, 1.0, 0], [0, 0, 0, 1]])


def _native_affine() -> tuple[np.ndarray, tuple[int, int, int]]:
    """An oblique, anisotropic native grid (LAS-like, 1.1 x 0.9 x 2.5 mm, rotated 12 degrees)."""
    a = np.deg2rad(12.0)
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1.0]])
    lin = rot @ np.diag([-1.1, 0.9, 2.5])
    aff = np.eye(4)
    aff[:3, :3] = lin
    shape = (64, 80, 26)
    # Place the grid so that it is centred near the tumour (native LPS -> RAS for the offset).
    centre_ras = LPS @ (_centre() + np.array([-4.0, 5.0, -3.0]))
    aff[:3, 3] = centre_ras - lin @ ((np.array(shape) - 1) / 2.0)
    return aff, shape


def _centre() -> np.ndarray:
    """Tumour centre in native LPS: the native image of the BraTS grid centre, moved a little off it."""
    t = _transform()
    return _apply(t, np.array(t.GetCenter())[None])[0] + np.array([3.0, -2.0, 1.0])


def _lps_points(affine: np.ndarray, shape) -> np.ndarray:
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1).reshape(-1, 3)
    ras = ijk @ affine[:3, :3].T + affine[:3, 3]
    return ras @ LPS.T


def _labels_at(points_native_lps: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """The ground-truth anatomy, defined in native physical space: oedema, necrotic core, ET shell."""
    d = points_native_lps - centre
    r = np.sqrt((d[:, 0] / 22) ** 2 + (d[:, 1] / 18) ** 2 + (d[:, 2] / 16) ** 2)
    lab = np.zeros(len(points_native_lps), dtype=np.uint8)
    lab[r < 1.0] = 2
    lab[r < 0.75] = 4
    lab[r < 0.4] = 1
    return lab


def _transform() -> sitk.Euler3DTransform:
    """BraTS (LPS) -> native (LPS), a rigid motion about the BraTS grid centre."""
    t = sitk.Euler3DTransform()
    centre_ras = BRATS_AFF[:3, :3] @ ((np.array(BRATS_SHAPE) - 1) / 2.0) + BRATS_AFF[:3, 3]
    t.SetCenter([float(v) for v in LPS @ centre_ras])
    t.SetRotation(0.12, -0.2, 0.25)
    t.SetTranslation((4.0, -6.0, 3.0))
    return t


def _apply(t: sitk.Euler3DTransform, pts: np.ndarray) -> np.ndarray:
    m = np.array(t.GetMatrix()).reshape(3, 3)
    c, tr = np.array(t.GetCenter()), np.array(t.GetTranslation())
    return (pts - c) @ m.T + c + tr


def _setup(tmp_path: Path, transform_to_write: sitk.Transform) -> tuple[Path, Path, np.ndarray]:
    t = _transform()
    native_aff, native_shape = _native_affine()
    centre = _centre()
    brats_labels = _labels_at(_apply(t, _lps_points(BRATS_AFF, BRATS_SHAPE)), centre).reshape(BRATS_SHAPE)
    truth = _labels_at(_lps_points(native_aff, native_shape), centre).reshape(native_shape)
    tdir = tmp_path / "transforms"
    tdir.mkdir()
    sitk.WriteTransform(transform_to_write, str(tdir / "brats_to_native.tfm"))
    write_labels(tdir / "native_reference.nii.gz", np.zeros(native_shape, np.uint8), native_aff)
    pred = write_labels(tmp_path / "c1_pred.nii.gz", brats_labels, BRATS_AFF)
    assert (truth == 4).sum() > 500 and (brats_labels == 1).sum() > 500  # the object lies inside both grids
    return pred, tdir, truth


def _region_dice(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    return {"WT": dice(a > 0, b > 0), "TC": dice((a == 1) | (a == 4), (b == 1) | (b == 4)), "ET": dice(a == 4, b == 4)}


def test_native_labels_land_on_truth(cli, tmp_path):
    pred, tdir, truth = _setup(tmp_path, _transform())
    out = tmp_path / "c1_seg.nii.gz"
    res = cli("postprocess", "--pred", pred, "--out", out, "--et-threshold", 0, "--native-transforms", tdir)
    assert res.exit_code == 0, res.output
    native_path = tmp_path / "c1_seg_native.nii.gz"
    assert native_output_path(out) == native_path
    img = nib.load(native_path)
    aff, shape = _native_affine()
    assert img.shape == shape and np.allclose(img.affine, aff, atol=1e-5)
    got = np.asarray(img.dataobj)
    scores = _region_dice(got, truth)
    assert min(scores.values()) >= 0.95, scores


def test_wrong_direction_is_caught(tmp_path):
    """Writing the inverse (native -> BraTS) into the file misplaces the labels: the check can fail."""
    from gliocascade.native_space import labels_to_native

    pred, tdir, truth = _setup(tmp_path, _transform().GetInverse())
    img = nib.load(pred)
    got, _ = labels_to_native(np.asarray(img.dataobj), img, tdir)
    assert _region_dice(got, truth)["ET"] < 0.8


def test_unreadable_transform(cli, tmp_path):
    pred, tdir, _ = _setup(tmp_path, _transform())
    (tdir / "brats_to_native.tfm").write_text("not a transform\n")
    out = tmp_path / "c1_seg.nii.gz"
    res = cli("postprocess", "--pred", pred, "--out", out, "--et-threshold", 0, "--native-transforms", tdir)
    assert res.exit_code == 2 and "brats_to_native.tfm" in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert not out.exists() and not (tmp_path / "c1_seg_native.nii.gz").exists()
