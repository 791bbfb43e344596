"""The per-case chain of `gliocascade run`: convert -> preprocess -> predict -> postprocess -> evaluate.

Each step writes into a staging folder inside the case folder and moves its outputs into place only
when it succeeded, the completion marker (the step's main output) last. So an output that exists is
complete, a rerun skips every step whose outputs exist (resume), and a failed or killed step leaves
nothing of itself behind; what a step logs meanwhile names the published files
(``worker_logs.logged_as_published``). Steps call the other modules' functions, never re-implement them.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import InputError
from .io import MODALITIES, SampleRow
from .layout import CasePaths, case_paths, modality_files
from .worker_logs import logged_as_published

log = logging.getLogger(__name__)

STEPS = ("convert", "preprocess", "predict", "postprocess", "evaluate")


@dataclass
class RunOptions:
    """What every case of one run shares (picklable: sent to the worker processes)."""

    models: list[Path]
    out: Path
    tta: int = 8
    device: str = "auto"
    precision: str = "auto"
    atlas: Path | None = None
    label_convention: str = "2019"
    et_threshold: int = 0
    threads: int = 1
    save_probabilities: bool = False
    registration_backend: str = "simpleitk"
    affine: bool = False
    n4: bool = False
    atlas_via: str = "t1ce"
    allow_qc_failure: bool = False
    input_skull_stripped: str = "auto"
    skull_strip: str = "atlas"
    dicom_seg: bool = True
    deidentify_seg: bool = False


@dataclass
class CaseResult:
    """How one case went: which steps ran or were skipped, and the failure if any."""

    case_id: str
    ok: bool
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed_step: str | None = None
    message: str | None = None
    seconds: float = 0.0


class StepFailed(Exception):
    """A step of one case failed; carries the step name and a one-line message."""

    def __init__(self, step: str, message: str):
        self.step, self.message = step, message
        super().__init__(f"{step}: {message}")


# --------------------------------------------------------------------------- staging

def _fresh_staging(paths: CasePaths, step: str) -> Path:
    """An empty staging folder for ``step`` (a leftover of a killed run is discarded)."""
    stage = paths.staging(step)
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    return stage


def _publish_files(stage: Path, dest: Path, last: str) -> list[Path]:
    """Move every file of ``stage`` into ``dest``; the file named ``last`` goes last (it marks completion)."""
    names = sorted(p.name for p in stage.iterdir() if p.is_file())
    order = [n for n in names if n != last] + ([last] if last in names else [])
    if last not in names:
        raise StepFailed("publish", f"{stage / last}: expected output was not written")
    for name in names:
        if name.startswith("provenance_") and name.endswith(".json"):
            _point_provenance_at(stage / name, stage, dest)
    moved = []
    for name in order:
        os.replace(stage / name, dest / name)
        moved.append(dest / name)
    shutil.rmtree(stage)
    return moved


def _point_provenance_at(record: Path, stage: Path, dest: Path) -> None:
    """Rewrite a provenance file's paths from the staging folder to where the outputs are published,
    so that provenance names the files a person finds, not a folder that no longer exists."""
    from .io import atomic_path

    text = record.read_text()
    staged = json.dumps(str(stage))[1:-1]  # as the path appears inside JSON strings
    if staged in text:
        with atomic_path(record) as tmp:
            tmp.write_text(text.replace(staged, json.dumps(str(dest))[1:-1]))


def _publish_folder(stage: Path, dest: Path) -> None:
    """Rename the finished staging folder to its final name (one atomic rename)."""
    for record in stage.glob("provenance_*.json"):
        _point_provenance_at(record, stage, dest)
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(stage, dest)


# --------------------------------------------------------------------------- the steps

def _is_series_folder(path: Path) -> bool:
    return Path(path).is_dir()


def needs_convert(row: SampleRow) -> bool:
    """DICOM rows: a study folder, or modality columns that name series folders."""
    return row.dicom_dir is not None or any(_is_series_folder(p) for p in row.images.values())


def step_convert(row: SampleRow, paths: CasePaths, opts: RunOptions) -> dict[str, Path]:
    """DICOM -> OUT/<id>/converted/<id>_{t1,t1ce,t2,flair}.nii.gz (with series.csv and sidecars)."""
    from . import dicom

    series = {m: p for m, p in row.images.items() if _is_series_folder(p)}
    nifti = {m: p for m, p in row.images.items() if not _is_series_folder(p)}
    stage = _fresh_staging(paths, "convert")
    with logged_as_published(stage, paths.converted):
        dicom.log_series(dicom.convert(stage, row.dicom_dir, row.case_id,
                                       {m: series.get(m) for m in ("t1", "t1ce", "t2", "flair")}))
    _publish_folder(stage, paths.converted)
    files = modality_files(paths.converted, row.case_id)
    files.update(nifti)  # modalities given as NIfTI next to series folders stay as they are
    return files


def step_preprocess(images: dict[str, Path], paths: CasePaths, opts: RunOptions) -> None:
    """Native images -> OUT/<id>/preprocessed/ (BraTS space, brain mask, transforms back)."""
    from . import preprocess

    stage = _fresh_staging(paths, "preprocess")
    with logged_as_published(stage, paths.preprocessed):
        preprocess.preprocess_case({m: images[m] for m in MODALITIES}, paths.case_id, stage, atlas_dir=opts.atlas,
                                   backend=opts.registration_backend, affine=opts.affine, n4=opts.n4,
                                   skull_strip=opts.skull_strip, threads=opts.threads, atlas_via=opts.atlas_via,
                                   allow_qc_failure=opts.allow_qc_failure,
                                   input_skull_stripped=opts.input_skull_stripped)
    _publish_folder(stage, paths.preprocessed)


def step_predict(images: dict[str, Path], brainmask: Path | None, paths: CasePaths, opts: RunOptions) -> None:
    """-> OUT/<id>/<id>_pred.nii.gz (+ provenance_predict.json)."""
    from .predict import predict_case

    stage = _fresh_staging(paths, "predict")
    with logged_as_published(stage, paths.root):  # no progress bar: the run's terminal shows the cohort's
        predict_case(images=images, case_id=paths.case_id, models=loaded_models(opts.models), out_dir=stage,
                     tta=opts.tta, device=opts.device, brainmask=brainmask, save_probabilities=opts.save_probabilities,
                     label_convention=opts.label_convention, precision=opts.precision)
    _publish_files(stage, paths.root, paths.pred.name)


def step_postprocess(paths: CasePaths, opts: RunOptions, native: bool) -> None:
    """-> OUT/<id>/<id>_seg.nii.gz (+ _seg_native.nii.gz when the case has transforms)."""
    from .postprocess import postprocess_labels

    stage = _fresh_staging(paths, "postprocess")
    with logged_as_published(stage, paths.root):
        postprocess_labels(pred=paths.pred, out=stage / paths.seg.name, et_threshold=opts.et_threshold,
                           native_transforms=paths.transforms if native else None,
                           label_convention=opts.label_convention)
    _publish_files(stage, paths.root, paths.seg.name)


def step_dicom_seg(row: SampleRow, paths: CasePaths, opts: RunOptions) -> None:
    """-> OUT/<id>/<id>_seg.dcm: the native labels as DICOM-SEG on the source T1Gd series."""
    from . import __version__, dicom_seg
    from .labels import CONVENTIONS

    source = row.images.get("t1ce")
    if source is not None and _is_series_folder(source):
        datasets = dicom_seg.read_series(source)
    else:
        datasets = dicom_seg.t1ce_source(paths.converted, row.dicom_dir)
    model_id = Path(opts.models[0]).name  # the model card has no id: the folder names the model
    dicom_seg.write_dicom_seg(paths.seg_native, datasets, paths.seg_dicom, CONVENTIONS[opts.label_convention],
                              model_id, __version__, deidentify=opts.deidentify_seg)


def step_evaluate(row: SampleRow, paths: CasePaths, opts: RunOptions) -> None:
    """-> OUT/<id>/<id>_metrics.csv (metrics with ground truth, volumes only without)."""
    from .metrics import evaluate_to_files

    stage = _fresh_staging(paths, "evaluate")
    # evaluate picks the labels on the reference's grid (native or BraTS), as in the Nextflow door
    # a BraTS row's images give the brain, so an implausible reference is also judged against it
    brats = row.space == "brats" and not needs_convert(row)
    with logged_as_published(stage, paths.root):
        qc = evaluate_to_files(paths.seg, row.seg, row.case_id, stage / paths.metrics.name,
                               pred_labels=opts.label_convention, gt_labels=row.label_convention,
                               pred_native=paths.seg_native if paths.seg_native.exists() else None,
                               brain_images=row.images if brats else None,
                               lesion_task="gli" if row.seg is not None else None)
        if qc is not None and qc["decision"] == "fail":
            log.warning("%s: implausible reference: %s (metrics written, flagged)", row.seg, "; ".join(qc["reasons"]))
    _publish_files(stage, paths.root, paths.metrics.name)


# --------------------------------------------------------------------------- models (once per process)

_MODEL_CACHE: dict[tuple[str, ...], list[Any]] = {}


def loaded_models(folders: list[Path]) -> list[Any]:
    """The model folders loaded once per worker process (hash-checked by model_io)."""
    from .model_io import load_model

    key = tuple(str(Path(f).resolve()) for f in folders)
    if key not in _MODEL_CACHE:
        _MODEL_CACHE[key] = [load_model(f, device="cpu") for f in folders]
    return _MODEL_CACHE[key]


# --------------------------------------------------------------------------- the chain

def _step(result: CaseResult, name: str, done: bool, action: Callable[[], Any]) -> Any:
    """Run ``action`` unless ``done``; record it; turn any error into StepFailed(name, one line)."""
    if done:
        result.skipped.append(name)
        return None
    log.info("%s: %s", result.case_id, name)  # a person following a cohort sees the step each case is at
    try:
        value = action()
    except StepFailed as exc:
        raise StepFailed(name, exc.message) from exc
    except InputError as exc:
        raise StepFailed(name, str(exc)) from exc
    except Exception as exc:  # any bug or library error fails this case only
        log.debug("%s", traceback.format_exc())
        raise StepFailed(name, f"{type(exc).__name__}: {exc}") from exc
    result.ran.append(name)
    return value


def _cleanup_after_failure(paths: CasePaths, step: str) -> None:
    """Remove the failed step's staging folder, and the case folder if nothing else is in it."""
    shutil.rmtree(paths.staging(step), ignore_errors=True)
    try:
        if paths.root.is_dir() and not any(paths.root.iterdir()):
            paths.root.rmdir()
    except OSError:
        pass


def check_inputs(row: SampleRow, opts: RunOptions) -> None:
    """Read and check every input file of a row before its first step, so that a bad file fails
    the case before any output exists. The failure is reported at the step that reads the file
    (predict or preprocess for images, evaluate for the seg), as the Nextflow door reports it.

    Images: not one file twice, readable, 3D, finite, not all zero; for a space=brats row also one
    grid and one exam (io.read_modalities) and the brain mask on T1Gd's grid. The seg: labels of
    its convention, and for a space=brats row on T1Gd's grid.
    """
    from .io import (MODALITIES, anchor_modality, check_distinct_files, check_same_grid, read_image, read_labels,
                     read_modalities)
    from .model_card import optional_modalities, read_card

    files = {m: p for m, p in row.images.items() if not _is_series_folder(p)}
    brats = row.space == "brats" and not needs_convert(row)
    with _reported_at("predict" if brats else "preprocess"):
        check_distinct_files(files)
        if brats:
            optional: list[str] = []
            if any(row.images.get(m) is None for m in MODALITIES):  # only then do the models' cards matter
                optional = optional_modalities([read_card(m) for m in opts.models], row.images, row.case_id)
            ref = read_modalities(row.images, row.case_id, row.brainmask, optional)[2]
        for path in ([] if brats else files.values()):  # raw exams: each on its own grid until preprocess
            if not read_image(path)[0].any():
                raise InputError(path, "image is all zero")
    if row.seg is not None:
        with _reported_at("evaluate"):
            labels, affine = read_labels(row.seg, row.label_convention)
            if brats:  # a native row's seg lies on the native T1Gd grid or the BraTS grid: evaluate picks
                check_same_grid(row.images[anchor_modality(row.images)], ref, row.seg, (labels, affine))


@contextlib.contextmanager
def _reported_at(step: str) -> Iterator[None]:
    """Turn an InputError into the failure of ``step`` (one line naming the file)."""
    try:
        yield
    except InputError as exc:
        raise StepFailed(step, str(exc)) from exc


def process_case(row: SampleRow, opts: RunOptions) -> CaseResult:
    """Run every step of one case that has not run yet; never raises (the failure is in the result)."""
    t0 = time.time()
    paths = case_paths(opts.out, row.case_id)
    result = CaseResult(row.case_id, ok=False)
    step = "inputs"
    try:
        if row.problems:
            raise StepFailed("inputs", "; ".join(row.problems))
        if not paths.metrics.exists():  # something to do: every input is checked before the first step
            check_inputs(row, opts)
        paths.root.mkdir(parents=True, exist_ok=True)
        images = dict(row.images)
        if needs_convert(row):
            step = "convert"
            done = all(p.exists() for p in modality_files(paths.converted, row.case_id).values())
            converted = _step(result, step, done, lambda: step_convert(row, paths, opts))
            images = converted or {**modality_files(paths.converted, row.case_id),
                                   **{m: p for m, p in row.images.items() if not _is_series_folder(p)}}
        native = row.space == "native"
        brainmask = row.brainmask  # space=brats rows: the sheet's column, nothing else
        if native:
            step = "preprocess"
            pre = modality_files(paths.preprocessed, row.case_id)
            done = all(p.exists() for p in pre.values())
            src = images
            _step(result, step, done, lambda: step_preprocess(src, paths, opts))
            images = pre
            brainmask = paths.brainmask if paths.brainmask.exists() else None
        has_transforms = native and paths.transform.exists()
        step = "predict"
        _step(result, step, paths.pred.exists(), lambda: step_predict(images, brainmask, paths, opts))
        step = "postprocess"
        done = paths.seg.exists() and (paths.seg_native.exists() or not has_transforms)
        _step(result, step, done, lambda: step_postprocess(paths, opts, has_transforms))
        if opts.dicom_seg and has_transforms and needs_convert(row):
            step = "dicom_seg"
            _step(result, step, paths.seg_dicom.exists(), lambda: step_dicom_seg(row, paths, opts))
        step = "evaluate"
        _step(result, step, paths.metrics.exists(), lambda: step_evaluate(row, paths, opts))
        result.ok = True
    except StepFailed as exc:
        result.failed_step, result.message = exc.step, exc.message
        _cleanup_after_failure(paths, step)
    except BaseException as exc:  # KeyboardInterrupt in a worker: leave nothing half-done, re-raise
        _cleanup_after_failure(paths, step)
        if isinstance(exc, Exception):
            result.failed_step, result.message = step, f"{type(exc).__name__}: {exc}"
        else:
            raise
    result.seconds = round(time.time() - t0, 3)
    return result
