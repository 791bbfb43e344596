"""`convert` on real DICOM series: reference conversions in world space, missing slices refused."""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from gliocascade.dicom import check_slices
from gliocascade.dicom_synth import PROTOCOLS, write_series

# study folder -> {series number: reference conversion} (see the data README for which is which)
REFERENCES = {
    "dcm_qa": {"6": "Ref/ax_asc_35sl_6.nii", "16": "Ref/cor_asc_35sl_16.nii", "22": "Ref/sag_asc_35sl_22.nii"},
    "dcm_qa_12bit": {"2": "Ref/2.nii", "3": "Ref/3.nii", "4": "Ref/4.nii"},
    "dcm_qa_decubitus_HFS": {
        "3": "Ref_regenerated_dcm2niix_v1.0.20260724/t1_fl2d_sag_20220407150138.nii.gz"},
    "dcm_qa_nih": {"3": "Ref/EPI_PE=AP_3.nii", "4": "Ref/DCM2NIIX_regression_test_4.nii"},
}
DECUBITUS_SERIES = "dcm_qa_decubitus_HFS/In/HFS/3_t1_fl2d_sag"


def _world(img: nib.Nifti1Image) -> tuple[np.ndarray, np.ndarray]:
    canon = nib.as_closest_canonical(img)
    return np.asanyarray(canon.dataobj), canon.affine


@pytest.mark.parametrize("study", sorted(REFERENCES))
def test_every_series_matches_reference_in_world_space(cli, data_dir, tmp_path, study):
    root = data_dir / "dicom" / study
    out = tmp_path / "out"
    res = cli("convert", "--dicom", root / "In", "--out", out)
    assert res.exit_code == 0, res.output
    with open(out / "series.csv") as fh:
        rows = {r["series_number"]: r for r in csv.DictReader(fh)}
    assert set(rows) == set(REFERENCES[study])  # every series converted, nothing extra
    for number, ref in REFERENCES[study].items():
        assert rows[number]["status"] == "converted"
        ours_path = out / rows[number]["nifti"]
        assert ours_path.name.startswith(f"{number}_") and ours_path.name.endswith(".nii.gz")
        ours, ours_aff = _world(nib.load(ours_path))
        theirs, theirs_aff = _world(nib.load(root / ref))
        assert ours.shape == theirs.shape
        np.testing.assert_allclose(ours_aff, theirs_aff, rtol=0, atol=1e-4)
        np.testing.assert_array_equal(ours, theirs)
        assert (out / rows[number]["nifti"].replace(".nii.gz", ".json")).is_file()


def _copy_without(src: Path, dst: Path, drop_index: int) -> str:
    files = sorted(p for p in src.iterdir() if p.suffix == ".dcm")
    dst.mkdir(parents=True)
    for i, f in enumerate(files):
        if i != drop_index:
            shutil.copy(f, dst / f.name)
    return files[drop_index].name


def test_series_with_a_missing_slice_is_refused(cli, data_dir, tmp_path):
    study = tmp_path / "study"
    _copy_without(data_dir / "dicom" / DECUBITUS_SERIES, study / "t1", drop_index=17)
    out = tmp_path / "out"
    res = cli("convert", "--dicom", study, "--out", out)
    assert res.exit_code == 2
    msg = res.output.strip()
    assert len(msg.splitlines()) == 1 and msg.startswith(f"error: {study / 't1'}")
    assert "series 3 't1_fl2d_sag'" in msg and "missing" in msg
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["study"]


def test_missing_slice_refused_also_as_override(cli, tmp_path):
    folder = tmp_path / "t1"
    write_series(folder, 2, PROTOCOLS["t1"], shape=(8, 8, 6))
    (folder / "IM0003.dcm").unlink()
    res = cli("convert", "--t1", folder, "--out", tmp_path / "out")
    assert res.exit_code == 2 and "series 2" in res.output and "instance number(s) 3 missing" in res.output


def test_series_with_burned_in_annotation_is_refused(cli, tmp_path):
    """Header identifiers can be scrubbed, pixel text cannot: such a series is not converted."""
    import pydicom

    folder = tmp_path / "t1"
    write_series(folder, 2, PROTOCOLS["t1"], shape=(8, 8, 6))
    clean = cli("convert", "--t1", folder, "--out", tmp_path / "clean")
    assert clean.exit_code == 0, clean.output  # the control: the same series converts
    one = sorted(folder.iterdir())[2]
    ds = pydicom.dcmread(str(one))
    ds.BurnedInAnnotation = "YES"
    ds.save_as(str(one))
    res = cli("convert", "--t1", folder, "--out", tmp_path / "out")
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1
    assert "series 2" in res.output and "BurnedInAnnotation is YES" in res.output
    assert not (tmp_path / "out").exists()


def _slices(positions, instances=None, stated=None):
    iop = [1, 0, 0, 0, 1, 0]
    instances = instances or list(range(1, len(positions) + 1))
    return [(i, [0.0, 0.0, z], iop, 1, stated) for i, z in zip(instances, positions)]


def test_check_slices_rules():
    assert check_slices(_slices([0, 3, 6, 9])) is None
    assert "spacing varies" in check_slices(_slices([0, 3, 9, 12], instances=[1, 2, 3, 4]))
    assert "instance number(s) 3 missing" in check_slices(_slices([0, 3, 9, 12], instances=[1, 2, 4, 5]))
    # a 4D series (2 volumes of 3 slices) missing one image
    four_d = _slices([0, 3, 6, 0, 3, 6])[:5]
    assert "unequal numbers of images" in check_slices(four_d)
    # the last slice gone: spacing and numbering still look fine, the stated count does not
    assert "ImagesInAcquisition says 5" in check_slices(_slices([0, 3, 6, 9], stated=5))
    assert check_slices(_slices([0, 3, 6, 9, 12], stated=5)) is None
    assert check_slices(_slices([0])) is None


def test_4d_series_missing_one_image_is_refused(cli, data_dir, tmp_path):
    study = tmp_path / "study"
    _copy_without(data_dir / "dicom" / "dcm_qa_nih" / "In" / "20180918GE" / "mr_0004", study / "epi", drop_index=40)
    res = cli("convert", "--dicom", study, "--out", tmp_path / "out")
    assert res.exit_code == 2 and "series 4" in res.output and "missing" in res.output
    assert not (tmp_path / "out").exists()


def test_broken_series_outside_the_case_is_listed_not_fatal(cli, tmp_path):
    from gliocascade.dicom_synth import write_study

    dwi = dict(SeriesDescription="ep2d_diff", ScanningSequence="EP", RepetitionTime=5000, EchoTime=90)
    study = write_study(tmp_path / "study", [(2, PROTOCOLS["t1"]), (3, PROTOCOLS["t1ce"]), (4, PROTOCOLS["t2"]),
                                              (5, PROTOCOLS["flair"]), (6, dwi)])
    (study / "006" / "IM0004.dcm").unlink()
    out = tmp_path / "out"
    res = cli("convert", "--dicom", study, "--out", out, "--case-id", "C")
    assert res.exit_code == 0, res.output
    with open(out / "series.csv") as fh:
        rows = {r["series_number"]: r for r in csv.DictReader(fh)}
    assert rows["6"]["status"] == "refused" and "instance number(s) 4 missing" in rows["6"]["reason"]
    assert rows["6"]["nifti"] == "" and not list((out / "series").glob("6_*"))
    # without --case-id every series is the job: the same study fails
    res = cli("convert", "--dicom", study, "--out", tmp_path / "out2")
    assert res.exit_code == 2 and "series 6" in res.output


def test_conversion_is_byte_reproducible(cli, tmp_path):
    from gliocascade.dicom_synth import write_study

    study = write_study(tmp_path / "study", [(2, PROTOCOLS["t1"]), (3, PROTOCOLS["flair"])])
    outs = []
    for k in range(2):
        out = tmp_path / f"out{k}"
        assert cli("convert", "--dicom", study, "--out", out).exit_code == 0
        outs.append({p.relative_to(out): p.read_bytes() for p in (out / "series").iterdir()})
    assert outs[0] == outs[1] and len(outs[0]) == 4
