"""Small synthetic MR DICOM series (pydicom) for tests of conversion and modality identification.

Real DICOM studies cannot ship with the project; these files carry just the tags that scanners
write and that ``convert`` reads, with a deterministic pixel pattern so a test can tell which
series ended up in which output file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

# Typical tag values of each structural sequence (TR/TE/TI in ms).
PROTOCOLS: dict[str, dict[str, Any]] = {
    "t1": dict(SeriesDescription="AX T1 SE", ScanningSequence="SE", SequenceName="se2d1",
               RepetitionTime=550, EchoTime=10, MRAcquisitionType="2D"),
    "t1ce": dict(SeriesDescription="AX T1 SE", ScanningSequence="SE", SequenceName="se2d1",
                 RepetitionTime=550, EchoTime=10, MRAcquisitionType="2D", ContrastBolusAgent="Gadobutrol"),
    "t2": dict(SeriesDescription="AX T2 TSE", ScanningSequence="SE", SequenceName="tse2d1_15",
               RepetitionTime=4000, EchoTime=100, MRAcquisitionType="2D"),
    "flair": dict(SeriesDescription="AX FLAIR", ScanningSequence="SE\\IR", SequenceName="tir2d1_21",
                  RepetitionTime=9000, EchoTime=120, InversionTime=2500, MRAcquisitionType="2D"),
}
PATIENT = dict(PatientName="Synthetic^Case", PatientID="SYN0001", PatientBirthDate="19700101")


def write_series(folder: Path, number: int, tags: dict[str, Any], shape: tuple[int, int, int] = (16, 16, 8),
                 spacing: tuple[float, float, float] = (1.0, 1.0, 3.0), study_uid: str | None = None,
                 patient: dict[str, str] | None = None, pixels: np.ndarray | None = None,
                 affine: np.ndarray | None = None) -> list[Path]:
    """Write one axial single-frame series (one file per slice); voxel value = 100*number + slice.

    With ``pixels`` (a NIfTI-ordered i,j,k array) and its RAS ``affine``, the series carries those
    voxels on that (possibly oblique) grid instead: pixel (row r, column c) of slice k = voxel (c, r, k).
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows, cols, nslices = shape
    if pixels is not None:
        cols, rows, nslices = pixels.shape[:3]
        lps = np.diag([-1.0, -1.0, 1.0]) @ np.asarray(affine, float)[:3]
        zooms = np.linalg.norm(lps[:, :3], axis=0)
    series_uid = generate_uid(entropy_srcs=[str(folder), str(number), "series"])
    study_uid = study_uid or generate_uid(entropy_srcs=[str(folder.parent), "study"])
    frame_uid = generate_uid(entropy_srcs=[study_uid, "frame"])
    paths = []
    for k in range(nslices):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[series_uid, str(k)])
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.Modality = "MR"
        ds.Manufacturer = "SIEMENS"
        ds.MagneticFieldStrength = 3
        ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = "20200102"
        ds.StudyTime = ds.SeriesTime = "101010"
        ds.AcquisitionTime = f"1010{10 + number:02d}"
        for key, value in {**PATIENT, **(patient or {})}.items():
            setattr(ds, key, value)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
        ds.SeriesNumber = number
        ds.AcquisitionNumber = 1
        ds.InstanceNumber = k + 1
        for key, value in tags.items():
            setattr(ds, key, value)
        if pixels is None:
            ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
            ds.ImagePositionPatient = [-cols * spacing[1] / 2, -rows * spacing[0] / 2, k * spacing[2]]
            ds.SliceLocation = k * spacing[2]
            ds.PixelSpacing = [spacing[0], spacing[1]]
            ds.SliceThickness = ds.SpacingBetweenSlices = spacing[2]
        else:
            ds.ImageOrientationPatient = [f"{v:.10f}" for v in
                                          (*(lps[:, 0] / zooms[0]), *(lps[:, 1] / zooms[1]))]
            ds.ImagePositionPatient = [f"{v:.8f}"[:16] for v in lps[:, 3] + k * lps[:, 2]]
            ds.PixelSpacing = [f"{zooms[1]:.10f}", f"{zooms[0]:.10f}"]
            ds.SliceThickness = ds.SpacingBetweenSlices = f"{zooms[2]:.10f}"
        ds.Rows, ds.Columns = rows, cols
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        if pixels is None:
            plane = np.full((rows, cols), 100 * number + k, dtype=np.int16)
            plane[0, 0] = 0  # a non-constant slice (some readers rescale constant images)
        else:
            plane = np.ascontiguousarray(np.clip(np.rint(pixels[:, :, k].T), -32768, 32767).astype(np.int16))
        ds.PixelData = plane.tobytes()
        path = folder / f"IM{k + 1:04d}.dcm"
        ds.save_as(str(path), enforce_file_format=True)
        paths.append(path)
    return paths


def write_study(folder: Path, series: list[tuple[int, dict[str, Any]]], **kw: Any) -> Path:
    """Write several series into ``folder/<number>/`` under one study; returns ``folder``."""
    from pydicom.uid import generate_uid

    folder = Path(folder)
    study_uid = generate_uid(entropy_srcs=[str(folder), "study"])
    for number, tags in series:
        write_series(folder / f"{number:03d}", number, tags, study_uid=study_uid, **kw)
    return folder
