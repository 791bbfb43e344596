"""Post-processing: small enhancing tumour becomes necrosis.

The paper (and nnU-Net after it) relabels enhancing tumour as necrosis when its total volume is
below a threshold, because a few false-positive ET voxels in a case without ET cost a Dice of 0
under the BraTS convention. The threshold is tuned on validation cases by ``threshold_tuning``
and read here from the models' cards.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Iterable

import numpy as np

from .errors import InputError
from .io import load_nifti, write_labels
from .labels import CONVENTIONS, validate_labels
from .layout import provenance_name
from .model_card import et_threshold_of
from .provenance import write_provenance

log = logging.getLogger(__name__)

def relabel_small_et(labels: np.ndarray, et_threshold: int, convention: str = "2019") -> np.ndarray:
    """A copy of ``labels`` where ET becomes necrosis (label 1) if fewer than ``et_threshold`` ET voxels."""
    c = CONVENTIONS[str(convention)]
    out = np.array(labels, dtype=np.uint8, copy=True)
    et = out == c["ET"]
    n = int(et.sum())
    if 0 < n < int(et_threshold):
        out[et] = c["NCR"]
    return out


def threshold_from_models(models: Iterable[Path]) -> int | None:
    """The ``et_threshold`` recorded in the models' model.json (they must agree); None when absent."""
    found: dict[Path, int] = {}
    for folder in models:
        value = et_threshold_of(folder)
        if value is not None:
            found[Path(folder)] = value
    if not found:
        return None
    values = set(found.values())
    if len(values) > 1:
        detail = ", ".join(f"{k}: {v}" for k, v in found.items())
        raise InputError(next(iter(found)) / "model.json", f"model folders disagree on et_threshold ({detail})")
    return values.pop()


def postprocess_labels(pred: Path, out: Path, et_threshold: int, native_transforms: Path | None,
                       label_convention: str) -> list[Path]:
    """Write the final labels at ``out`` (and ``<stem>_native`` with transforms); return the paths.

    Everything is read and checked before anything is written, so bad input leaves no output.
    """
    from .native_space import labels_to_native, native_output_path, transform_files

    started = time.time()
    pred, out = Path(pred), Path(out)
    img = load_nifti(pred)
    labels = validate_labels(np.asanyarray(img.dataobj), label_convention, pred)
    if native_transforms is not None:
        transform_files(native_transforms)  # fail before writing anything
    final = relabel_small_et(labels, et_threshold, label_convention)
    changed = int((final != labels).sum())
    if changed:
        log.info("%s: %d ET voxels (< %d) relabelled as necrosis", pred.name, changed, et_threshold)
    written = []
    if native_transforms is not None:
        native_path = native_output_path(out)
        # Map first: a bad transform must not leave a BraTS-space output without its native twin.
        native, native_affine = labels_to_native(final, img, native_transforms)
        written.append(write_labels(out, final, img.affine))
        written.append(write_labels(native_path, native, native_affine))
    else:
        written.append(write_labels(out, final, img.affine))
    inputs = {"pred": pred}
    if native_transforms is not None:
        inputs.update({f"transform_{p.name}": p for p in Path(native_transforms).iterdir() if p.is_file()})
    write_provenance(out.parent / provenance_name("postprocess"), "postprocess", inputs,
                     {"et_threshold": et_threshold, "label_convention": label_convention,
                      "native_transforms": native_transforms},
                     started, extra={"outputs": [str(p) for p in written], "et_voxels_relabelled": changed})
    return written




__all__ = ["relabel_small_et", "postprocess_labels", "threshold_from_models"]
