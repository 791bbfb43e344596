"""DICOM Segmentation (highdicom) of a native-space label map, referencing its source T1Gd series.

The SEG goes back into the PACS beside its source, so by default it keeps the source's patient and
study modules; ``deidentify=True`` blanks them (PS3.15 basic profile, UIDs retained so the
references still resolve) and then runs ``convert``'s identifier scan over every text value.
"""
from __future__ import annotations

import csv
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError

log = logging.getLogger(__name__)

CATEGORY = ("49755003", "SCT", "Morphologically abnormal structure")
# Segmented property types (DICOM CID 7168/7169 and SCT) per label name of labels.CONVENTIONS.
TYPES = {
    "NCR": ("6574001", "SCT", "Necrosis"),
    "ED": ("79654002", "SCT", "Edema"),
    "ET": ("C113842", "NCIt", "Enhancing Lesion"),
}
LABEL_TEXT = {"NCR": "necrotic / non-enhancing tumour core", "ED": "peritumoural oedema",
              "ET": "enhancing tumour"}
# PS3.15 Basic Application Confidentiality Profile attributes of the patient and study modules
# that a SEG inherits (UIDs retained: Retain UIDs option).
_BLANK = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID",
          "ReferringPhysicianName", "StudyDate", "StudyTime", "SeriesDate", "SeriesTime")
_REMOVE = ("OtherPatientIDs", "OtherPatientNames", "PatientAge", "PatientWeight", "PatientSize",
           "PatientAddress", "PatientComments", "StudyDescription", "InstitutionName",
           "InstitutionAddress", "OperatorsName", "PerformingPhysicianName", "PatientMotherBirthName",
           "EthnicGroup", "IssuerOfPatientID", "PatientBirthTime")
_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyID", "AccessionNumber",
          "ReferringPhysicianName", "StudyDate", "StudyTime")


def read_series(folder: Path, series_number: int | None = None) -> list[Any]:
    """The instances of the one image series in ``folder`` (or the one numbered ``series_number``)."""
    import pydicom

    folder = Path(folder)
    by_series: dict[str, list[Any]] = {}
    for p in sorted(q for q in folder.rglob("*") if q.is_file()):
        try:
            ds = pydicom.dcmread(p)
        except Exception:
            continue
        if "PixelData" not in ds or "ImagePositionPatient" not in ds:
            continue
        if series_number is not None and int(ds.get("SeriesNumber", -1)) != series_number:
            continue
        for key in _TYPE2:  # type-2 attributes highdicom copies: empty when the scanner left them out
            if key not in ds:
                setattr(ds, key, "")
        by_series.setdefault(ds.SeriesInstanceUID, []).append(ds)
    if len(by_series) != 1:
        raise InputError(folder, f"expected one DICOM image series, found {len(by_series)}")
    datasets = next(iter(by_series.values()))
    normal = np.cross(*np.reshape(np.asarray(datasets[0].ImageOrientationPatient, float), (2, 3)))
    return sorted(datasets, key=lambda d: float(np.dot(normal, np.asarray(d.ImagePositionPatient, float))))


def t1ce_source(converted: Path, study: Path) -> list[Any]:
    """The T1Gd series of a study folder, found through ``convert``'s series.csv (series number)."""
    with open(Path(converted) / "series.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("chosen_as") == "t1ce"]
    if len(rows) != 1:
        raise InputError(Path(converted) / "series.csv", "no single series chosen as t1ce")
    return read_series(study, int(rows[0]["series_number"]))


def _slice_indices(ds: Any, inv_affine: np.ndarray) -> np.ndarray:
    """NIfTI voxel indices (rows, cols, 3) of every pixel of one instance."""
    iop = np.asarray(ds.ImageOrientationPatient, float)
    row_dir, col_dir = iop[:3], iop[3:]  # along a row (column index grows), along a column
    dr, dc = (float(v) for v in ds.PixelSpacing)
    r, c = np.meshgrid(np.arange(ds.Rows), np.arange(ds.Columns), indexing="ij")
    lps = (np.asarray(ds.ImagePositionPatient, float)[None, None]
           + c[..., None] * dc * row_dir + r[..., None] * dr * col_dir)
    ras = lps * np.array([-1.0, -1.0, 1.0])
    return ras @ inv_affine[:3, :3].T + inv_affine[:3, 3]


def frames_from_nifti(labels: np.ndarray, affine: np.ndarray, datasets: list[Any]) -> np.ndarray:
    """Resample nothing: pick, for each source pixel, the label voxel at the same point (grids must match)."""
    inv = np.linalg.inv(affine)
    out = np.zeros((len(datasets), datasets[0].Rows, datasets[0].Columns), labels.dtype)
    for k, ds in enumerate(datasets):
        idx = _slice_indices(ds, inv)
        near = np.rint(idx)
        if np.abs(idx - near).max() > 0.05 or (near < 0).any() or (near >= np.array(labels.shape[:3])).any():
            raise ValueError(f"instance {ds.SOPInstanceUID} does not lie on the segmentation's grid")
        n = near.astype(int)
        out[k] = labels[n[..., 0], n[..., 1], n[..., 2]]
    return out


def _code(t: tuple[str, str, str]) -> Any:
    from highdicom.sr import CodedConcept

    return CodedConcept(value=t[0], scheme_designator=t[1], meaning=t[2])


def build_seg(labels: np.ndarray, affine: np.ndarray, datasets: list[Any], convention: dict[str, int],
              model_id: str, version: str, deidentify: bool = False) -> Any:
    """A BINARY highdicom Segmentation with one segment per label of the convention (empty ones too)."""
    import highdicom as hd

    frames = frames_from_nifti(labels, affine, datasets)
    names = [n for n in convention if n not in getattr(convention, "not_written", ())]  # 2024's RC is never written
    mask = np.stack([frames == convention[n] for n in names], axis=-1)
    algo = hd.AlgorithmIdentificationSequence(name="gliocascade", version=version,
                                              family=_code(("123110", "DCM", "Artificial Intelligence")),
                                              parameters={"model": model_id})
    segments = [hd.seg.SegmentDescription(
        segment_number=i + 1, segment_label=n, segmented_property_category=_code(CATEGORY),
        segmented_property_type=_code(TYPES[n]), algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algo) for i, n in enumerate(names)]
    src = datasets[0]
    seg = hd.seg.Segmentation(
        source_images=datasets, pixel_array=mask, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segments, series_instance_uid=hd.UID(), series_number=int(src.get("SeriesNumber", 0)) + 1000,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="gliocascade",
        manufacturer_model_name=f"gliocascade {model_id}", software_versions=version,
        device_serial_number="0", series_description="gliocascade tumour segmentation",
        omit_empty_frames=False)
    if deidentify:
        deidentify_seg(seg, datasets)
    return seg


def deidentify_seg(seg: Any, datasets: list[Any]) -> None:
    """PS3.15 basic profile with Retain UIDs on the inherited modules, then convert's identifier scan."""
    from .deid import identifiers_of

    for key in _BLANK:
        if key in seg:
            setattr(seg, key, "")
    for key in _REMOVE:
        if key in seg:
            delattr(seg, key)
    seg.ContentDate, seg.ContentTime = "19000101", "000000"  # type 1: the profile's dummy value, not blank
    seg.PatientIdentityRemoved = "YES"
    seg.DeidentificationMethod = "PS3.15 Basic Application Confidentiality Profile; Retain UIDs"
    ids = identifiers_of(datasets)
    hits: list[str] = []

    def scan(ds: Any) -> None:
        for elem in ds:
            if elem.VR == "SQ":
                for item in elem.value:
                    scan(item)
            elif elem.VR in ("PN", "LO", "SH", "LT", "ST", "UT", "DA", "CS", "UC") and elem.value:
                if ids.found_in(str(elem.value)):
                    hits.append(elem.keyword)
                    elem.value = ""
    scan(seg)
    if hits:
        log.info("identifier scan blanked %s", ", ".join(sorted(set(hits))))


def write_dicom_seg(seg_nifti: Path, source: Path | list[Any], out: Path, convention: dict[str, int],
                    model_id: str, version: str, deidentify: bool = False) -> Path:
    """Write ``out`` (temp file then rename: never half-written)."""
    import nibabel as nib

    img = nib.load(str(seg_nifti))
    labels = np.asarray(img.dataobj).astype(np.int16)
    datasets = read_series(Path(source)) if isinstance(source, (str, Path)) else source
    try:
        seg = build_seg(labels, img.affine, datasets, convention, model_id, version, deidentify)
    except ValueError as exc:
        raise InputError(seg_nifti, f"cannot write DICOM-SEG: {exc}") from exc
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".dcm.part")
    os.close(fd)
    try:
        seg.save_as(tmp)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    log.info("wrote DICOM-SEG %s (%d source instances)", out, len(datasets))
    return out
