"""Modality identification: rules on tag sets, and whole synthetic studies through `convert`."""
from __future__ import annotations

import csv
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from gliocascade.dicom_synth import PROTOCOLS, write_series, write_study
from gliocascade.series_id import Candidate, choose, identify

CASES = [
    # (tags, expected modality, a word the reason must contain)
    (PROTOCOLS["t1"], "t1", "no ContrastBolusAgent"),
    (PROTOCOLS["t1ce"], "t1ce", "Gadobutrol"),
    (PROTOCOLS["t2"], "t2", "T2-weighted"),
    (PROTOCOLS["flair"], "flair", "inversion recovery"),
    (dict(SeriesDescription="t1_mprage_sag_p2_iso", RepetitionTime=2300, EchoTime=2.98, InversionTime=900,
          ScanningSequence="GR\\IR", MRAcquisitionType="3D"), "t1", "MPRAGE"),
    (dict(SeriesDescription="T1 MPRAGE POST", RepetitionTime=2300, EchoTime=2.98, InversionTime=900,
          MRAcquisitionType="3D"), "t1ce", "post"),
    (dict(SeriesDescription="T1 PRE", RepetitionTime=600, EchoTime=12, ContrastBolusAgent="Gadovist"),
     "t1", "pre"),
    (dict(SeriesDescription="Sag T1 FLAIR", RepetitionTime=2000, EchoTime=9, InversionTime=860), "t1", "t1"),
    (dict(SeriesDescription="t2_tirm_tra_dark-fluid", RepetitionTime=9000, EchoTime=81, InversionTime=2500),
     "flair", "tirm"),
    (dict(SeriesDescription="T2 FLAIR", RepetitionTime=9000, EchoTime=120), "flair", "flair"),
    (dict(SeriesDescription="series 7", RepetitionTime=5000, EchoTime=95), "t2", "names no modality"),
    (dict(SeriesDescription="AX T1", RepetitionTime=4000, EchoTime=100), "other", "conflicting"),
    (dict(SeriesDescription="ep2d_diff_3scan_trace", ScanningSequence="EP", RepetitionTime=5000, EchoTime=90),
     "other", "diff"),
    (dict(SeriesDescription="AAHead_Scout", ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"]), "other", "LOCALIZER"),
    (dict(SeriesDescription="T1 MPR COR", ImageType=["DERIVED", "SECONDARY", "MPR"], RepetitionTime=2300,
          EchoTime=3, InversionTime=900), "other", "derived"),
    (dict(SeriesDescription="PD TSE", RepetitionTime=3000, EchoTime=15), "other", "pd"),
    (dict(SeriesDescription="CT head", Modality="CT"), "other", "not MR"),
]


@pytest.mark.parametrize("tags,expected,word", CASES, ids=[f"{c[0].get('SeriesDescription')}" for c in CASES])
def test_identify_rules(tags, expected, word):
    ident = identify(tags)
    assert ident.modality == expected, ident.reason
    assert word.lower() in ident.reason.lower()


def test_choose_prefers_the_single_3d_and_reports_ambiguity():
    cands = [Candidate("a", "A", "t1ce", False), Candidate("b", "B", "t1ce", True),
             Candidate("c", "C", "t2", False), Candidate("d", "D", "t2", False), Candidate("e", "E", "t1", False)]
    chosen, problems = choose(cands)
    assert chosen["t1ce"].key == "b" and chosen["t1"].key == "e"
    assert problems["t2"].startswith("ambiguous t2") and "C, D" in problems["t2"]
    assert problems["flair"] == "no series identified as flair"


def _study(root: Path, mods: list[str], extra: list[tuple[int, dict]] | None = None) -> Path:
    series = [(i + 2, PROTOCOLS[m]) for i, m in enumerate(mods)] + (extra or [])
    return write_study(root, series)


def _rows(out: Path) -> dict[str, dict]:
    with open(out / "series.csv") as fh:
        return {r["series_number"]: r for r in csv.DictReader(fh)}


def test_four_series_study_identified_and_written(cli, tmp_path):
    study = _study(tmp_path / "study", ["t1", "t1ce", "t2", "flair"],
                   extra=[(9, dict(SeriesDescription="ep2d_diff", ScanningSequence="EP",
                                   RepetitionTime=5000, EchoTime=90))])
    out = tmp_path / "out"
    res = cli("convert", "--dicom", study, "--out", out, "--case-id", "C1")
    assert res.exit_code == 0, res.output
    rows = _rows(out)
    assert {n: r["modality"] for n, r in rows.items()} == {"2": "t1", "3": "t1ce", "4": "t2", "5": "flair",
                                                          "9": "other"}
    assert rows["3"]["chosen_as"] == "t1ce" and "Gadobutrol" in rows["3"]["reason"]
    assert rows["9"]["chosen_as"] == "" and rows["9"]["status"] == "converted"
    for number, mod in [(2, "t1"), (3, "t1ce"), (4, "t2"), (5, "flair")]:
        img = nib.load(out / f"C1_{mod}.nii.gz")
        data = np.asanyarray(img.dataobj)
        assert data.shape == (16, 16, 8)
        # voxel value = 100 * series number + slice index, slices ascending along S
        assert int(data[5, 5, 0]) == 100 * number and int(data[5, 5, 7]) == 100 * number + 7
        assert nib.aff2axcodes(img.affine)[2] == "S"
        np.testing.assert_allclose(img.header.get_zooms(), (1, 1, 3), atol=1e-4)
    assert not [p for p in tmp_path.iterdir() if ".part-" in p.name]


def test_missing_flair_fails_naming_it_and_writes_nothing(cli, tmp_path):
    study = _study(tmp_path / "study", ["t1", "t1ce", "t2"])
    out = tmp_path / "out"
    res = cli("convert", "--dicom", study, "--out", out, "--case-id", "C1")
    assert res.exit_code == 2
    line = res.output.strip()
    assert len(line.splitlines()) == 1 and str(study) in line and "flair" in line and "--flair" in line
    assert not out.exists() and not [p for p in tmp_path.iterdir() if ".part-" in p.name]


def test_override_fills_missing_modality(cli, tmp_path):
    study = _study(tmp_path / "study", ["t1", "t1ce", "t2"])
    odd = write_series(tmp_path / "elsewhere" / "fl", 11, dict(SeriesDescription="sequence 11"),
                       study_uid="1.2.3.4")[0].parent
    out = tmp_path / "out"
    res = cli("convert", "--dicom", study, "--out", out, "--case-id", "C1", "--flair", odd)
    assert res.exit_code == 0, res.output
    assert _rows(out)["11"]["chosen_as"] == "flair (override)"
    assert int(np.asanyarray(nib.load(out / "C1_flair.nii.gz").dataobj)[3, 3, 2]) == 1102


def test_overrides_alone_without_dicom(cli, tmp_path):
    folders = {}
    for i, mod in enumerate(["t1", "t1ce", "t2", "flair"]):
        folders[mod] = write_series(tmp_path / "s" / mod, 20 + i, PROTOCOLS["t2"])[0].parent  # names win
    out = tmp_path / "out"
    res = cli("convert", "--out", out, "--case-id", "X", *sum((["--" + m, str(f)] for m, f in folders.items()), []))
    assert res.exit_code == 0, res.output
    for i, mod in enumerate(["t1", "t1ce", "t2", "flair"]):
        assert int(np.asanyarray(nib.load(out / f"X_{mod}.nii.gz").dataobj)[4, 4, 1]) == 100 * (20 + i) + 1


def test_ambiguous_t1ce_fails_and_single_3d_wins(cli, tmp_path):
    post2d = dict(PROTOCOLS["t1ce"], SeriesDescription="AX T1 POST")
    study = _study(tmp_path / "amb", ["t1", "t1ce", "t2", "flair"], extra=[(8, post2d)])
    res = cli("convert", "--dicom", study, "--out", tmp_path / "o1", "--case-id", "C")
    assert res.exit_code == 2 and "ambiguous t1ce" in res.output and "--t1ce" in res.output
    post3d = dict(post2d, MRAcquisitionType="3D", SeriesDescription="T1 MPRAGE POST", RepetitionTime=2300,
                  EchoTime=3, InversionTime=900)
    study = _study(tmp_path / "ok", ["t1", "t1ce", "t2", "flair"], extra=[(8, post3d)])
    res = cli("convert", "--dicom", study, "--out", tmp_path / "o2", "--case-id", "C")
    assert res.exit_code == 0, res.output
    assert _rows(tmp_path / "o2")["8"]["chosen_as"] == "t1ce"


def test_override_folder_with_two_series_refused(cli, tmp_path):
    study = _study(tmp_path / "study", ["t1", "t2"])
    res = cli("convert", "--out", tmp_path / "o", "--t1", study)
    assert res.exit_code == 2 and "holds 2 DICOM series" in res.output and str(study) in res.output


def test_no_input_is_a_usage_error(cli, tmp_path):
    res = cli("convert", "--out", tmp_path / "o")
    assert res.exit_code == 2 and "--dicom" in res.output
    res = cli("convert", "--dicom", tmp_path / "absent", "--out", tmp_path / "o")
    assert res.exit_code == 2 and "absent" in res.output
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not dicom")
    res = cli("convert", "--dicom", tmp_path / "empty", "--out", tmp_path / "o")
    assert res.exit_code == 2 and "no DICOM image files" in res.output
    assert not os.path.exists(tmp_path / "o")


def test_some_overrides_without_dicom_write_only_those(cli, tmp_path):
    t2 = write_series(tmp_path / "t2", 4, PROTOCOLS["t2"])[0].parent
    out = tmp_path / "out"
    res = cli("convert", "--out", out, "--case-id", "Y", "--t2", t2)
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.glob("Y_*")) == ["Y_t2.json", "Y_t2.nii.gz"]
