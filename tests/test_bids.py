"""BIDS in (`run --bids`) and out (`run --layout bids`).

The reader tests use tiny fake datasets (empty files: pybids reads names, not images). The
acceptance test builds a BIDS dataset from the raw TCGA-FG-6692 exam (sub-01 with two complete
sessions, sub-02 whose session lacks FLAIR), runs it once (random weights, one TTA pass) and
checks the report, the derivatives layout and the official validator's verdict on it.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner

from gliocascade.bids_input import read_bids_dataset
from gliocascade.bids_output import bids_prefix, check_bids_ids, dseg_table
from gliocascade.errors import InputError


def _dataset(root: Path, files: list[str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "t", "BIDSVersion": "1.10.0"}))
    for rel in files:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).touch()
    return root


FULL = ["T1w", "ce-gd_T1w", "T2w", "FLAIR"]


def test_one_case_per_subject_session_with_its_four_modalities(tmp_path):
    files = [f"sub-01/ses-{s}/anat/sub-01_ses-{s}_{m}.nii.gz" for s in ("a", "b") for m in FULL]
    files += [f"sub-02/anat/sub-02_{m}.nii.gz" for m in FULL]
    rows = read_bids_dataset(_dataset(tmp_path / "ds", files))
    assert [r.case_id for r in rows] == ["sub-01_ses-a", "sub-01_ses-b", "sub-02"]
    b = rows[1]
    assert not b.problems and b.space == "native"
    assert {m: p.name for m, p in b.images.items()} == {
        "t1": "sub-01_ses-b_T1w.nii.gz", "t1ce": "sub-01_ses-b_ce-gd_T1w.nii.gz",
        "t2": "sub-01_ses-b_T2w.nii.gz", "flair": "sub-01_ses-b_FLAIR.nii.gz"}


def test_ambiguous_and_missing_modalities_fail_only_their_case(tmp_path):
    files = [f"sub-01/anat/sub-01_{m}.nii.gz" for m in FULL]
    files += ["sub-02/anat/sub-02_run-1_T1w.nii.gz", "sub-02/anat/sub-02_run-2_T1w.nii.gz",
              "sub-02/anat/sub-02_ce-gd_T1w.nii.gz", "sub-02/anat/sub-02_T2w.nii.gz",
              "sub-02/anat/sub-02_acq-ax_FLAIR.nii.gz"]
    files += [f"sub-03/anat/sub-03_{m}.nii.gz" for m in ("T1w", "ce-gd_T1w", "T2w")]
    rows = {r.case_id: r for r in read_bids_dataset(_dataset(tmp_path / "ds", files))}
    assert not rows["sub-01"].problems
    (problem,) = rows["sub-02"].problems  # one line, naming both candidates; the acq- FLAIR is the only one
    assert "sub-02_run-1_T1w.nii.gz" in problem and "sub-02_run-2_T1w.nii.gz" in problem and "t1" in problem
    assert "\n" not in problem and rows["sub-02"].images["flair"].name == "sub-02_acq-ax_FLAIR.nii.gz"
    (missing,) = rows["sub-03"].problems
    assert "no FLAIR image" in missing and "sub-03" in missing


def test_not_a_bids_dataset_is_one_line_input_error(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(InputError, match="no dataset_description.json"):
        read_bids_dataset(tmp_path / "x")
    with pytest.raises(InputError, match="no sub-"):
        read_bids_dataset(_dataset(tmp_path / "empty", []))


def test_bids_names_of_cases_and_label_table():
    assert bids_prefix("sub-01_ses-2") == ("01", "2")
    assert bids_prefix("TCGA-FG_6692") == ("TCGAFG6692", None)
    with pytest.raises(InputError, match="P-01"):
        check_bids_ids(["P-01", "P01"])
    rows = [line.split("\t") for line in dseg_table("2023").splitlines()]
    assert rows[0] == ["index", "name", "abbreviation"]
    assert {r[2]: int(r[0]) for r in rows[1:]} == {"BG": 0, "NCR": 1, "ED": 2, "ET": 3}


def test_run_needs_exactly_one_of_samplesheet_and_bids(cli, random_tiny_model, tmp_path):
    result = cli("run", "--model", random_tiny_model, "--out", tmp_path / "o")
    assert result.exit_code == 2 and "--samplesheet" in result.output and "--bids" in result.output
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------- acceptance on the raw exam

NATIVE = {"T1w": "t1", "ce-gd_T1w": "t1c", "T2w": "t2", "FLAIR": "flair"}


@pytest.fixture(scope="module")
def bids_run(data_dir, random_tiny_model, tmp_path_factory):
    exam = data_dir / "native" / "TCGA-FG-6692"
    base = tmp_path_factory.mktemp("bids")
    links = {}
    for sub, ses, mods in (("01", "01", FULL), ("01", "02", FULL), ("02", "01", FULL[:3])):
        for m in mods:
            links[f"sub-{sub}/ses-{ses}/anat/sub-{sub}_ses-{ses}_{m}.nii.gz"] = exam / f"TCGA-FG-6692_{NATIVE[m]}.nii.gz"
    raw = _dataset(base / "raw", [])
    for rel, src in links.items():
        (raw / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(src, raw / rel)
    out = base / "out"
    from gliocascade.cli import main

    result = CliRunner().invoke(main, [str(a) for a in (
        "run", "--bids", raw, "--layout", "bids", "--model", random_tiny_model, "--out", out, "--tta", "1",
        "--device", "cpu", "--atlas", data_dir / "atlas", "--atlas-via", "t1", "--workers", "2")],
        catch_exceptions=False)
    return raw, out, result


def test_bids_run_segments_complete_sessions_and_reports_the_incomplete_one(bids_run):
    raw, out, result = bids_run
    assert result.exit_code == 1, result.output  # one case failed, the others finished
    with open(out / "report" / "failures.csv", newline="") as fh:
        failures = list(csv.DictReader(fh))
    assert [f["case_id"] for f in failures] == ["sub-02_ses-01"]
    assert "FLAIR" in " ".join(failures[0].values())
    with open(out / "report" / "cohort_metrics.csv", newline="") as fh:
        assert sorted(r["case_id"] for r in csv.DictReader(fh)) == ["sub-01_ses-01", "sub-01_ses-02"]


def test_bids_layout_has_both_spaces_with_sidecars(bids_run, random_tiny_model):
    raw, out, _ = bids_run
    root = out / "derivatives" / "gliocascade"
    desc = json.loads((root / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative" and desc["GeneratedBy"][0]["Name"] == "gliocascade"
    assert desc["SourceDatasets"][0]["URL"] == raw.resolve().as_uri()
    anat = root / "sub-01" / "ses-02" / "anat"
    t1c = nib.load(str(raw / "sub-01/ses-02/anat/sub-01_ses-02_ce-gd_T1w.nii.gz"))
    native = nib.load(str(anat / "sub-01_ses-02_space-orig_dseg.nii.gz"))
    assert native.shape == t1c.shape[:3]
    np.testing.assert_allclose(native.affine, t1c.affine, atol=1e-3)
    brats = nib.load(str(anat / "sub-01_ses-02_space-SRI24_dseg.nii.gz"))
    case = nib.load(str(out / "sub-01_ses-02" / "sub-01_ses-02_seg.nii.gz"))
    np.testing.assert_array_equal(np.asarray(brats.dataobj), np.asarray(case.dataobj))
    side = json.loads((anat / "sub-01_ses-02_space-SRI24_dseg.json").read_text())
    prep = json.loads((out / "sub-01_ses-02" / "preprocessed" / "provenance_preprocess.json").read_text())
    assert side["AtlasRelease"] == prep["atlas_release"]
    assert side["Models"][0]["Id"] == Path(random_tiny_model).name
    assert side["Sources"] == ["bids:raw:sub-01/ses-02/anat/sub-01_ses-02_ce-gd_T1w.nii.gz"]
    assert not (root / "sub-02").exists()  # the failed case has no derivatives


def test_bids_layout_passes_the_official_validator(bids_run):
    _, out, _ = bids_run
    exe = Path(sys.executable).with_name("bids-validator-deno")
    if not exe.exists() and shutil.which("bids-validator-deno") is None:
        pytest.skip("bids-validator-deno is not installed (pip install -e '.[test]')")
    exe = exe if exe.exists() else Path(shutil.which("bids-validator-deno"))
    proc = subprocess.run([str(exe), "--format", "json", str(out / "derivatives" / "gliocascade")],
                          capture_output=True, text=True, timeout=300)
    report = json.loads(proc.stdout)
    errors = [i for i in report["issues"]["issues"] if i.get("severity") == "error"]
    assert errors == [], errors
    assert report["summary"]["subjects"] == ["01"]
