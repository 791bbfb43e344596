"""A BIDS dataset as samplesheet rows: one native-space case per subject (and session).

`run --bids DIR` reads the anatomical images through pybids instead of a samplesheet. The four
modalities are `T1w` (t1), `T1w` with a `ce-` entity (t1ce), `T2w` (t2) and `FLAIR` (flair) in
`sub-*/[ses-*/]anat/`. A case whose modality has several candidates (`run-`/`acq-`/`ce-` variants)
or none fails alone with one line naming the files or the modality, as `convert` does for series:
one bad case never stops a cohort. Raw BIDS anatomy is native, so every row is `space=native`.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from .errors import InputError
from .io import MODALITIES, SampleRow

log = logging.getLogger(__name__)

# modality -> (BIDS suffix, whether the `ce` entity is present)
BIDS_MODALITIES = {"t1": ("T1w", False), "t1ce": ("T1w", True), "t2": ("T2w", False), "flair": ("FLAIR", False)}
NIFTI_EXTENSIONS = [".nii", ".nii.gz"]


def bids_case_id(subject: str, session: str | None) -> str:
    """``sub-X_ses-Y`` (or ``sub-X``): the BIDS file prefix, so outputs name their source."""
    return f"sub-{subject}" + (f"_ses-{session}" if session else "")


def _layout(root: Path):
    from bids import BIDSLayout

    if not (root / "dataset_description.json").is_file():
        raise InputError(root, "not a BIDS dataset (no dataset_description.json)")
    try:
        return BIDSLayout(str(root), validate=False, derivatives=False)
    except Exception as exc:  # pybids' own errors: a malformed description, an unreadable folder
        raise InputError(root, f"not a readable BIDS dataset ({exc})") from None


def _case_row(layout, root: Path, subject: str, session: str | None) -> SampleRow:
    cid = bids_case_id(subject, session)
    where = {"session": session} if session else {}
    images: dict[str, Path] = {}
    problems: list[str] = []
    for modality, (suffix, contrast) in BIDS_MODALITIES.items():
        files = layout.get(subject=subject, datatype="anat", suffix=suffix, extension=NIFTI_EXTENSIONS,
                           return_type="filename", **where)
        if not session:  # a session-less case must not pick up a session's files
            files = [f for f in files if "ses" not in layout.parse_file_entities(f)]
        files = sorted(f for f in files if ("ceagent" in layout.parse_file_entities(f)) == contrast)
        name = f"{suffix} with ce-" if contrast else suffix
        anat = root / f"sub-{subject}" / (f"ses-{session}" if session else "") / "anat"
        if not files:
            problems.append(f"{anat}: no {name} image ({modality} is needed)")
        elif len(files) > 1:
            shown = ", ".join(Path(f).name for f in files)
            problems.append(f"{anat}: {len(files)} {name} candidates for {modality} ({shown}); "
                            f"keep one or name it in a samplesheet")
        else:
            images[modality] = Path(files[0])
    return SampleRow(case_id=cid, images={m: images[m] for m in MODALITIES if m in images}, dicom_dir=None,
                     seg=None, space="native", label_convention="2019", problems=problems)


def read_bids_dataset(root: str | Path) -> list[SampleRow]:
    """One row per subject-session of the BIDS dataset at ``root`` (a subject without sessions is one
    case); a dataset with no subjects stops the run (InputError), a bad case only fails itself."""
    root = Path(os.path.abspath(Path(root).expanduser()))
    if not root.is_dir():
        raise InputError(root, "BIDS dataset folder not found")
    layout = _layout(root)
    rows: list[SampleRow] = []
    for subject in sorted(layout.get_subjects()):
        sessions = sorted(layout.get_sessions(subject=subject)) or [None]
        for session in sessions:
            rows.append(_case_row(layout, root, subject, session))
    if not rows:
        raise InputError(root, "BIDS dataset has no sub-* folders with anat images")
    for row in rows:
        if row.problems:
            log.warning("%s: %s", row.case_id, "; ".join(row.problems))
    log.info("bids: %d case(s) from %s", len(rows), root)
    return rows
