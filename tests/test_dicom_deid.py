"""No patient identifier reaches any output of `convert` (names planted in real DICOM copies)."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from gliocascade.deid import Identifiers, safe_name, scrub_sidecar
from gliocascade.dicom_synth import PROTOCOLS, write_study

PLANTED = {
    "PatientName": "Quixotewell^Dulcinea",
    "PatientID": "ZX4471QQ",
    "PatientBirthDate": "19310517",
    "AccessionNumber": "ACC99127",
    "ReferringPhysicianName": "Strangelove^Merkwuerdig",
    "InstitutionName": "Grimsby Lighthouse Clinic",
}
# free-text fields where names slip in at the console
FREE_TEXT = {"StudyDescription": "Brain Quixotewell", "ImageComments": "for Dulcinea ZX4471QQ"}
NEEDLES = ["Quixotewell", "Dulcinea", "ZX4471QQ", "19310517", "1931-05-17", "ACC99127", "Strangelove",
           "Merkwuerdig", "Grimsby Lighthouse", "Prisma Health Richland", "Columbia,SC"]


def _all_output_text(out: Path) -> dict[Path, bytes]:
    texts = {}
    for p in out.rglob("*"):
        if p.is_file():
            raw = p.read_bytes()
            texts[p] = gzip.decompress(raw) if p.name.endswith(".gz") else raw
    return texts


def _assert_clean(out: Path) -> int:
    files = _all_output_text(out)
    assert files
    for path, content in files.items():
        low = content.lower()
        for needle in NEEDLES:
            assert needle.lower().encode() not in low, f"{needle} found in {path}"
            assert needle.lower() not in str(path.relative_to(out)).lower()
    return len(files)


def test_planted_identifiers_never_reach_outputs(cli, data_dir, tmp_path):
    import pydicom

    src = data_dir / "dicom" / "dcm_qa_decubitus_HFS" / "In" / "HFS" / "3_t1_fl2d_sag"
    study = tmp_path / "study" / "t1"
    study.mkdir(parents=True)
    for f in sorted(src.glob("*.dcm")):
        ds = pydicom.dcmread(f)
        for key, value in {**PLANTED, **FREE_TEXT}.items():
            setattr(ds, key, value)
        ds.save_as(study / f.name)
    out = tmp_path / "out"
    res = cli("convert", "--dicom", study.parent, "--out", out)
    assert res.exit_code == 0, res.output
    assert _assert_clean(out) >= 4  # series NIfTI + JSON, series.csv, provenance
    sidecar = json.loads(next((out / "series").glob("*.json")).read_text())
    # acquisition parameters survive
    assert sidecar["RepetitionTime"] == pytest.approx(0.3) and sidecar["EchoTime"] == pytest.approx(0.00246)
    assert sidecar["SeriesDescription"] == "t1_fl2d_sag" and sidecar["MagneticFieldStrength"] == 3
    for key in ("InstitutionName", "InstitutionAddress", "DeviceSerialNumber", "StationName",
                "StudyDescription", "ProcedureStepDescription", "ImageComments"):
        assert key not in sidecar


def test_identifier_in_series_description_kept_out_of_names(cli, tmp_path):
    t2 = dict(PROTOCOLS["t2"], SeriesDescription="T2 Quixotewell")
    study = write_study(tmp_path / "study", [(2, PROTOCOLS["t1"]), (3, PROTOCOLS["t1ce"]), (4, t2),
                                              (5, PROTOCOLS["flair"])])
    for p in study.rglob("*.dcm"):
        import pydicom

        ds = pydicom.dcmread(p)
        ds.PatientName = PLANTED["PatientName"]
        ds.PatientID = PLANTED["PatientID"]
        ds.save_as(p)
    out = tmp_path / "out"
    res = cli("convert", "--dicom", study, "--out", out, "--case-id", "P1")
    assert res.exit_code == 0, res.output
    assert (out / "series" / "4_series.nii.gz").is_file()
    _assert_clean(out)


def test_scrub_sidecar_rules():
    ids = Identifiers()
    ids.add_name("Doe^Janeth")
    ids.add_value("A123456")
    meta = {"PatientName": "x", "AcquisitionDateTime": "2020-01-01T10:00", "StudyInstanceUID": "1.2",
            "EchoTime": 0.1, "PatientPosition": "HFS", "ProtocolName": "janeth t1", "Notes": ["id A123456"],
            "SeriesDescription": "T1"}
    clean, removed = scrub_sidecar(meta, ids)
    assert clean == {"EchoTime": 0.1, "PatientPosition": "HFS", "SeriesDescription": "T1"}
    assert set(removed) == {"PatientName", "AcquisitionDateTime", "StudyInstanceUID", "ProtocolName", "Notes"}
    assert safe_name("T1 Doe post", ids) == "series" and safe_name("T1 / post+C", ids) == "T1_post+C"
