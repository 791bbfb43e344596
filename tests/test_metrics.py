"""Metrics agree with MedPy (the reference of the official brats-evaluation) and follow BraTS conventions."""
from __future__ import annotations

import math

import medpy.metric.binary as medpy_binary  # a test dependency: the reference implementation
import numpy as np
import pytest
from scipy import ndimage

from gliocascade.io import brats_affine, write_image, write_labels
from gliocascade.labels import labels_to_regions
from gliocascade.metrics import (BRATS_DIAGONAL_MM, bounding_box, dice, evaluate_arrays, evaluate_case, hd95,
                                 metric_columns, region_metrics, spacing_from_affine)
from gliocascade.phantom import make_phantom

SHAPE = (64, 64, 48)
CROSS = ndimage.generate_binary_structure(3, 1)


@pytest.fixture(scope="module")
def phantom_regions() -> np.ndarray:
    """(3, 64, 64, 48) WT/TC/ET masks of one phantom."""
    return labels_to_regions(make_phantom(5, SHAPE).labels)


def _perturbations(mask: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "eroded": ndimage.binary_erosion(mask, CROSS),
        "dilated": ndimage.binary_dilation(mask, CROSS, iterations=2),
        "shifted": np.roll(mask, (3, -2, 1), axis=(0, 1, 2)),
        "eroded_shifted": np.roll(ndimage.binary_erosion(mask, CROSS), 2, axis=2),
    }


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (1.0, 1.0, 0.6), (0.8, 1.3, 2.5)])
@pytest.mark.parametrize("region", [0, 1, 2])
def test_dice_and_hd95_match_medpy_on_phantoms(phantom_regions, spacing, region):
    ref = phantom_regions[region]
    assert ref.any()
    for name, pred in _perturbations(ref).items():
        assert pred.any(), name
        ours = region_metrics(pred, ref, spacing)
        assert ours["dice"] == pytest.approx(medpy_binary.dc(pred, ref), abs=1e-6), name
        assert ours["hd95"] == pytest.approx(medpy_binary.hd95(pred, ref, voxelspacing=spacing), abs=1e-6), name
        assert hd95(pred, ref, spacing) == pytest.approx(ours["hd95"], abs=1e-12)
        assert dice(pred, ref) == pytest.approx(ours["dice"], abs=1e-12)


def test_label_maps_match_medpy_per_region():
    """evaluate_arrays on label maps (crop of the union) equals MedPy on the full region masks."""
    ref = make_phantom(7, SHAPE).labels
    pred = np.roll(ref, 2, axis=0)
    pred[ndimage.binary_dilation(ref == 4, CROSS) & (ref == 1)] = 4  # thicker rim
    spacing = (1.0, 0.9, 1.7)
    row = evaluate_arrays(pred, ref, spacing)
    for i, r in enumerate(("WT", "TC", "ET")):
        p, g = labels_to_regions(pred)[i], labels_to_regions(ref)[i]
        assert row[f"dice_{r}"] == pytest.approx(medpy_binary.dc(p, g), abs=1e-6)
        assert row[f"hd95_{r}"] == pytest.approx(medpy_binary.hd95(p, g, voxelspacing=spacing), abs=1e-6)


def test_objects_touching_the_image_border_match_medpy():
    """The crop must not add a margin beyond the image: MedPy erodes with background outside."""
    rng = np.random.default_rng(0)
    ref = ndimage.binary_opening(rng.random((30, 28, 20)) > 0.4, CROSS)
    ref[0, :, :] = True
    pred = np.roll(ref, 1, axis=1)
    pred[:, :, -1] = True
    spacing = (1.0, 2.0, 0.5)
    assert hd95(pred, ref, spacing) == pytest.approx(medpy_binary.hd95(pred, ref, voxelspacing=spacing), abs=1e-6)


def test_sensitivity_specificity_and_volumes_from_counts():
    rng = np.random.default_rng(1)
    ref = rng.random((20, 20, 10)) > 0.7
    pred = rng.random((20, 20, 10)) > 0.6
    spacing = (0.5, 2.0, 3.0)
    m = region_metrics(pred, ref, spacing)
    tp, fp = np.sum(pred & ref), np.sum(pred & ~ref)
    fn, tn = np.sum(~pred & ref), np.sum(~pred & ~ref)
    assert m["sensitivity"] == pytest.approx(tp / (tp + fn))
    assert m["specificity"] == pytest.approx(tn / (tn + fp))
    assert m["volume_pred_ml"] == pytest.approx(pred.sum() * 3.0 / 1000)
    assert m["volume_ref_ml"] == pytest.approx(ref.sum() * 3.0 / 1000)


def test_specificity_counts_every_voxel_of_the_image():
    """Cropping to the tumour must not shrink the true negatives: they span the whole image."""
    ref = np.zeros((100, 100, 50), bool)
    ref[40:50, 40:50, 20:30] = True
    pred = np.zeros_like(ref)
    pred[42:52, 40:50, 20:30] = True
    m = region_metrics(pred, ref, (1.0, 1.0, 1.0))
    assert m["specificity"] == pytest.approx((ref.size - 1000 - 200) / (ref.size - 1000))


def test_diagonal_is_computed_exactly():
    assert BRATS_DIAGONAL_MM == math.sqrt(240 ** 2 + 240 ** 2 + 155 ** 2)
    assert BRATS_DIAGONAL_MM == pytest.approx(373.1286641, abs=1e-7)


def test_both_empty_gives_dice_1_hd95_0_sensitivity_1():
    empty = np.zeros(SHAPE, bool)
    m = region_metrics(empty, empty, (1.0, 1.0, 1.0))
    assert (m["dice"], m["hd95"], m["sensitivity"], m["specificity"]) == (1.0, 0.0, 1.0, 1.0)
    assert m["volume_pred_ml"] == m["volume_ref_ml"] == 0.0


def test_empty_reference_with_prediction_gives_dice_0_diagonal_sensitivity_0():
    ref = np.zeros(SHAPE, bool)
    pred = ref.copy()
    pred[10:14, 10:14, 10:14] = True
    m = region_metrics(pred, ref, (1.0, 1.0, 1.0))
    assert m["dice"] == 0.0
    assert m["hd95"] == BRATS_DIAGONAL_MM
    assert m["sensitivity"] == 0.0
    assert m["specificity"] == pytest.approx(1 - 64 / ref.size)


def test_empty_prediction_with_reference_gives_dice_0_diagonal():
    pred = np.zeros(SHAPE, bool)
    ref = pred.copy()
    ref[10:14, 10:14, 10:14] = True
    m = region_metrics(pred, ref, (0.5, 0.5, 0.5))
    assert m["dice"] == 0.0
    assert m["hd95"] == BRATS_DIAGONAL_MM  # the BraTS constant, not scaled by this image's spacing
    assert m["sensitivity"] == 0.0
    assert m["specificity"] == 1.0


def test_missing_et_in_label_maps_follows_the_conventions():
    """A case without enhancing tumour in either map: ET Dice 1, HD95 0; in one map only: diagonal."""
    ref = make_phantom(2, SHAPE).labels
    no_et = np.where(ref == 4, 1, ref).astype(np.uint8)
    both = evaluate_arrays(no_et, no_et, (1.0, 1.0, 1.0))
    assert (both["dice_ET"], both["hd95_ET"], both["sensitivity_ET"]) == (1.0, 0.0, 1.0)
    assert both["dice_WT"] == 1.0 and both["hd95_WT"] == 0.0
    one = evaluate_arrays(no_et, ref, (1.0, 1.0, 1.0))
    assert (one["dice_ET"], one["hd95_ET"], one["sensitivity_ET"]) == (0.0, BRATS_DIAGONAL_MM, 0.0)
    assert one["dice_TC"] == 1.0  # necrosis + enhancing still cover the same voxels


def test_bounding_box_margin_is_clipped_to_the_image():
    mask = np.zeros((10, 10, 10), bool)
    mask[0, 4, 9] = True
    assert bounding_box(mask, margin=1) == (slice(0, 2), slice(3, 6), slice(8, 10))
    assert bounding_box(np.zeros((3, 3, 3), bool)) is None


def test_spacing_from_an_oblique_affine():
    rot = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    aff = np.eye(4)
    aff[:3, :3] = rot @ np.diag([0.7, 1.1, 2.0])
    assert spacing_from_affine(aff) == pytest.approx((0.7, 1.1, 2.0))


# --------------------------------------------------------------------------- files

def test_float_label_maps_are_accepted_when_integral(tmp_path):
    labels = make_phantom(3, SHAPE).labels
    pred = np.roll(labels, 1, axis=1)
    write_labels(tmp_path / "gt.nii.gz", labels, brats_affine())
    write_image(tmp_path / "pred_float.nii.gz", pred.astype(np.float32), brats_affine())
    write_labels(tmp_path / "pred_int.nii.gz", pred, brats_affine())
    a = evaluate_case(tmp_path / "pred_float.nii.gz", tmp_path / "gt.nii.gz", "c")
    b = evaluate_case(tmp_path / "pred_int.nii.gz", tmp_path / "gt.nii.gz", "c")
    assert a == b
    assert list(a) == metric_columns(True)
    assert 0 < a["dice_WT"] < 1


def test_conventions_per_input(tmp_path):
    """A 2023 prediction (ET = 3) against a 2019 reference scores as the same map relabelled."""
    labels = make_phantom(4, SHAPE).labels
    write_labels(tmp_path / "gt.nii.gz", labels, brats_affine())
    write_labels(tmp_path / "pred2023.nii.gz", np.where(labels == 4, 3, labels), brats_affine())
    row = evaluate_case(tmp_path / "pred2023.nii.gz", tmp_path / "gt.nii.gz", "c", pred_labels="2023")
    assert all(row[f"dice_{r}"] == 1.0 and row[f"hd95_{r}"] == 0.0 for r in ("WT", "TC", "ET"))


def test_volumes_only_without_reference(tmp_path):
    labels = make_phantom(4, SHAPE).labels
    aff = np.diag([-1.0, -1.0, 2.0, 1.0])
    write_labels(tmp_path / "pred.nii.gz", labels, aff)
    row = evaluate_case(tmp_path / "pred.nii.gz", None, "c")
    assert list(row) == ["case_id", "volume_pred_ml_WT", "volume_pred_ml_TC", "volume_pred_ml_ET"]
    assert row["volume_pred_ml_ET"] == pytest.approx(np.sum(labels == 4) * 2.0 / 1000)


def test_grids_within_a_micrometre_are_accepted_and_others_refused(tmp_path):
    from gliocascade.errors import InputError

    labels = make_phantom(4, SHAPE).labels
    write_labels(tmp_path / "gt.nii.gz", labels, brats_affine())
    near = brats_affine()
    near[0, 3] += 4e-4
    write_labels(tmp_path / "near.nii.gz", labels, near)
    assert evaluate_case(tmp_path / "near.nii.gz", tmp_path / "gt.nii.gz", "c")["dice_WT"] == 1.0
    far = brats_affine()
    far[0, 3] += 0.01
    write_labels(tmp_path / "far.nii.gz", labels, far)
    with pytest.raises(InputError, match="gt.nii.gz"):
        evaluate_case(tmp_path / "far.nii.gz", tmp_path / "gt.nii.gz", "c")


# --------------------------------------------------------------------------- real pair

@pytest.fixture(scope="module")
def real_pair(data_dir):
    """The BraTS-MET-01352-000 reference and prediction (256x256x376, 1x1x0.6 mm, labels 0/1/2/3)."""
    folder = data_dir / "metrics" / "BraTS-MET-01352-000"
    if not folder.is_dir():
        pytest.skip(f"{folder} not present")
    return folder / "prediction.nii.gz", folder / "reference.nii.gz"


def test_real_pair_matches_medpy_with_anisotropic_spacing(real_pair):
    import nibabel as nib

    pred_path, ref_path = real_pair
    row = evaluate_case(pred_path, ref_path, "BraTS-MET-01352-000", "2023", "2023")
    pred_img = nib.load(str(pred_path))
    spacing = spacing_from_affine(pred_img.affine)
    assert spacing == pytest.approx((1.0, 1.0, 0.6), abs=1e-5)
    pred = np.asarray(pred_img.dataobj).astype(np.uint8)
    ref = np.asarray(nib.load(str(ref_path)).dataobj).astype(np.uint8)
    # MedPy on the whole 24M-voxel grid takes minutes on a small machine: give it the union's
    # box with a generous 4-voxel margin (the borders and their distances are all inside).
    box = bounding_box((pred > 0) | (ref > 0), margin=4)
    p_reg, r_reg = labels_to_regions(pred[box], "2023"), labels_to_regions(ref[box], "2023")
    for i, r in enumerate(("WT", "TC", "ET")):
        assert p_reg[i].any() and r_reg[i].any()
        assert row[f"dice_{r}"] == pytest.approx(medpy_binary.dc(p_reg[i], r_reg[i]), abs=1e-6)
        assert row[f"hd95_{r}"] == pytest.approx(
            medpy_binary.hd95(p_reg[i], r_reg[i], voxelspacing=spacing), abs=1e-6)
    # Spacing matters: the same arrays read as 1 mm isotropic give another HD95 and volume.
    iso = evaluate_arrays(pred, ref, (1.0, 1.0, 1.0), "2023", "2023")
    assert abs(iso["hd95_WT"] - row["hd95_WT"]) > 0.05
    assert iso["hd95_WT"] == pytest.approx(medpy_binary.hd95(p_reg[0], r_reg[0], voxelspacing=(1, 1, 1)), abs=1e-6)
    assert row["volume_ref_ml_WT"] == pytest.approx(iso["volume_ref_ml_WT"] * 0.6, rel=1e-5)
    assert iso["dice_WT"] == row["dice_WT"]
