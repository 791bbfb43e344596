"""`gliocascade run` on the real BraTS-space cases: 2023 file names, a 2023-convention seg, no seg.

Random weights: this checks that real inputs flow through every step with their geometry intact
and the right metrics columns, not accuracy.
"""
from __future__ import annotations

import csv

import nibabel as nib
import numpy as np


def test_run_real_brats_space_cases(data_dir, random_tiny_model, tmp_path, cli):
    gli = data_dir / "brats_space" / "BraTS-GLI-00001-000"
    tcga = data_dir / "brats_space" / "TCGA-FG-6692"
    g = "BraTS-GLI-00001-000"
    sheet = tmp_path / "real.csv"
    sheet.write_text(
        "case_id,t1,t1ce,t2,flair,seg,space,label_convention\n"
        f"GLI1,{gli}/{g}-t1n.nii.gz,{gli}/{g}-t1c.nii.gz,{gli}/{g}-t2w.nii.gz,{gli}/{g}-t2f.nii.gz,"
        f"{gli}/algorithm_segmentations/brats23_winner_labels0123.nii.gz,brats,2023\n"
        f"TCGA,{tcga}/TCGA-FG-6692_t1.nii.gz,{tcga}/TCGA-FG-6692_t1ce.nii.gz,{tcga}/TCGA-FG-6692_t2.nii.gz,"
        f"{tcga}/TCGA-FG-6692_flair.nii.gz,,brats,\n")
    out = tmp_path / "out"
    result = cli("run", "--samplesheet", sheet, "--model", random_tiny_model, "--out", out,
                 "--workers", "2", "--tta", "1", "--device", "cpu")
    assert result.exit_code == 0, result.output

    for cid, t1ce in (("GLI1", gli / f"{g}-t1c.nii.gz"), ("TCGA", tcga / "TCGA-FG-6692_t1ce.nii.gz")):
        ref = nib.load(str(t1ce))
        seg = nib.load(str(out / cid / f"{cid}_seg.nii.gz"))
        assert seg.shape == ref.shape
        np.testing.assert_allclose(seg.affine, ref.affine, atol=1e-4)
        assert nib.aff2axcodes(seg.affine) == nib.aff2axcodes(ref.affine)
        assert set(np.unique(np.asarray(seg.dataobj)).tolist()) <= {0, 1, 2, 4}

    with open(out / "GLI1" / "GLI1_metrics.csv", newline="") as fh:
        gli_row = next(csv.DictReader(fh))
    assert 0.0 <= float(gli_row["dice_WT"]) <= 1.0 and float(gli_row["volume_ref_ml_WT"]) > 10.0
    with open(out / "TCGA" / "TCGA_metrics.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        tcga_row = next(reader)
    assert "dice_WT" not in reader.fieldnames and "volume_pred_ml_WT" in reader.fieldnames
    assert float(tcga_row["volume_pred_ml_WT"]) >= 0.0
    with open(out / "report" / "cohort_metrics.csv", newline="") as fh:
        assert sorted(r["case_id"] for r in csv.DictReader(fh)) == ["GLI1", "TCGA"]
