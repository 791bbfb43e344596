"""The case layout: every name a case's files carry, spelled once (torch-free).

A run folder is ``OUT/<id>/`` per case (``converted/``, ``preprocessed/`` with ``transforms/``,
``<id>_pred.nii.gz``, ``<id>_seg.nii.gz``, ``<id>_seg_native.nii.gz``, ``<id>_metrics.csv``, one
``provenance_<step>.json`` per step) and ``OUT/report/`` for the cohort. Every reader and writer
takes its names from here, so two steps cannot disagree on where a file lies, and renaming a
file is one line. Input images follow the BraTS 2019 (``<id>_t1ce``) or 2023 (``<id>-t1c``) naming.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MODALITIES = ("t1", "t1ce", "t2", "flair")
NIFTI_EXTENSIONS = (".nii.gz", ".nii")
# File-name suffix of each image role, per naming: BraTS 2019 ``<id>_t1ce``, BraTS 2023 ``<id>-t1c``.
SUFFIXES = {
    "2019": {**{m: f"_{m}" for m in MODALITIES}, "seg": "_seg", "brainmask": "_brainmask"},
    "2023": {"t1": "-t1n", "t1ce": "-t1c", "t2": "-t2w", "flair": "-t2f", "seg": "-seg"},
}

# The folders and files of one case in a run folder.
CONVERTED_DIR = "converted"
PREPROCESSED_DIR = "preprocessed"
TRANSFORMS_DIR = "transforms"
TRANSFORM_NAME = "brats_to_native.tfm"
NATIVE_REFERENCE_NAME = "native_reference.nii.gz"
PRED_SUFFIX = "_pred.nii"
PRED_GLOB = f"*{PRED_SUFFIX}*"

# The cohort's folder and files.
REPORT_DIR = "report"
COHORT_METRICS_NAME = "cohort_metrics.csv"

# Roles of a case's files in its report page (the case-files list of a workflow engine names them).
STEPS = ("preprocess", "predict", "postprocess", "evaluate")
NATIVE_T1CE_ROLE = "native_t1ce"
# seg/seg_native: the final labels; t1..flair, brainmask: BraTS space; native_t1ce: the exam's own
# T1Gd (native panel); reference: the row's seg; provenance_<step>: each step's record.
REPORT_ROLES = ("seg", "seg_native", *MODALITIES, "brainmask", "reference", NATIVE_T1CE_ROLE,
                *(f"provenance_{s}" for s in STEPS))


def image_stem(case_id: str, role: str, naming: str = "2019") -> str:
    """``<id><suffix>`` of an image role (a modality or ``seg``) in the 2019 or 2023 naming."""
    return f"{case_id}{SUFFIXES[naming][role]}"


def image_name(case_id: str, role: str, naming: str = "2019") -> str:
    """``<id>_t1ce.nii.gz`` (2019) or ``<id>-t1c.nii.gz`` (2023): the file name of an image role."""
    return image_stem(case_id, role, naming) + ".nii.gz"


def modality_files(folder: Path, case_id: str) -> dict[str, Path]:
    """Modality -> ``folder/<id>_<modality>.nii.gz``: where convert and preprocess write a case."""
    return {m: Path(folder) / image_name(case_id, m) for m in MODALITIES}


def seg_name(case_id: str) -> str:
    """The final labels on the BraTS grid (postprocess), also the name of a reference or training label map."""
    return image_name(case_id, "seg")


def seg_native_name(case_id: str) -> str:
    """The final labels on the exam's own grid."""
    return f"{case_id}_seg_native.nii.gz"


def seg_dicom_name(case_id: str) -> str:
    """The final labels as a DICOM Segmentation object."""
    return f"{case_id}_seg.dcm"


def pred_name(case_id: str) -> str:
    """Predict's labels (before postprocessing)."""
    return f"{case_id}{PRED_SUFFIX}.gz"


def prob_name(case_id: str) -> str:
    """Predict's region probabilities (with --save-probabilities)."""
    return f"{case_id}_prob.nii.gz"


def brainmask_name(case_id: str) -> str:
    """The brain mask preprocessing writes (and a BraTS-space case folder may carry)."""
    return image_name(case_id, "brainmask")


def metrics_name(case_id: str) -> str:
    """One case's evaluation table."""
    return f"{case_id}_metrics.csv"


def provenance_name(step: str) -> str:
    """The record each step writes beside its outputs."""
    return f"provenance_{step}.json"


def case_id_of_prediction(name: str) -> str | None:
    """``<id>`` of a ``<id>_pred.nii[.gz]`` file name, None for any other name."""
    return name[: name.index(PRED_SUFFIX)] if PRED_SUFFIX in name else None


def case_id_of_anchor(name: str) -> str | None:
    """``<id>`` of a T1Gd file name in either naming (``<id>_t1ce.nii.gz``, ``<id>-t1c.nii``), else None."""
    for ext in NIFTI_EXTENSIONS:
        if name.endswith(ext):
            stem = name[: -len(ext)]
            for naming in SUFFIXES.values():
                if stem.endswith(naming["t1ce"]):
                    return stem[: -len(naming["t1ce"])]
    return None


def find_image(folder: Path, case_id: str, role: str, namings: tuple[str, ...] = ("2019", "2023")) -> Path | None:
    """The first existing file of an image role in ``folder`` (each naming in turn, ``.nii.gz`` before ``.nii``)."""
    for naming in namings:
        if role not in SUFFIXES[naming]:
            continue
        stem = image_stem(case_id, role, naming)
        for ext in NIFTI_EXTENSIONS:
            path = Path(folder) / f"{stem}{ext}"
            if path.exists():
                return path
    return None


@dataclass
class CasePaths:
    """Where each step of one case writes in a run folder (the DESIGN output tree)."""

    root: Path
    case_id: str

    @property
    def converted(self) -> Path:
        return self.root / CONVERTED_DIR

    @property
    def preprocessed(self) -> Path:
        return self.root / PREPROCESSED_DIR

    @property
    def transforms(self) -> Path:
        return self.preprocessed / TRANSFORMS_DIR

    @property
    def transform(self) -> Path:
        return self.transforms / TRANSFORM_NAME

    @property
    def brainmask(self) -> Path:
        return self.preprocessed / brainmask_name(self.case_id)

    @property
    def pred(self) -> Path:
        return self.root / pred_name(self.case_id)

    @property
    def seg(self) -> Path:
        return self.root / seg_name(self.case_id)

    @property
    def seg_native(self) -> Path:
        return self.root / seg_native_name(self.case_id)

    @property
    def seg_dicom(self) -> Path:
        return self.root / seg_dicom_name(self.case_id)

    @property
    def metrics(self) -> Path:
        return self.root / metrics_name(self.case_id)

    def provenance(self, step: str) -> Path:
        """A step's record: preprocessing's lies in ``preprocessed/``, the others' in the case folder."""
        return (self.preprocessed if step == "preprocess" else self.root) / provenance_name(step)

    def staging(self, step: str) -> Path:
        return self.root / f".partial-{step}"


def case_paths(out: Path, case_id: str) -> CasePaths:
    """The layout of case ``case_id`` in run folder ``out``."""
    return CasePaths(Path(out) / case_id, case_id)
