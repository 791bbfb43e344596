"""DICOM study -> NIfTI with dcm2niix: series checks, modality identification, de-identification.

Every series is checked for missing slices before conversion (a gap would otherwise be hidden
by a wrong slice spacing), converted on its own (so dcm2niix's warnings belong to one series),
stripped of identifiers, identified as T1/T1Gd/T2/FLAIR/other, and listed in ``series.csv`` with
the reason. Everything is written to a temporary folder beside ``--out`` and moved at the end.
"""
from __future__ import annotations

import csv
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from .deid import Identifiers, identifiers_of, safe_name, scrub_nifti_header, scrub_sidecar_file
from .errors import InputError
from .io import CASE_ID_PATTERN
from .layout import provenance_name
from .series_id import MODALITIES, OTHER, Candidate, choose, identify

log = logging.getLogger(__name__)

TAGS = ["SeriesInstanceUID", "SeriesNumber", "SeriesDescription", "ProtocolName", "SequenceName",
        "ScanningSequence", "SequenceVariant", "MRAcquisitionType", "RepetitionTime", "EchoTime",
        "InversionTime", "ContrastBolusAgent", "ImageType", "Modality", "InstanceNumber",
        "ImagePositionPatient", "ImageOrientationPatient", "NumberOfFrames", "ImagesInAcquisition",
        "Rows", "SOPClassUID", "PatientName", "PatientID", "PatientBirthDate", "AccessionNumber",
        "OtherPatientIDs", "OtherPatientNames", "ReferringPhysicianName", "PerformingPhysicianName",
        "OperatorsName", "PatientAddress", "StudyID", "BurnedInAnnotation"]
ID_TAGS = ["SeriesDescription", "ProtocolName", "SequenceName", "ScanningSequence", "SequenceVariant",
           "MRAcquisitionType", "RepetitionTime", "EchoTime", "InversionTime", "ContrastBolusAgent",
           "ImageType", "Modality"]
DCM2NIIX_FLAGS = ["-g", "i", "-b", "y", "-ba", "y", "-z", "i", "-d", "0", "-w", "2"]
# dcm2niix messages that mean the volume's slices are incomplete or unevenly spaced.
DCM2NIIX_REFUSE = re.compile(r"Interslice distance varies|missing images|images may be missing|"
                             r"not divisible by number of repeats|Unable to equalize slice distances",
                             re.IGNORECASE)
SERIES_CSV_COLUMNS = ["series_number", "series_description", "files", "modality", "chosen_as",
                      "status", "reason", "nifti"]


@dataclass(eq=False)
class Series:
    """One DICOM series: its files, the tags that identify it, and what became of it."""

    uid: str
    number: str
    files: list[Path]
    tags: dict[str, Any]
    slices: list[tuple[Any, Any, Any, int, Any]] = field(default_factory=list)
    modality: str = OTHER
    reason: str = ""
    status: str = "pending"
    problem: str | None = None
    niftis: list[Path] = field(default_factory=list)
    chosen_as: str = ""
    burned_in: bool = False  # some image says BurnedInAnnotation YES: text in the pixels
    redact: Any = None  # Identifiers.redact of the study, so messages never show identifiers

    @property
    def key(self) -> tuple[str, str]:
        return (self.uid, self.number)

    @property
    def folder(self) -> Path:
        return Path(os.path.commonpath([str(f.parent) for f in self.files]))

    @property
    def description(self) -> str:
        """The series description with any identifier of the study removed."""
        text = str(self.tags.get("SeriesDescription") or self.tags.get("ProtocolName") or "")
        return self.redact(text) if self.redact is not None else text

    @property
    def label(self) -> str:
        return f"series {self.number or '?'} '{self.description}' in {self.folder}"

    @property
    def is_3d(self) -> bool:
        return str(self.tags.get("MRAcquisitionType") or "").upper() == "3D"


# --------------------------------------------------------------------------- scanning

def dcm2niix_binary() -> str:
    """The dcm2niix executable of the pinned PyPI package (else one on PATH)."""
    try:
        import dcm2niix

        if Path(dcm2niix.bin).is_file():
            return str(dcm2niix.bin)
    except ImportError:
        pass
    found = shutil.which("dcm2niix")
    if found is None:
        raise InputError(None, "dcm2niix not found: install the package's dependencies (pip install dcm2niix)")
    return found


def dcm2niix_version() -> str:
    """The dcm2niix version line (recorded in provenance)."""
    proc = subprocess.run([dcm2niix_binary(), "--version"], capture_output=True, text=True)
    m = re.search(r"v\d+\.\d+\.\d+\S*", proc.stdout + proc.stderr)
    return m.group(0) if m else "unknown"


def _value(ds: Any, key: str) -> Any:
    v = ds.get(key)
    if v is None:
        return None
    if type(v).__name__ in ("MultiValue", "list", "tuple"):
        return [x if isinstance(x, (int, float)) else str(x) for x in v]
    if type(v).__name__ in ("DSfloat", "DSdecimal", "float"):
        return float(v)
    if type(v).__name__ in ("IS", "int"):
        return int(v)
    return str(v)


def scan_dicom(folder: Path) -> tuple[list[Series], Identifiers]:
    """Group the DICOM image files below ``folder`` into series (non-DICOM files are skipped)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "DICOM folder not found")
    series: dict[tuple[str, str], Series] = {}
    datasets = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=TAGS)
        except (InvalidDicomError, OSError, ValueError, TypeError, AttributeError, EOFError):
            continue
        if ds.get("Rows") is None or ds.get("SeriesInstanceUID") is None:
            continue  # DICOMDIR, structured reports and other non-image objects
        datasets.append(ds)
        key = (str(ds.SeriesInstanceUID), str(ds.get("SeriesNumber", "") or ""))
        s = series.get(key)
        if s is None:
            s = series[key] = Series(key[0], key[1], [], {k: _value(ds, k) for k in ID_TAGS})
        s.files.append(path)
        s.burned_in = s.burned_in or str(ds.get("BurnedInAnnotation", "") or "").strip().upper() == "YES"
        s.slices.append((_value(ds, "InstanceNumber"), _value(ds, "ImagePositionPatient"),
                         _value(ds, "ImageOrientationPatient"), int(ds.get("NumberOfFrames", 1) or 1),
                         _value(ds, "ImagesInAcquisition")))
    if not series:
        raise InputError(folder, "no DICOM image files found")
    ordered = sorted(series.values(), key=lambda s: (_num_key(s.number), s.uid))
    return ordered, identifiers_of(datasets)


def _num_key(number: str) -> tuple[int, str]:
    return (int(number), "") if number.isdigit() else (1 << 30, number)


def check_slices(slices: list[tuple[Any, Any, Any, int, Any]]) -> str | None:
    """Why a single-frame series looks incomplete (None when it looks whole).

    Checks that every slice position has the same number of images (volumes complete), that the
    positions are evenly spaced, that ImagesInAcquisition (when stated) matches, and that the
    instance numbers have no gap.
    """
    if len(slices) < 2 or any(frames > 1 for _, _, _, frames, _ in slices):
        return None  # single files and enhanced multi-frame objects: dcm2niix checks them
    instances = [s[0] for s in slices]
    if all(isinstance(i, int) for i in instances) and len(set(instances)) == len(instances):
        have = set(instances)
        missing = sorted(set(range(min(have), max(have) + 1)) - have)
        if missing and len(missing) < len(instances):
            shown = ", ".join(str(m) for m in missing[:5]) + (" ..." if len(missing) > 5 else "")
            return f"instance number(s) {shown} missing from {min(have)}..{max(have)}"
    ipps, iops = [s[1] for s in slices], [s[2] for s in slices]
    if any(p is None or len(p) != 3 for p in ipps) or any(o is None or len(o) != 6 for o in iops):
        return None
    iop = np.asarray(iops, dtype=float)
    if np.abs(iop - iop[0]).max() > 1e-3:
        return None  # mixed orientations (e.g. a three-plane localizer): not one volume
    normal = np.cross(iop[0, :3], iop[0, 3:])
    pos = np.asarray(ipps, dtype=float) @ normal
    uniq, counts = np.unique(np.round(pos, 2), return_counts=True)
    if len(set(counts.tolist())) > 1:
        return (f"unequal numbers of images per slice position ({counts.min()} to {counts.max()} at "
                f"{len(uniq)} positions): images missing")
    if len(uniq) >= 3:
        gaps = np.diff(uniq)
        med = float(np.median(gaps))
        if gaps.max() - gaps.min() > max(0.02, 0.01 * med):
            at = float(uniq[int(np.argmax(gaps))])
            return (f"slice spacing varies from {gaps.min():.3g} to {gaps.max():.3g} mm "
                    f"(gap after position {at:.1f} mm): missing slice(s)")
    stated = {s[4] for s in slices}
    if len(stated) == 1:
        n = next(iter(stated))
        if isinstance(n, int) and n > 1 and n not in (len(uniq), len(slices)):
            return f"ImagesInAcquisition says {n} slices, found {len(uniq)} positions: missing slice(s)"
    return None


# --------------------------------------------------------------------------- conversion

def convert_series(s: Series, name: str, out_dir: Path, work: Path, ids: Identifiers) -> None:
    """Convert one series into ``out_dir/<name>*.nii.gz`` + JSON; sets ``status``/``problem``.

    Header identifiers are scrubbed, but text burned into the pixels cannot be: a series whose
    images declare BurnedInAnnotation YES is refused rather than converted.
    """
    if s.burned_in:
        s.status, s.problem = "refused", ("BurnedInAnnotation is YES: identifying text may be burned into the "
                                          "pixels; remove or mask it before converting")
        return
    problem = check_slices(s.slices)
    if problem:
        s.status, s.problem = "refused", problem
        return
    src = work / f"in_{name}"
    src.mkdir()
    for i, f in enumerate(s.files):
        (src / f"{i:06d}.dcm").symlink_to(f.resolve())
    dst = work / f"out_{name}"
    dst.mkdir()
    cmd = [dcm2niix_binary(), *DCM2NIIX_FLAGS, "-f", name, "-o", str(dst), str(src)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    text = proc.stdout + proc.stderr
    bad = DCM2NIIX_REFUSE.search(text)
    niftis = sorted(p for p in dst.iterdir() if p.name.endswith((".nii", ".nii.gz")))
    if bad or proc.returncode != 0 or not niftis:
        line = next((ln.strip() for ln in text.splitlines() if bad and bad.group(0) in ln), None) \
            or next((ln.strip() for ln in text.splitlines() if "rror" in ln), f"exit code {proc.returncode}")
        s.status, s.problem = "refused", f"dcm2niix: {line}"
        return
    for js in dst.glob("*.json"):
        scrub_sidecar_file(js, ids)
    for nii in niftis:
        scrub_nifti_header(nii, ids)
    out_dir.mkdir(parents=True, exist_ok=True)
    for f in sorted(dst.iterdir()):
        os.replace(f, out_dir / f.name)
        if f.name.endswith((".nii", ".nii.gz")):
            s.niftis.append(out_dir / f.name)
    s.status = "converted"


def _unique_names(series: list[Series], ids: Identifiers) -> dict[tuple[str, str], str]:
    names: dict[tuple[str, str], str] = {}
    used: set[str] = set()
    for s in series:
        raw = str(s.tags.get("SeriesDescription") or s.tags.get("ProtocolName") or "")
        base = f"{s.number or 'x'}_{safe_name(raw, ids)}"
        name, k = base, 2
        while name in used:
            name, k = f"{base}_{k}", k + 1
        used.add(name)
        names[s.key] = name
    return names


def _write_series_csv(path: Path, series: list[Series], root: Path, ids: Identifiers) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=SERIES_CSV_COLUMNS)
        w.writeheader()
        for s in series:
            w.writerow({
                "series_number": s.number, "series_description": s.description, "files": len(s.files),
                "modality": s.modality, "chosen_as": s.chosen_as, "status": s.status,
                "reason": ids.redact(s.reason + (f"; refused: {s.problem}" if s.problem else "")),
                "nifti": ";".join(str(p.relative_to(root)) for p in s.niftis),
            })


def _override_series(path: Path, modality: str) -> tuple[Series, Identifiers]:
    found, ids = scan_dicom(path)
    if len(found) != 1:
        raise InputError(path, f"--{modality} folder holds {len(found)} DICOM series; give the folder of one series")
    return found[0], ids


def _case_image(s: Series, modality: str, target: Path) -> None:
    """Copy the series' single 3D NIfTI (and sidecar) to the BraTS-named file."""
    if len(s.niftis) != 1:
        raise InputError(s.folder, f"{modality}: {s.label} converted to {len(s.niftis)} images; expected one")
    img = nib.load(str(s.niftis[0]))
    if len(img.shape) != 3:
        raise InputError(s.folder, f"{modality}: {s.label} is {len(img.shape)}D {img.shape}; expected one 3D volume")
    source = s.niftis[0]
    if source.name.endswith(".nii.gz"):
        shutil.copyfile(source, target)
    else:  # dcm2niix leaves very large volumes uncompressed
        nib.save(img, str(target))
    sidecar = source.with_name(_stem(source) + ".json")
    if sidecar.is_file():
        shutil.copyfile(sidecar, target.with_name(_stem(target) + ".json"))


def _stem(path: Path) -> str:
    return path.name[: -len(".nii.gz")] if path.name.endswith(".nii.gz") else path.name[: -len(".nii")]


def _publish(tmp: Path, out: Path) -> None:
    """Move the finished tree into ``out`` (one rename when ``out`` does not exist yet)."""
    if not out.exists():
        os.replace(tmp, out)
        return
    for src in sorted(tmp.rglob("*"), key=lambda p: (p.name == "series.csv", str(p))):
        if src.is_file():
            dst = out / src.relative_to(tmp)
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
    shutil.rmtree(tmp, ignore_errors=True)


def convert(out: Path, dicom: Path | None = None, case_id: str | None = None,
            overrides: dict[str, Path] | None = None) -> list[Series]:
    """Convert a study (and/or override series) into ``out``; see the module docstring."""
    from tqdm import tqdm

    from .provenance import write_provenance

    started = time.time()
    overrides = {m: Path(p) for m, p in (overrides or {}).items() if p is not None}
    if dicom is None and not overrides:
        raise InputError(None, "nothing to convert: give a DICOM study folder or the series folders of "
                               "t1, t1ce, t2 and flair")
    if case_id is not None and not CASE_ID_PATTERN.match(case_id):
        raise InputError(None, f"case id {case_id!r} may contain only letters, digits, '-', '_', '.'")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(out, "output exists and is not a folder")
    series: list[Series] = []
    ids = Identifiers()
    if dicom is not None:
        series, ids = scan_dicom(Path(dicom))
    by_key = {s.key: s for s in series}
    override_series: dict[str, Series] = {}
    for mod in MODALITIES:
        if mod not in overrides:
            continue
        s, more = _override_series(overrides[mod], mod)
        ids.whole |= more.whole
        ids.parts |= more.parts
        if s.key not in by_key:
            by_key[s.key] = s
            series.append(s)
        override_series[mod] = by_key[s.key]
    for s in series:
        ident = identify(s.tags)
        s.modality, s.reason, s.redact = ident.modality, ids.redact(ident.reason), ids.redact

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.part-", dir=out.parent))
    try:
        with tempfile.TemporaryDirectory(prefix="gliocascade-dcm-") as work:
            names = _unique_names(series, ids)
            for s in tqdm(series, desc="convert", unit="series", disable=None):
                convert_series(s, names[s.key], tmp / "series", Path(work), ids)
                if s.problem:
                    log.warning("refused %s: %s", s.label, s.problem)
        used = set(override_series.values())
        for s in series:
            must = case_id is None or s.modality in MODALITIES or s in used
            if s.problem and must:
                raise InputError(s.folder, f"{s.label}: {s.problem}; refusing to convert it")
        if case_id is not None:
            _write_case(tmp, case_id, series, override_series, dicom)
        _write_series_csv(tmp / "series.csv", series, tmp, ids)
        write_provenance(tmp / provenance_name("convert"), "convert", {},
                         {"dcm2niix_flags": DCM2NIIX_FLAGS, "case_id": case_id,
                          "overrides": sorted(overrides)}, started,
                         extra={"dcm2niix": dcm2niix_version(), "series": len(series)})
        _publish(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    for s in series:  # report paths where they ended up
        s.niftis = [out / p.relative_to(tmp) for p in s.niftis]
    return series


def _write_case(tmp: Path, case_id: str, series: list[Series], override_series: dict[str, Series],
                dicom: Path | None) -> None:
    auto = [Candidate(str(i), s.label, s.modality, s.is_3d) for i, s in enumerate(series)
            if s.status == "converted" and s not in override_series.values()]
    chosen_c, problems = choose(auto)
    chosen = {m: series[int(c.key)] for m, c in chosen_c.items()}
    for mod, s in override_series.items():
        chosen[mod] = s
        problems.pop(mod, None)
    if dicom is None:  # series named by hand only: write those, the caller has the others
        problems = {}
    if problems:
        where = dicom if dicom is not None else next(iter(override_series.values())).folder
        hint = " (give the series with " + ", ".join(f"--{m}" for m in problems) + ")"
        raise InputError(where, "; ".join(problems[m] for m in MODALITIES if m in problems) + hint)
    for mod in (m for m in MODALITIES if m in chosen):
        s = chosen[mod]
        s.chosen_as = mod + (" (override)" if override_series.get(mod) is s else "")
        _case_image(s, mod, tmp / f"{case_id}_{mod}.nii.gz")


def log_series(series: list) -> None:
    """One log line per series: number, description, modality, status and the role it was chosen for."""
    for s in series:
        tag = f" -> {s.chosen_as}" if s.chosen_as else ""
        log.info("series %s %-30s %-6s %s%s", s.number, s.description[:30], s.modality, s.status, tag)
