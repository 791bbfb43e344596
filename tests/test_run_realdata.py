"""`gliocascade run` on real scans: a BraTS-space case without ground truth, and a raw native exam.

Random weights: this checks that a real scan flows through every step with its geometry intact
and the volumes-only metrics columns, not accuracy (the 2023 label convention is covered on
phantoms in test_run.py, where it is cheap).
"""
from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest


def test_run_real_brats_space_case(data_dir, random_tiny_model, tmp_path, cli):
    tcga = data_dir / "brats_space" / "TCGA-FG-6692"
    sheet = tmp_path / "real.csv"
    sheet.write_text(
        "case_id,t1,t1ce,t2,flair,space\n"
        f"TCGA,{tcga}/TCGA-FG-6692_t1.nii.gz,{tcga}/TCGA-FG-6692_t1ce.nii.gz,{tcga}/TCGA-FG-6692_t2.nii.gz,"
        f"{tcga}/TCGA-FG-6692_flair.nii.gz,brats\n")
    out = tmp_path / "out"
    result = cli("run", "--samplesheet", sheet, "--model", random_tiny_model, "--out", out,
                 "--tta", "1", "--device", "cpu")
    assert result.exit_code == 0, result.output

    ref = nib.load(str(tcga / "TCGA-FG-6692_t1ce.nii.gz"))
    for name in ("TCGA_pred.nii.gz", "TCGA_seg.nii.gz"):
        seg = nib.load(str(out / "TCGA" / name))
        assert seg.shape == ref.shape
        np.testing.assert_allclose(seg.affine, ref.affine, atol=1e-4)
        assert nib.aff2axcodes(seg.affine) == nib.aff2axcodes(ref.affine) == ("L", "P", "S")
        assert set(np.unique(np.asarray(seg.dataobj)).tolist()) <= {0, 1, 2, 4}
    assert not (out / "TCGA" / "TCGA_seg_native.nii.gz").exists()  # brats rows have no transforms

    with open(out / "TCGA" / "TCGA_metrics.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        row = next(reader)
    assert "dice_WT" not in reader.fieldnames  # no ground truth: volumes only
    assert float(row["volume_pred_ml_WT"]) >= float(row["volume_pred_ml_TC"]) >= float(row["volume_pred_ml_ET"])
    with open(out / "report" / "cohort_metrics.csv", newline="") as fh:
        assert [r["case_id"] for r in csv.DictReader(fh)] == ["TCGA"]


def test_run_native_case_writes_labels_on_the_native_grid(data_dir, random_tiny_model, tmp_path, cli):
    """A raw exam (space=native): preprocess -> BraTS space -> labels also back on the native T1Gd grid."""
    from gliocascade.io import BRATS_SHAPE, brats_affine

    native = data_dir / "native" / "TCGA-FG-6692"
    atlas = data_dir / "atlas"
    sheet = tmp_path / "native.csv"
    files = [native / f"TCGA-FG-6692_{m}.nii.gz" for m in ("t1", "t1c", "t2", "flair")]
    # Ground truth on the native T1Gd grid (the HD-BET brain mask as label 1): evaluated on that grid.
    gt = native / "reference" / "hdbet_native_masks" / "OtherEXampleFromTCIA_hdbet_mask_native_t1c.nii.gz"
    sheet.write_text("case_id,t1,t1ce,t2,flair,seg\nRAW," + ",".join(str(f) for f in [*files, gt]) + "\n")
    out = tmp_path / "out"
    args = ("run", "--samplesheet", sheet, "--model", random_tiny_model, "--out", out, "--tta", "1",
            "--device", "cpu", "--atlas", atlas, "--atlas-via", "t1", "--save-probabilities")
    result = cli(*args)
    assert result.exit_code == 0, result.output

    case = out / "RAW"
    # run's step options reach the steps: preprocessing route recorded, probabilities written
    prep = json.loads((case / "preprocessed" / "provenance_preprocess.json").read_text())
    assert prep["parameters"]["atlas_via"] == "t1" and prep["parameters"]["backend"] == "simpleitk"
    prob = np.asarray(nib.load(str(case / "RAW_prob.nii.gz")).dataobj)
    assert prob.shape == (*BRATS_SHAPE, 3) and 0.0 <= prob.min() and prob.max() <= 1.0
    pred = np.asarray(nib.load(str(case / "RAW_pred.nii.gz")).dataobj)
    np.testing.assert_array_equal(pred > 0, (prob > 0.5).any(axis=-1))  # labelled = some region map above 0.5
    pre = nib.load(str(case / "preprocessed" / "RAW_t1ce.nii.gz"))
    assert pre.shape == BRATS_SHAPE and np.allclose(pre.affine, brats_affine(), atol=1e-4)
    seg = nib.load(str(case / "RAW_seg.nii.gz"))
    assert seg.shape == BRATS_SHAPE and np.allclose(seg.affine, brats_affine(), atol=1e-4)
    t1c = nib.load(str(native / "TCGA-FG-6692_t1c.nii.gz"))
    seg_native = nib.load(str(case / "RAW_seg_native.nii.gz"))
    assert seg_native.shape == t1c.shape[:3]
    np.testing.assert_allclose(seg_native.affine, t1c.affine, atol=1e-3)
    assert set(np.unique(np.asarray(seg_native.dataobj)).tolist()) <= {0, 1, 2, 4}

    with open(case / "RAW_metrics.csv", newline="") as fh:
        row = next(csv.DictReader(fh))
    gt_img = nib.load(str(gt))
    gt_ml = float((np.asarray(gt_img.dataobj) > 0).sum()) * float(np.prod(gt_img.header.get_zooms()[:3])) / 1000.0
    assert float(row["volume_ref_ml_WT"]) == pytest.approx(gt_ml, rel=1e-6)
    assert 0.0 <= float(row["dice_WT"]) <= 1.0

    stamps = {p: p.stat().st_mtime_ns for p in case.rglob("*") if p.is_file()}
    again = cli(*args)  # resume: preprocessing and every other step are skipped
    assert again.exit_code == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
