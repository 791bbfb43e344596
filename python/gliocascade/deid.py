"""Removing patient identifiers from dcm2niix sidecars and NIfTI headers.

dcm2niix's ``-ba y`` drops names, IDs and dates, but keeps institution, station, device serial and
free-text fields that often carry names (study or procedure descriptions). Two layers follow it:
a list of keys that never leave (with patterns for dates, UIDs and people), and a scan of every
remaining value for the identifiers actually found in the study's DICOM headers.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterable

import nibabel as nib
import numpy as np

# Keys removed from every sidecar, whatever their value.
SCRUB_KEYS = {
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge", "PatientWeight",
    "PatientSize", "PatientComments", "OtherPatientIDs", "OtherPatientNames", "PatientAddress",
    "AccessionNumber", "StudyID", "StudyDescription", "ProcedureStepDescription", "StudyComments",
    "ImageComments", "RequestedProcedureDescription", "PerformedProcedureStepDescription",
    "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "StationName",
    "DeviceSerialNumber", "ReferringPhysicianName", "PerformingPhysicianName", "OperatorsName",
    "PhysiciansOfRecord", "RequestingPhysician", "NameOfPhysiciansReadingStudy",
}
SCRUB_PATTERNS = re.compile(r"Date|UID$|Physician|Operator|Institution|Serial|Accession|^Patient(?!Position)")
# Enumerated codes that cannot carry a name (a name-part scan would only give false alarms).
CODE_KEYS = {"PatientPosition", "Modality", "MRAcquisitionType", "ImageType", "PhaseEncodingDirection",
             "ScanningSequence", "SequenceVariant", "ScanOptions", "ConversionSoftware",
             "ConversionSoftwareVersion", "BidsGuess"}
NIFTI_TEXT_FIELDS = ("descrip", "aux_file", "db_name", "intent_name")


class Identifiers:
    """The identifying strings of a study: whole values (IDs, dates, full names) and name parts."""

    def __init__(self) -> None:
        self.whole: set[str] = set()
        self.parts: set[str] = set()

    def add_name(self, value: Any) -> None:
        text = str(value or "").strip()
        if not text:
            return
        if len(text) >= 3:
            self.whole.add(text.lower())
            self.whole.add(text.replace("^", " ").strip().lower())
        for part in re.split(r"[\^\s,.]+", text):
            if len(part) >= 3:
                self.parts.add(part.lower())

    def add_value(self, value: Any, date: bool = False) -> None:
        text = str(value or "").strip()
        if len(text) < 3:
            return
        if text.isdigit() and len(text) < 6:
            self.parts.add(text)  # short numbers: whole tokens only, not inside other numbers
        else:
            self.whole.add(text.lower())
        if date and re.fullmatch(r"\d{8}", text):
            self.whole.add(f"{text[:4]}-{text[4:6]}-{text[6:]}")

    def found_in(self, text: str) -> str | None:
        """The identifier that occurs in ``text`` (None when clean)."""
        low = text.lower()
        for w in self.whole:
            if w in low:
                return w
        tokens = set(re.findall(r"[a-z0-9]+", low))
        hit = tokens & self.parts
        return next(iter(sorted(hit)), None)

    def redact(self, text: str) -> str:
        """``text`` with every identifier replaced by ``[removed]`` (for messages and tables)."""
        for w in sorted(self.whole | self.parts, key=len, reverse=True):
            if w in self.parts:
                text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(w)}(?![A-Za-z0-9])", "[removed]", text, flags=re.I)
            else:
                text = re.sub(re.escape(w), "[removed]", text, flags=re.I)
        return text

    def __bool__(self) -> bool:
        return bool(self.whole or self.parts)


def identifiers_of(datasets: Iterable[Any]) -> Identifiers:
    """Collect the identifying values of pydicom datasets (names, IDs, birth date, accession)."""
    ids = Identifiers()
    for ds in datasets:
        for key in ("PatientName", "OtherPatientNames", "ReferringPhysicianName", "PerformingPhysicianName",
                    "OperatorsName", "PatientMotherBirthName"):
            value = ds.get(key)
            for v in (value if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue"
                      else [value]):
                ids.add_name(v)
        for key in ("PatientID", "OtherPatientIDs", "AccessionNumber", "PatientAddress", "StudyID"):
            ids.add_value(ds.get(key))
        ids.add_value(ds.get("PatientBirthDate"), date=True)
    return ids


def _text_of(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


def scrub_sidecar(meta: dict[str, Any], ids: Identifiers) -> tuple[dict[str, Any], list[str]]:
    """(clean copy of a sidecar, removed keys): listed keys, key patterns, values holding identifiers."""
    clean: dict[str, Any] = {}
    removed: list[str] = []
    for key, value in meta.items():
        if key in SCRUB_KEYS or SCRUB_PATTERNS.search(key):
            removed.append(key)
            continue
        if key not in CODE_KEYS and ids and ids.found_in(_text_of(value)):
            removed.append(key)
            continue
        clean[key] = value
    return clean, removed


def scrub_sidecar_file(path: Path, ids: Identifiers) -> list[str]:
    """Rewrite a JSON sidecar in place without identifiers; returns the removed keys."""
    meta = json.loads(path.read_text())
    clean, removed = scrub_sidecar(meta, ids)
    path.write_text(json.dumps(clean, indent=2) + "\n")
    return removed


def scrub_nifti_header(path: Path, ids: Identifiers) -> list[str]:
    """Blank NIfTI text fields that hold an identifier (rewrites the file only then)."""
    if not ids:
        return []
    img = nib.load(str(path))
    hdr = img.header
    leaks = [f for f in NIFTI_TEXT_FIELDS
             if ids.found_in(bytes(hdr[f]).decode("latin-1", "replace"))]
    if img.header.extensions:
        leaks.append("extensions")
    if leaks:
        new = nib.Nifti1Image(np.asanyarray(img.dataobj.get_unscaled()), None, hdr.copy())
        for f in leaks:
            if f != "extensions":
                new.header[f] = b""
        new.header.extensions.clear()
        nib.save(new, str(path))
    return leaks


def safe_name(text: str, ids: Identifiers, fallback: str = "series") -> str:
    """A file-name fragment from free text (letters, digits, ``.+-_``), never carrying an identifier."""
    if not text or ids.found_in(text):
        return fallback
    name = re.sub(r"[^A-Za-z0-9.+-]+", "_", text).strip("_.")[:60]
    return name or fallback
