"""DICOM-SEG: the native labels as a highdicom Segmentation on the source T1Gd series.

One real-data `run` (4-series DICOM study written from the raw TCGA-FG-6692 arrays) is shared
by the module; de-identification is checked with the standalone writer on that run's outputs.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from gliocascade import dicom_seg
from gliocascade.dicom_synth import PROTOCOLS, write_series
from gliocascade.labels import CONVENTIONS

C2019 = CONVENTIONS["2019"]
PLANTED = "Plantedname^Zebedee"


def _read_back(path: Path, datasets: list) -> np.ndarray:
    """Labels (frames, rows, cols) of the SEG, one frame per source instance, in their order."""
    import highdicom as hd

    seg = hd.seg.segread(str(path))
    px = seg.get_pixels_by_source_instance(source_sop_instance_uids=[d.SOPInstanceUID for d in datasets],
                                           combine_segments=True)
    lut = np.array([0, *(C2019[s.SegmentLabel] for s in seg.SegmentSequence)])
    return lut[px]


def _nifti_of_series(folder: Path, dest: Path):
    """The series as NIfTI (SimpleITK's reader: an independent geometry path)."""
    import SimpleITK as sitk

    r = sitk.ImageSeriesReader()
    r.SetFileNames(r.GetGDCMSeriesFileNames(str(folder)))
    sitk.WriteImage(r.Execute(), str(dest))
    return nib.load(str(dest)), sitk.GetArrayFromImage(sitk.ReadImage(str(dest)))


def _dciodvfy_errors(path: Path) -> list[str]:
    if not Path("/usr/bin/dciodvfy").exists() and not shutil.which("dciodvfy"):
        pytest.skip("dciodvfy (dicom3tools) not installed")
    out = subprocess.run([shutil.which("dciodvfy") or "/usr/bin/dciodvfy", str(path)], capture_output=True,
                         text=True)
    return [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]


def _roundtrip(folder: Path, tmp: Path, seed: int) -> tuple[np.ndarray, np.ndarray, Path]:
    ref, _ = _nifti_of_series(folder, tmp / "ref.nii.gz")
    labels = np.random.default_rng(seed).choice([0, 1, 2, 4], size=ref.shape[:3]).astype(np.int16)
    nib.save(nib.Nifti1Image(labels, ref.affine), str(tmp / "seg.nii.gz"))
    out = dicom_seg.write_dicom_seg(tmp / "seg.nii.gz", folder, tmp / "seg.dcm", C2019, "m", "0")
    import SimpleITK as sitk

    expect = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp / "seg.nii.gz")))  # (slice, row, col): DICOM order
    return _read_back(out, dicom_seg.read_series(folder)), expect, out


def test_synthetic_axial_series_roundtrips_voxel_for_voxel(tmp_path):
    write_series(tmp_path / "s", 3, PROTOCOLS["t1ce"], shape=(12, 10, 6))
    back, expect, out = _roundtrip(tmp_path / "s", tmp_path, 0)
    np.testing.assert_array_equal(back, expect)
    assert not _dciodvfy_errors(out)


def test_decubitus_sagittal_series_roundtrips_voxel_for_voxel(data_dir, tmp_path):
    """Oblique/decubitus geometry (sagittal, patient on the side): SimpleITK's grid vs the SEG's frames."""
    folder = data_dir / "dicom" / "dcm_qa_decubitus_HFS" / "In" / "HFS" / "3_t1_fl2d_sag"
    back, expect, out = _roundtrip(folder, tmp_path, 1)
    assert back.shape == expect.shape and back.any()
    np.testing.assert_array_equal(back, expect)
    assert not _dciodvfy_errors(out)


def test_off_grid_segmentation_is_refused_without_a_file(tmp_path):
    write_series(tmp_path / "s", 3, PROTOCOLS["t1ce"], shape=(8, 8, 4))
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 4), np.int16), np.diag([2.0, 2.0, 2.0, 1.0])),
             str(tmp_path / "seg.nii.gz"))
    from gliocascade.errors import InputError

    with pytest.raises(InputError, match="seg.nii.gz.*grid"):
        dicom_seg.write_dicom_seg(tmp_path / "seg.nii.gz", tmp_path / "s", tmp_path / "o.dcm", C2019, "m", "0")
    assert list(tmp_path.glob("o.dcm*")) == []


@pytest.fixture(scope="module")
def dicom_run(data_dir, random_tiny_model, tmp_path_factory):
    from click.testing import CliRunner

    from gliocascade.cli import main

    tmp = tmp_path_factory.mktemp("dicomseg")
    native = data_dir / "native" / "TCGA-FG-6692"
    study = tmp / "study"
    for number, (m, f) in enumerate([("t1", "t1"), ("t1ce", "t1c"), ("t2", "t2"), ("flair", "flair")], start=2):
        img = nib.load(str(native / f"TCGA-FG-6692_{f}.nii.gz"))
        write_series(study / f"{number:03d}", number, PROTOCOLS[m], study_uid="1.2.826.0.1.3680043.8.498.1",
                     patient={"PatientName": PLANTED, "PatientID": "PID778899"},
                     pixels=np.asarray(img.dataobj), affine=img.affine)
    sheet = tmp / "sheet.csv"
    sheet.write_text(f"case_id,dicom_dir\nDCM,{study}\n")
    out = tmp / "out"
    res = CliRunner().invoke(main, ["run", "--samplesheet", str(sheet), "--model", str(random_tiny_model),
                                    "--out", str(out), "--tta", "1", "--device", "cpu",
                                    "--atlas", str(data_dir / "atlas"), "--atlas-via", "t1"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return study, out / "DCM"


def test_run_writes_seg_equal_to_native_labels(dicom_run):
    import pydicom

    study, case = dicom_run
    datasets = dicom_seg.read_series(study / "003")
    native = nib.load(str(case / "DCM_seg_native.nii.gz"))
    expect = dicom_seg.frames_from_nifti(np.asarray(native.dataobj).astype(np.int16), native.affine, datasets)
    assert (np.asarray(native.dataobj) > 0).any()  # random weights still label something: a real check
    np.testing.assert_array_equal(_read_back(case / "DCM_seg.dcm", datasets), expect)
    seg = pydicom.dcmread(case / "DCM_seg.dcm")
    refs = {i.ReferencedSOPInstanceUID for s in seg.ReferencedSeriesSequence for i in s.ReferencedInstanceSequence}
    assert refs == {d.SOPInstanceUID for d in datasets}
    assert seg.FrameOfReferenceUID == datasets[0].FrameOfReferenceUID
    src = datasets[0]
    for key in ("PatientName", "PatientID", "PatientBirthDate", "StudyInstanceUID", "StudyDate"):
        assert seg.get(key) == src.get(key), key
    types = {s.SegmentLabel: s.SegmentedPropertyTypeCodeSequence[0].CodeValue for s in seg.SegmentSequence}
    assert types == {"NCR": "6574001", "ED": "79654002", "ET": "C113842"}
    assert {s.SegmentedPropertyCategoryCodeSequence[0].CodeValue for s in seg.SegmentSequence} == {"49755003"}
    algo = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert algo.AlgorithmName == "gliocascade"
    assert not _dciodvfy_errors(case / "DCM_seg.dcm")


def test_deidentified_seg_drops_the_planted_name_and_keeps_references(dicom_run, tmp_path):
    import pydicom

    study, case = dicom_run
    out = dicom_seg.write_dicom_seg(case / "DCM_seg_native.nii.gz", study / "003", tmp_path / "deid.dcm", C2019,
                                    "m", "0", deidentify=True)
    raw = out.read_bytes().lower()
    for part in (b"plantedname", b"zebedee", b"pid778899"):
        assert part not in raw
    seg = pydicom.dcmread(out)
    datasets = dicom_seg.read_series(study / "003")
    refs = {i.ReferencedSOPInstanceUID for s in seg.ReferencedSeriesSequence for i in s.ReferencedInstanceSequence}
    assert refs == {d.SOPInstanceUID for d in datasets}
    assert seg.StudyInstanceUID == datasets[0].StudyInstanceUID and seg.PatientIdentityRemoved == "YES"
    assert not _dciodvfy_errors(out)


def test_dicom_seg_command_writes_and_refuses(tmp_path, cli):
    write_series(tmp_path / "s", 3, PROTOCOLS["t1ce"], shape=(10, 8, 5))
    ref, _ = _nifti_of_series(tmp_path / "s", tmp_path / "ref.nii.gz")
    labels = np.zeros(ref.shape[:3], np.int16)  # an empty result still gives a valid SEG
    nib.save(nib.Nifti1Image(labels, ref.affine), str(tmp_path / "seg.nii.gz"))
    res = cli("dicom-seg", "--seg", tmp_path / "seg.nii.gz", "--source", tmp_path / "s", "--out", tmp_path / "o.dcm")
    assert res.exit_code == 0, res.output
    assert not _read_back(tmp_path / "o.dcm", dicom_seg.read_series(tmp_path / "s")).any()
    assert not _dciodvfy_errors(tmp_path / "o.dcm")
    bad = cli("dicom-seg", "--seg", tmp_path / "seg.nii.gz", "--source", tmp_path / "empty", "--out",
              tmp_path / "p.dcm")
    assert bad.exit_code == 2 and "empty" in bad.output and not (tmp_path / "p.dcm").exists()
