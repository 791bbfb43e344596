"""`gliocascade run` end to end on phantoms: one corrupt case fails alone, a rerun rewrites nothing.

The acceptance test of issue 5: six held-out phantoms, two workers, one case with a truncated
modality. That case must fail with a message naming the file (in failures.csv and the HTML
report) and leave no output of its own; the other five complete; exit code 1. A second run must
skip all finished work: every output file keeps its inode and mtime.
"""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

from conftest import TINY_SHAPE
from gliocascade.io import read_labels, write_labels
from gliocascade.labels import convert_labels
from gliocascade.phantom import write_phantoms

BAD = 2  # index of the case given a corrupt modality
CONV2023 = 4  # index of the case whose ground truth is in the BraTS 2023 convention


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def six_cases(tmp_path) -> tuple[Path, list[str], Path]:
    """Six held-out phantoms (tiny_model's shape, seeds 300-305) in a samplesheet with relative paths.

    Case BAD has a truncated T2; case CONV2023's ground truth is in the 2023 convention.
    """
    cases = write_phantoms(tmp_path / "cases", n=6, seed=300, shape=TINY_SHAPE)
    lines = ["case_id,t1,t1ce,t2,flair,seg,space,label_convention"]
    for i, case in enumerate(cases):
        cid = case.name
        convention = "2023" if i == CONV2023 else "2019"
        if i == CONV2023:  # this case's ground truth uses ET = 3 and says so in the sheet
            seg = case / f"{cid}_seg.nii.gz"
            labels, affine = read_labels(seg, "2019")
            write_labels(seg, convert_labels(labels, "2019", "2023"), affine)
        lines.append(",".join([cid, *[f"cases/{cid}/{cid}_{m}.nii.gz" for m in ("t1", "t1ce", "t2", "flair", "seg")],
                               "brats", convention]))
    sheet = tmp_path / "samples.csv"
    sheet.write_text("\n".join(lines) + "\n")
    bad_t2 = cases[BAD] / f"{cases[BAD].name}_t2.nii.gz"
    data = bad_t2.read_bytes()
    bad_t2.write_bytes(data[: len(data) // 3])
    return sheet, [c.name for c in cases], bad_t2


def test_run_six_cases_one_corrupt_then_resume(six_cases, tiny_model, tmp_path, cli):
    sheet, ids, bad_t2 = six_cases
    out = tmp_path / "out"
    args = ("run", "--samplesheet", sheet, "--model", tiny_model, "--out", out, "--workers", "2",
            "--tta", "1", "--device", "cpu")
    result = cli(*args)
    assert result.exit_code == 1, result.output

    bad = ids[BAD]
    assert not (out / bad).exists()  # no output of its own
    for cid in ids[:BAD] + ids[BAD + 1:]:
        for name in (f"{cid}_pred.nii.gz", f"{cid}_seg.nii.gz", f"{cid}_metrics.csv", "provenance_predict.json"):
            assert (out / cid / name).is_file(), name
        assert not list((out / cid).glob(".partial-*"))

    with open(out / "report" / "failures.csv", newline="") as fh:
        failures = list(csv.DictReader(fh))
    assert [f["case_id"] for f in failures] == [bad]
    assert failures[0]["step"] == "predict"
    assert "phantom302_t2.nii.gz" in failures[0]["message"] and "corrupt" in failures[0]["message"]
    html = (out / "report" / "report.html").read_text()
    assert "Failed cases" in html and bad in html and "phantom302_t2.nii.gz" in html
    with open(out / "report" / "cohort_metrics.csv", newline="") as fh:
        reported = sorted(r["case_id"] for r in csv.DictReader(fh))
    assert reported == sorted(ids[:BAD] + ids[BAD + 1:])
    with open(out / "report" / "cohort_metrics.csv", newline="") as fh:
        wt = [float(r["dice_WT"]) for r in csv.DictReader(fh)]
    assert sum(wt) / len(wt) >= 0.75, wt  # the trained model segments the held-out phantoms

    with open(out / ids[CONV2023] / f"{ids[CONV2023]}_metrics.csv", newline="") as fh:
        row2023 = next(csv.DictReader(fh))
    assert float(row2023["volume_ref_ml_ET"]) > 0.0  # label 3 was read as ET, as the sheet says

    before = _snapshot(out)
    again = cli(*args)
    assert again.exit_code == 1
    assert _snapshot(out) == before  # nothing rewritten, the report included

    # Fixing the broken file and rerunning completes only that case; the others stay untouched.
    write_phantoms(bad_t2.parent.parent, n=1, seed=300 + BAD, shape=TINY_SHAPE)
    fixed = cli(*args)
    assert fixed.exit_code == 0
    after = _snapshot(out)
    for name, stamp in before.items():
        if not name.startswith("report"):
            assert after[name] == stamp, name
    assert (out / bad / f"{bad}_metrics.csv").is_file()
    assert (out / "report" / "failures.csv").read_text().strip() == "case_id,step,message"
