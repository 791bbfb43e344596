"""`gliocascade run` on a real BraTS-space case without ground truth (volumes only).

Random weights: this checks that a real scan flows through every step with its geometry intact
and the volumes-only metrics columns, not accuracy (the 2023 label convention is covered on
phantoms in test_run.py, where it is cheap).
"""
from __future__ import annotations

import csv

import nibabel as nib
import numpy as np


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
