"""`gliocascade evaluate` through the CLI: the CSV it writes, and one-line errors with nothing left behind."""
from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest

from gliocascade.io import brats_affine, write_image, write_labels
from gliocascade.metrics import metric_columns
from gliocascade.phantom import make_phantom

SHAPE = (48, 48, 32)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A reference and a shifted prediction (labels 0/1/2/4) on the BraTS header."""
    d = tmp_path_factory.mktemp("evaluate_pair")
    labels = make_phantom(11, SHAPE).labels
    write_labels(d / "gt.nii.gz", labels, brats_affine())
    write_labels(d / "pred.nii.gz", np.roll(labels, 2, axis=0), brats_affine())
    return d / "pred.nii.gz", d / "gt.nii.gz"


def test_evaluate_writes_one_row_with_stable_columns(cli, pair, tmp_path):
    pred, gt = pair
    out = tmp_path / "sub" / "c1_metrics.csv"
    res = cli("evaluate", "--pred", pred, "--gt", gt, "--case-id", "c1", "--out", out)
    assert res.exit_code == 0, res.output
    df = pd.read_csv(out)
    assert list(df.columns) == metric_columns(True)
    assert df["case_id"].tolist() == ["c1"]
    assert 0.3 < df["dice_WT"].iloc[0] < 1.0
    assert df["hd95_WT"].iloc[0] >= 2.0  # a 2-voxel shift moves some border voxels 2 mm
    assert sorted(p.name for p in out.parent.iterdir()) == ["c1_metrics.csv", "provenance_evaluate.json"]


def test_evaluate_without_gt_reports_volumes_only(cli, pair, tmp_path):
    pred, _ = pair
    out = tmp_path / "vol.csv"
    res = cli("evaluate", "--pred", pred, "--case-id", "c2", "--out", out)
    assert res.exit_code == 0, res.output
    df = pd.read_csv(out)
    assert list(df.columns) == ["case_id", "volume_pred_ml_WT", "volume_pred_ml_TC", "volume_pred_ml_ET"]
    assert df["volume_pred_ml_WT"].iloc[0] > df["volume_pred_ml_TC"].iloc[0] > df["volume_pred_ml_ET"].iloc[0] > 0


def test_help_states_the_empty_region_conventions(cli):
    res = cli("evaluate", "--help")
    assert res.exit_code == 0
    assert "373.1286" in res.output and "both empty" in res.output


def _bad_inputs(d, gt):
    """name -> (pred path, file the error must name, extra CLI args)."""
    labels = make_phantom(11, SHAPE).labels
    cases = {}
    cases["missing"] = (d / "nope.nii.gz", d / "nope.nii.gz", [])
    (d / "text.nii.gz").write_text("not an image\n")
    cases["not_nifti"] = (d / "text.nii.gz", d / "text.nii.gz", [])
    write_labels(d / "full.nii.gz", labels, brats_affine())
    raw = gzip.decompress((d / "full.nii.gz").read_bytes())
    (d / "truncated.nii.gz").write_bytes(gzip.compress(raw[: len(raw) // 2]))
    cases["truncated"] = (d / "truncated.nii.gz", d / "truncated.nii.gz", [])
    shifted = brats_affine()
    shifted[2, 3] += 1.0
    write_labels(d / "moved.nii.gz", labels, shifted)
    cases["grid"] = (d / "moved.nii.gz", gt, [])
    bad = labels.copy()
    bad[0, 0, 0] = 3  # ET = 3 is the 2023 value, not 2019's
    write_labels(d / "label3.nii.gz", bad, brats_affine())
    cases["outside_convention"] = (d / "label3.nii.gz", d / "label3.nii.gz", [])
    nan = labels.astype(np.float32)
    nan[1, 1, 1] = np.nan
    write_image(d / "nan.nii.gz", nan, brats_affine())
    cases["nan"] = (d / "nan.nii.gz", d / "nan.nii.gz", [])
    return cases


@pytest.mark.parametrize("kind", ["missing", "not_nifti", "truncated", "grid", "outside_convention", "nan"])
def test_bad_input_gives_one_line_exit_2_and_no_output(cli, pair, tmp_path, kind):
    _, gt = pair
    inputs = tmp_path / "in"
    inputs.mkdir()
    pred, named, extra = _bad_inputs(inputs, gt)[kind]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    res = cli("evaluate", "--pred", pred, "--gt", gt, "--case-id", "c", "--out", out_dir / "m.csv", *extra)
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: ") and str(named) in lines[0], lines[0]
    assert list(out_dir.iterdir()) == []


def test_bad_reference_is_named_too(cli, pair, tmp_path):
    pred, _ = pair
    (tmp_path / "gt.nii.gz").write_bytes(b"\x1f\x8b garbage")
    res = cli("evaluate", "--pred", pred, "--gt", tmp_path / "gt.nii.gz", "--case-id", "c", "--out", tmp_path / "m.csv")
    assert res.exit_code == 2
    assert str(tmp_path / "gt.nii.gz") in res.stderr
    assert not (tmp_path / "m.csv").exists()


def test_2023_reference_needs_its_convention(cli, pair, tmp_path):
    pred, gt = pair
    labels = make_phantom(11, SHAPE).labels
    write_labels(tmp_path / "gt2023.nii.gz", np.where(labels == 4, 3, labels), brats_affine())
    out = tmp_path / "m.csv"
    assert cli("evaluate", "--pred", pred, "--gt", tmp_path / "gt2023.nii.gz", "--case-id", "c",
               "--out", out).exit_code == 2
    res = cli("evaluate", "--pred", pred, "--gt", tmp_path / "gt2023.nii.gz", "--case-id", "c",
              "--out", out, "--gt-labels", "2023")
    assert res.exit_code == 0, res.output
    ref = cli("evaluate", "--pred", pred, "--gt", gt, "--case-id", "c", "--out", tmp_path / "ref.csv")
    assert ref.exit_code == 0
    pd.testing.assert_frame_equal(pd.read_csv(out), pd.read_csv(tmp_path / "ref.csv"))


def test_real_brats_2023_case_two_algorithms_two_conventions(cli, data_dir, tmp_path):
    """BraTS-GLI-00001-000: nnU-Net (2019 labels, uint8) against the 2023 winner (ET = 3, int16).

    Neither is an expert label; two strong algorithms agree closely, which checks the per-input
    conventions on real data (read with the wrong convention, the 2023 map is refused).
    """
    d = data_dir / "brats_space" / "BraTS-GLI-00001-000" / "algorithm_segmentations"
    if not d.is_dir():
        pytest.skip(f"{d} not present")
    pred, gt = d / "bratstoolkit_isen_labels0124.nii.gz", d / "brats23_winner_labels0123.nii.gz"
    out = tmp_path / "m.csv"
    wrong = cli("evaluate", "--pred", pred, "--gt", gt, "--case-id", "g", "--out", out)
    assert wrong.exit_code == 2 and str(gt) in wrong.stderr and "[3]" in wrong.stderr
    res = cli("evaluate", "--pred", pred, "--gt", gt, "--gt-labels", "2023", "--case-id", "g", "--out", out)
    assert res.exit_code == 0, res.output
    row = pd.read_csv(out).iloc[0]
    assert row["dice_WT"] > 0.9 and row["dice_TC"] > 0.9 and row["dice_ET"] > 0.85
    assert row["hd95_WT"] < 5.0
    assert 50 < row["volume_ref_ml_WT"] < 300


def test_unwritable_output_path_is_a_one_line_error(tmp_path, cli):
    """An --out under an existing file gives exit 2 and a message naming the path, not a traceback."""
    from gliocascade.phantom import write_phantoms

    case = write_phantoms(tmp_path / "c", n=1, seed=0, shape=(32, 32, 24))[0]
    seg = next(case.glob("*_seg.nii.gz"))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = cli("evaluate", "--pred", seg, "--gt", seg, "--case-id", "x", "--out", blocker / "m.csv")
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and str(blocker) in lines[0]


def test_image_output_needs_a_nifti_name(tmp_path, cli):
    from gliocascade.phantom import write_phantoms

    case = write_phantoms(tmp_path / "c", n=1, seed=0, shape=(32, 32, 24))[0]
    seg = next(case.glob("*_seg.nii.gz"))
    result = cli("postprocess", "--pred", seg, "--out", tmp_path / "final.txt", "--et-threshold", "0")
    assert result.exit_code == 2
    assert "final.txt" in result.output and ".nii" in result.output
    assert not (tmp_path / "final.txt").exists()


def test_evaluate_records_provenance_with_input_hashes(tmp_path, cli):
    import json

    from gliocascade.phantom import write_phantoms
    from gliocascade.provenance import sha256_file

    case = write_phantoms(tmp_path / "c", n=1, seed=0, shape=(32, 32, 24))[0]
    seg = next(case.glob("*_seg.nii.gz"))
    out = tmp_path / "o" / "m.csv"
    assert cli("evaluate", "--pred", seg, "--gt", seg, "--case-id", "x", "--out", out).exit_code == 0
    record = json.loads((out.parent / "provenance_evaluate.json").read_text())
    assert record["step"] == "evaluate"
    assert record["inputs"]["pred"]["sha256"] == sha256_file(seg)
    assert record["parameters"]["gt_labels"] == "2019"


def test_2019_reference_declared_2024_is_warned_in_log_and_report(cli, pair, tmp_path, caplog):
    """Values 0/1/2/4 fit 2024, so the metrics are written; the warning names both readings and
    reaches the log, the evaluate record and the report's warnings column."""
    import json

    caplog.set_level("WARNING", logger="gliocascade.labels")
    pred, gt = pair  # gt: a 2019 phantom map (ET = 4, no 3)
    out = tmp_path / "c1" / "c1_metrics.csv"
    res = cli("evaluate", "--pred", pred, "--gt", gt, "--gt-labels", "2024", "--case-id", "c1", "--out", out)
    assert res.exit_code == 0, res.output
    assert any("declared label convention 2024" in r.getMessage() and "2019 map" in r.getMessage()
               for r in caplog.records)
    record = json.loads((out.parent / "provenance_evaluate.json").read_text())
    [warning] = record["warnings"]
    assert warning.startswith(f"{gt}: declared label convention 2024") and "post-operative" in warning
    # 2024 reads 4 as the resection cavity: no ET, and the cavity is outside WT.
    row = pd.read_csv(out).iloc[0]
    labels = make_phantom(11, SHAPE).labels
    assert row["volume_ref_ml_WT"] * 1000 == pytest.approx(np.count_nonzero(np.isin(labels, [1, 2])), abs=0.5)
    files = tmp_path / "case_files.csv"
    files.write_text("case_id,role,path\n"
                     f"c1,seg,{pred}\nc1,reference,{gt}\nc1,provenance_evaluate,{out.parent / 'provenance_evaluate.json'}\n")
    rep = cli("report", "--metrics", out, "--case-files", files, "--out", tmp_path / "report")
    assert rep.exit_code == 0, rep.output
    html = (tmp_path / "report" / "report.html").read_text()
    assert "declared label convention 2024" in html
    assert "declared label convention 2024" in (tmp_path / "report" / "cases" / "c1.html").read_text()
