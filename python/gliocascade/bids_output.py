"""`run --layout bids`: the run's segmentations as a BIDS-Derivatives dataset.

Written after the cases finished, beside the default per-case folders (which the report reads), at
``OUT/derivatives/gliocascade/`` (the place BIDS gives a pipeline's derivatives, so ``OUT`` can be
the raw dataset's parent or a folder of its own). Per case: the final labels in the SRI24/BraTS
grid as ``<prefix>_space-SRI24_dseg.nii.gz`` and, when the case had transforms, on its native T1Gd
grid as ``<prefix>_space-orig_dseg.nii.gz`` (`orig`: the image's own space, as in the
specification's discrete-segmentation example), each with a JSON sidecar (spatial reference, atlas
release, models, version); one top-level ``dseg.tsv`` (inherited by every dseg) names the labels.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Iterable

from . import __version__
from .errors import InputError
from .io import atomic_path
from .labels import CONVENTIONS
from .layout import CasePaths, seg_name, seg_native_name

log = logging.getLogger(__name__)

PIPELINE = "gliocascade"
BIDS_VERSION = "1.10.0"
TEMPLATE_SPACE = "SRI24"  # not in BIDS' standard template table, so the sidecar names the reference
SRI24_REFERENCE = "https://www.nitrc.org/projects/sri24/"
NATIVE_SPACE = "orig"
LABEL_NAMES = {"NCR": "necrotic and non-enhancing tumour core", "ED": "peritumoral oedema",
               "ET": "enhancing tumour", "NET": "non-enhancing tumour", "RC": "resection cavity"}
README = ("# gliocascade tumour segmentations\n\nGlioma sub-region label maps (`dseg`, labels in `dseg.tsv`) made by "
          "gliocascade: `space-SRI24` on the BraTS grid of the SRI24 atlas, `space-orig` on each exam's native "
          "T1Gd grid. Each sidecar names the models, the gliocascade version and the atlas release.\n")
_BIDS_PREFIX = re.compile(r"^sub-([A-Za-z0-9]+)(?:_ses-([A-Za-z0-9]+))?$")


def derivatives_root(out: Path) -> Path:
    """Where the derivatives dataset of the run folder ``out`` lives."""
    return Path(out) / "derivatives" / PIPELINE


def bids_prefix(case_id: str) -> tuple[str, str | None]:
    """(subject, session) of a case: its own when the id is ``sub-X[_ses-Y]`` (a `--bids` run), else
    the id's letters and digits as the subject (BIDS labels allow nothing else)."""
    m = _BIDS_PREFIX.match(case_id)
    if m:
        return m.group(1), m.group(2)
    label = re.sub(r"[^A-Za-z0-9]", "", case_id)
    if not label:
        raise InputError(None, f"case_id {case_id!r} has no letters or digits for a BIDS subject label")
    return label, None


def check_bids_ids(case_ids: Iterable[str]) -> None:
    """Stop before the run when two cases would share one BIDS subject/session (``P-01`` and ``P01``)."""
    seen: dict[tuple[str, str | None], str] = {}
    for cid in case_ids:
        key = bids_prefix(cid)
        if key in seen:
            raise InputError(None, f"BIDS layout: cases {seen[key]!r} and {cid!r} would both be sub-{key[0]}"
                                   + (f"_ses-{key[1]}" if key[1] else "") + "; rename one")
        seen[key] = cid


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _write_json(path: Path, record: dict) -> None:
    _write_text(path, json.dumps(record, indent=2) + "\n")


def _copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def dataset_description(source: Path | None) -> dict:
    """The derivative dataset's description: who made it and (for `--bids`) from which dataset."""
    record: dict = {"Name": "gliocascade tumour segmentations", "BIDSVersion": BIDS_VERSION,
                    "DatasetType": "derivative",
                    "GeneratedBy": [{"Name": PIPELINE, "Version": __version__,
                                     "Description": "two-stage cascaded U-Net glioma segmentation"}]}
    if source is not None:
        uri = Path(source).resolve().as_uri()
        record["SourceDatasets"] = [{"URL": uri}]
        record["DatasetLinks"] = {"raw": uri}
    return record


def dseg_table(label_convention: str) -> str:
    """``dseg.tsv``: index and name of every label value the run wrote (background 0 included)."""
    labels = CONVENTIONS[str(label_convention)]
    unwritten = set(getattr(labels, "not_written", ()))  # e.g. 2024's RC: the model has no such output
    lines = ["index\tname\tabbreviation", "0\tbackground\tBG"]
    lines += [f"{value}\t{LABEL_NAMES.get(abbr, abbr)}\t{abbr}"
              for abbr, value in sorted(labels.items(), key=lambda kv: kv[1]) if abbr not in unwritten]
    return "\n".join(lines) + "\n"


def _case_record(case_dir: Path, label_convention: str) -> dict:
    """What every sidecar of one case says: models (id, hashes), version, atlas release, labels."""
    paths = CasePaths(case_dir, case_dir.name)
    pred, pre = _read_json(paths.provenance("predict")), _read_json(paths.provenance("preprocess"))
    models = [{"Id": Path(m.get("folder", "")).name, "ModelJsonSha256": m.get("model_json_sha256"),
               "Config": m.get("config")} for m in pred.get("models", [])]
    return {"LabelConvention": f"BraTS {label_convention}",
            "Models": models,
            "GliocascadeVersion": pred.get("versions", {}).get("gliocascade", __version__),
            "AtlasRelease": pre.get("atlas_release", "not recorded (input given in BraTS space)")}


def _raw_uri(path: Path | None, source: Path | None) -> str | None:
    if path is None or source is None:
        return None
    try:
        # absolute, not resolved: a dataset's files may be links into a store elsewhere
        return "bids:raw:" + Path(os.path.abspath(path)).relative_to(os.path.abspath(source)).as_posix()
    except ValueError:
        return None


def write_case(root: Path, case_id: str, case_dir: Path, label_convention: str, t1ce: Path | None = None,
               source: Path | None = None) -> list[Path]:
    """One case's dseg files (and sidecars) under the derivatives ``root``; returns the images written."""
    subject, session = bids_prefix(case_id)
    prefix = f"sub-{subject}" + (f"_ses-{session}" if session else "")
    anat = root / f"sub-{subject}" / (f"ses-{session}" if session else "") / "anat"
    common = _case_record(case_dir, label_convention)
    raw = _raw_uri(t1ce, source)
    written = []
    seg, seg_native = case_dir / seg_name(case_id), case_dir / seg_native_name(case_id)
    if seg.is_file():
        dest = anat / f"{prefix}_space-{TEMPLATE_SPACE}_dseg.nii.gz"
        sidecar = {"Description": "tumour sub-regions on the BraTS 240x240x155 1 mm grid of the SRI24 atlas",
                   "SpatialReference": SRI24_REFERENCE, **common}
        if raw:
            sidecar["Sources"] = [raw]
        _copy(seg, dest)
        _write_json(dest.with_name(dest.name.replace(".nii.gz", ".json")), sidecar)
        written.append(dest)
    if seg_native.is_file():
        dest = anat / f"{prefix}_space-{NATIVE_SPACE}_dseg.nii.gz"
        sidecar = {"Description": "tumour sub-regions on the native T1Gd grid of the exam",
                   "SpatialReference": raw or NATIVE_SPACE, **common}
        if raw:
            sidecar["Sources"] = [raw]
        _copy(seg_native, dest)
        _write_json(dest.with_name(dest.name.replace(".nii.gz", ".json")), sidecar)
        written.append(dest)
    return written


def write_derivatives(out: Path, cases: Iterable[tuple[str, Path | None]], label_convention: str = "2019",
                      source: Path | None = None) -> Path:
    """The derivatives dataset of the run folder ``out`` for the succeeded ``cases`` ((case_id, native
    T1Gd input or None) pairs); ``source`` is the `--bids` dataset, recorded as the source."""
    root = derivatives_root(out)
    _write_json(root / "dataset_description.json", dataset_description(source))
    _write_text(root / "dseg.tsv", dseg_table(label_convention))
    _write_text(root / "README.md", README)
    n = 0
    for case_id, t1ce in cases:
        n += len(write_case(root, case_id, Path(out) / case_id, label_convention, t1ce, source))
    log.info("bids: %d segmentation(s) written to %s", n, root)
    return root
