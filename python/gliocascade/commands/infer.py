"""Commands that segment: predict, postprocess, dicom-seg."""
from __future__ import annotations

import logging
from pathlib import Path

from ..errors import InputError
from ..io import MODALITIES

log = logging.getLogger("gliocascade.commands")


def _explicit_case(files: dict[str, Path | None], case_id: str | None) -> tuple[dict[str, Path], str]:
    """The images named one by one (``--t1 ... --flair``), as the Nextflow module passes them; one
    left out is absent (allowed when no model requires it: predict_case decides)."""
    if not any(files.get(m) is not None for m in MODALITIES):
        raise InputError(None, "name the images one by one (--t1 --t1ce --t2 --flair), or give --case DIR")
    if not case_id:
        raise InputError(None, "--case-id is needed when the images are named one by one")
    return {m: Path(files[m]) for m in MODALITIES if files.get(m) is not None}, case_id


def predict_command(case: Path | None, cases: Path | None, models: tuple[Path, ...], out: Path, tta: str | int,
                    case_id: str | None, device: str, save_probabilities: bool, label_convention: str,
                    t1: Path | None = None, t1ce: Path | None = None, t2: Path | None = None,
                    flair: Path | None = None, brainmask: Path | None = None, precision: str = "auto") -> int:
    """`gliocascade predict`.

    ``--case DIR`` (or the four images ``--t1 ... --flair`` with ``--case-id``) writes
    ``OUT/<id>_pred.nii.gz``; ``--cases DIR`` writes ``OUT/<id>/<id>_pred.nii.gz`` for every case
    folder (the run's output tree), loading the models once; a case that fails is reported and the
    others go on (exit 1); a case already predicted is skipped (``predict.predict_case_folders``).
    The brain mask is ``--brainmask`` when given; in a case folder, ``<id>_brainmask.nii.gz``
    counts; four images named one by one have none unless it is given.
    Progress: each case's TTA passes as a bar on a terminal (``progress.pass_progress``).
    """
    from ..io import check_writable_folder, discover_case
    from ..predict import load_models, predict_case, predict_case_folders
    from ..progress import pass_progress

    files = {"t1": t1, "t1ce": t1ce, "t2": t2, "flair": flair}
    named = any(v is not None for v in files.values())
    if sum([case is not None, cases is not None, named]) != 1:
        raise InputError(None, "give exactly one of --case DIR, --cases DIR or the four images --t1 --t1ce --t2 --flair")
    if cases is not None and (case_id or brainmask):
        raise InputError(None, "--case-id and --brainmask apply to one case (--case or the four images), not --cases")
    check_writable_folder(out)  # before reading and predicting, not after
    if cases is None:
        if named:
            images, cid, found_mask = *_explicit_case(files, case_id), None
        else:
            found = discover_case(case, case_id, require_all=False)
            images, cid, found_mask = found.images, found.case_id, found.brainmask
        loaded = load_models(models, device)
        predict_case(images, cid, loaded, Path(out), int(tta), device, brainmask or found_mask,
                     save_probabilities, label_convention, precision=precision, progress=pass_progress)
        return 0
    loaded = load_models(models, device)
    n, failed = predict_case_folders(cases, loaded, Path(out), int(tta), device, save_probabilities,
                                     label_convention, precision, pass_progress)
    if failed:
        log.error("%d of %d cases failed: %s", len(failed), n, ", ".join(failed))
        return 1
    return 0


def postprocess_command(pred: Path, out: Path, et_threshold: int | None, models: tuple[Path, ...],
                        native_transforms: Path | None, label_convention: str, case_id: str | None = None) -> int:
    """`gliocascade postprocess`: the ET threshold from the option, else from the models' model.json."""
    from ..postprocess import postprocess_labels, threshold_from_models

    threshold = et_threshold
    if models:
        from_models = threshold_from_models(models)
        if threshold is None:
            threshold = from_models
        elif from_models is not None and from_models != threshold:
            log.warning("--et-threshold %d overrides the models' et_threshold %d", threshold, from_models)
    if threshold is None:
        log.warning("no ET threshold given (--et-threshold or a tuned --model): ET is kept as predicted")
        threshold = 0
    for path in postprocess_labels(pred, out, threshold, native_transforms, label_convention):
        log.info("wrote %s", path)
    return 0


def dicom_seg_command(seg: Path, source: Path, out: Path, model: Path | None = None,
                      label_convention: str = "2019", deidentify: bool = False) -> int:
    """`gliocascade dicom-seg` (the same writer `run` uses); the model id is the model folder's name."""
    from .. import __version__
    from ..dicom_seg import write_dicom_seg
    from ..labels import CONVENTIONS
    from ..model_card import read_card

    model_id = "unknown"
    if model is not None:
        model_id = str(read_card(Path(model)).get("model_id") or Path(model).resolve().name)
    for path in (Path(seg), Path(source)):
        if not path.exists():
            raise InputError(path, "not found")
    write_dicom_seg(Path(seg), Path(source), Path(out), CONVENTIONS[label_convention], model_id, __version__,
                    deidentify=deidentify)
    return 0
