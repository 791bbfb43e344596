"""`gliocascade predict`: whole-brain inference of one case (or a folder of cases) with flip TTA.

Reads the four modalities, z-scores them with the one shared normalisation, crops to the brain,
runs the cascade with the paper's snapshot/flip pairing and every model folder given, thresholds
the averaged region probabilities at 0.5, and writes labels on the input grid with its header.
Everything is read and checked before anything is written, so bad input leaves no output.
"""
from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ContextManager, Sequence

import nibabel as nib
import numpy as np
import torch

from .errors import InputError
from .inference import brain_probabilities, tta_passes
from .io import (MODALITIES, atomic_paths, case_folders, error_naming, discover_case,
                 anchor_modality, read_modalities)
from .labels import regions_to_labels
from .layout import pred_name, prob_name, provenance_name
from .leftovers import discard_temporaries

log = logging.getLogger(__name__)

# `progress(case_id, passes)` is a context manager yielding a callback called with each finished TTA
# pass (or None: nothing to show); the entry command's bar: `progress.pass_progress`.
PassProgress = Callable[[str, int], ContextManager[Callable[[int], None] | None]]


@dataclass
class CaseInput:
    """The checked inputs of one case: (4, X, Y, Z) float32 images, optional brain mask, reference header."""

    case_id: str
    images: np.ndarray
    mask: np.ndarray | None
    reference: nib.Nifti1Image
    paths: dict[str, Path]


def read_case(images: dict[str, Path], case_id: str, brainmask: Path | None = None,
              optional: Sequence[str] = (), used: Sequence[str] = MODALITIES) -> CaseInput:
    """Read the modalities (and brain mask) in their stored order, refusing missing files, NaNs,
    differing grids and grids without an orientation (they cannot be brought to the model's).

    Modalities in ``optional`` may be absent; those not in ``used`` are zero-filled even when
    present, as they were absent when the models were trained."""
    from .orientation import axis_codes

    stacked, mask, _ = read_modalities(images, case_id, brainmask, optional)
    for i, mod in enumerate(MODALITIES):
        if mod not in used:
            stacked[i] = 0
    anchor = Path(images[anchor_modality(images)])
    ref_img = nib.load(str(anchor))  # the header as stored: outputs copy it field for field
    try:
        axis_codes(ref_img.affine)
    except ValueError as exc:
        raise InputError(anchor, str(exc)) from None
    paths = {m: Path(images[m]) for m in MODALITIES if images.get(m) is not None}
    if brainmask is not None:
        paths["brainmask"] = Path(brainmask)
    return CaseInput(case_id, stacked, mask, ref_img, paths)


def _save_like(path: Path, array: np.ndarray, reference: nib.Nifti1Image, dtype: type) -> Path:
    """Save ``array`` at ``path`` with the reference image's header (qform, sform, codes, units).

    The header is copied, not recomputed from the affine, so every geometry field is identical;
    only a reference without any geometry code gets qform and sform set (code 1).
    """
    arr = np.asarray(array).astype(dtype)
    hdr = reference.header.copy()
    img = nib.Nifti1Image(arr, None, hdr)
    img.header.set_data_dtype(arr.dtype)
    if int(hdr["qform_code"]) == 0 and int(hdr["sform_code"]) == 0:
        img.set_qform(reference.affine, code=1)
        img.set_sform(reference.affine, code=1)
    img.header["scl_slope"], img.header["scl_inter"] = np.nan, np.nan
    img.header["cal_min"], img.header["cal_max"] = 0, 0
    try:
        nib.save(img, str(path))
    except OSError as exc:
        raise error_naming(exc, path) from None
    return path


def _divisor(models: Sequence) -> int:
    out = 1
    for m in models:
        d = int(m.config["divisor"])
        out = out * d // math.gcd(out, d)
    return out


def case_probabilities(case: CaseInput, models: Sequence, tta: int, runner, device: torch.device,
                       progress=None) -> tuple[np.ndarray, dict]:
    """(3, X, Y, Z) mean region probabilities on the input grid (stored order), and the crop window used.

    The images and mask are first brought to the models' orientation, so the networks see the
    arrays they were trained on, byte for byte, whatever order the case is stored in; the
    probabilities go back to the stored order. The window (box, padded shape) is reported in the
    stored voxel indices and axis order.
    Outside the brain (the brain mask, else the voxels where any modality is non-zero) the
    probabilities are 0: tumour labels exist only inside the brain, as in the BraTS data.
    """
    from .data import brain_of, zscore
    from .model_io import ensemble_orientation
    from .orientation import box_from_orientation, from_orientation, sizes_from_orientation, to_orientation

    orientation = ensemble_orientation(models)
    affine = case.reference.affine
    images = to_orientation(case.images, affine, orientation)
    mask = None if case.mask is None else to_orientation(case.mask, affine, orientation)
    norm = zscore(images, mask)
    brain = brain_of(images, mask)
    found = brain_probabilities([m.networks for m in models], norm, brain, _divisor(models), tta, runner, device,
                                progress)
    if found is None:
        raise InputError(next(iter(case.paths.values())), "no brain voxels (all modalities zero, or empty brain mask)")
    full, window = found
    full *= (mask if mask is not None else np.any(images != 0, axis=0))[None]
    box = [[s.start, s.stop] for s in window.box]
    info = {"box": box_from_orientation(box, brain.shape, affine, orientation),
            "padded_shape": sizes_from_orientation(window.padded_shape, affine, orientation)}
    return from_orientation(full, affine, orientation), info


def _model_record(m) -> dict:
    from .model_card import card_sha256

    return {"folder": str(m.folder), "model_json_sha256": card_sha256(m.folder),
            "weights_sha256": m.card.get("sha256", {}), "config": m.config.get("name"),
            "networks": len(m.networks), "et_threshold": m.card.get("et_threshold")}


def predict_case(images: dict[str, Path], case_id: str, models: list, out_dir: Path, tta: int = 8,
                 device: str = "auto", brainmask: Path | None = None, save_probabilities: bool = False,
                 label_convention: str = "2019", cpu_mode: str = "channels_last", precision: str = "auto",
                 progress: PassProgress | None = None) -> Path:
    """Predict one case; write ``<id>_pred.nii.gz`` (and ``<id>_prob.nii.gz``) and provenance. Returns the label path.

    ``progress`` (see :data:`PassProgress`) hears of every TTA pass; without it nothing is shown, as
    in `run`'s workers, whose terminal belongs to the cohort bar."""
    from .cpu_speed import prepare
    from .model_io import ensemble_orientation, resolve_device
    from .model_card import case_warnings, modality_rules, optional_modalities, read_card
    from .orientation import axis_codes, codes_text
    from .precision import resolve_precision

    started = time.time()
    tta = int(tta)
    dev = resolve_device(device)
    tta_passes(1, tta)  # validates tta
    t0 = time.time()
    cards = [read_card(m.folder) for m in models]
    used = modality_rules(cards)[1]
    case = read_case(images, case_id, brainmask, optional=optional_modalities(cards, images, case_id), used=used)
    t_read = time.time() - t0
    orientation = {"stored_orientation": codes_text(axis_codes(case.reference.affine)),
                   "model_orientation": ensemble_orientation(models)}
    modalities = {"present": [m for m in MODALITIES if m in case.paths],
                  "used": [m for m in used if m in case.paths]}
    warnings = case_warnings(cards, [case.paths[m] for m in modalities["present"]])
    for warning in warnings:
        log.warning("%s: %s", case_id, warning)
    chosen = resolve_precision(precision, dev)
    log.info("%s: %s arithmetic (%s)", case_id, chosen.name, chosen.reason)
    runner = prepare([n for m in models for n in m.networks], dev, cpu_mode, chosen)
    n_passes = sum(len(tta_passes(len(m.networks), tta)) for m in models)
    t0 = time.time()
    shown = progress(case_id, n_passes) if progress is not None else contextlib.nullcontext(None)
    with shown as on_pass:
        probs, window_info = case_probabilities(case, models, tta, runner, dev, on_pass)
    t_infer = time.time() - t0
    labels = regions_to_labels(probs > 0.5, label_convention)
    out_dir = Path(out_dir)
    t0 = time.time()
    label_path = out_dir / pred_name(case_id)
    prob_path = out_dir / prob_name(case_id) if save_probabilities else None
    # every output is written before any is published, the labels (the completion marker) last
    finals = [p for p in (prob_path, out_dir / provenance_name("predict"), label_path) if p is not None]
    with atomic_paths(finals) as temps:
        staged = dict(zip(finals, temps))
        if prob_path is not None:
            _save_like(staged[prob_path], np.moveaxis(probs, 0, -1), case.reference, np.float32)
        _save_like(staged[label_path], labels, case.reference, np.uint8)
        t_write = time.time() - t0
        _write_predict_provenance(staged[out_dir / provenance_name("predict")], case, models, dev, tta, cpu_mode,
                                  chosen.record(), label_convention, save_probabilities,
                                  {**orientation, "modalities": modalities}, started, n_passes,
                                  window_info, label_path, prob_path, warnings,
                                  {"read_s": round(t_read, 3), "inference_s": round(t_infer, 3),
                                   "write_s": round(t_write, 3)})
    log.info("%s: wrote %s (%d passes, %.1f s inference)", case_id, label_path, n_passes, t_infer)
    return label_path


def _write_predict_provenance(path: Path, case: CaseInput, models: list, dev: torch.device, tta: int,
                              cpu_mode: str, precision: dict, label_convention: str, save_probabilities: bool, orientation: dict,
                              started: float, n_passes: int, window_info: dict, label_path: Path,
                              prob_path: Path | None, warnings: list[str], timings: dict) -> None:
    """provenance_predict.json: inputs' hashes, parameters, models, and the outputs' final paths."""
    from .provenance import write_provenance

    write_provenance(
        path, "predict", dict(case.paths),
        {"case_id": case.case_id, "tta": tta, "device": str(dev), "cpu_mode": cpu_mode if dev.type == "cpu" else None,
         **precision, "threads": torch.get_num_threads(),
         "label_convention": label_convention, "save_probabilities": save_probabilities, **orientation},
        started,
        extra={"models": [_model_record(m) for m in models], "passes": n_passes, "window": window_info,
               "outputs": {"labels": label_path, "probabilities": prob_path}, "warnings": warnings},
        timings=timings,
    )


def load_models(folders: Sequence[Path], device: str = "auto") -> list:
    """Load every model folder once (hash-checked, weights only)."""
    from .model_io import load_model, resolve_device

    if not folders:
        raise InputError(None, "at least one model folder is needed")
    dev = resolve_device(device)
    return [load_model(Path(f), dev) for f in folders]


def predict_case_folders(cases: Path, models: list, out: Path, tta: int, device: str = "auto",
                         save_probabilities: bool = False, label_convention: str = "2019",
                         precision: str = "auto", progress: PassProgress | None = None) -> tuple[int, list[str]]:
    """Predict every case folder below ``cases`` into ``out/<id>/``; returns (folders, failed folder names).

    A case whose ``<id>_pred.nii.gz`` exists is skipped: outputs are written atomically, so an
    existing one is complete and a rerun after a kill resumes. One case's failure (bad input or a
    crash such as running out of memory) is logged and the others go on.
    """
    folders = case_folders(cases)
    failed = []
    for folder in folders:
        try:
            c = discover_case(folder, require_all=False)
            dest = Path(out) / c.case_id
            discard_temporaries(dest)  # left by a killed run: never outputs
            done = dest / pred_name(c.case_id)
            if done.exists():
                log.info("%s: %s exists, skipped (delete it to predict the case again)", c.case_id, done)
                continue
            predict_case(c.images, c.case_id, models, dest, tta, device, c.brainmask,
                         save_probabilities, label_convention, precision=precision, progress=progress)
        except InputError as exc:
            log.error("%s", exc)
            failed.append(folder.name)
        except Exception as exc:  # one case's crash (e.g. out of memory) must not stop the cohort
            log.error("%s: %s: %s", folder, type(exc).__name__, exc)
            failed.append(folder.name)
    return len(folders), failed
