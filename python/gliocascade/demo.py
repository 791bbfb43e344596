"""`gliocascade demo`: the whole pipeline on synthetic data, on CPU, in minutes.

No pretrained weights ship, so the demo makes its own: phantoms with labels -> train the `tiny`
cascade -> `run` on held-out phantoms (other seeds) -> cohort report. It shows a new user every
step working on their machine, and its mean Dice is the end-to-end check of the whole chain.
Every stage is skipped when its output exists, so an interrupted demo resumes.
"""
from __future__ import annotations

import csv
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .io import atomic_path
from .layout import COHORT_METRICS_NAME, REPORT_DIR
from .phantom import write_phantoms

log = logging.getLogger(__name__)

HELD_OUT_SEED = 1000  # held-out phantoms use seeds far from the training seeds


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of one demo: phantoms, training budget and inference passes."""

    shape: tuple[int, int, int]
    n_train: int
    n_test: int
    epochs: int
    steps_per_epoch: int
    tta: int


QUICK = DemoSettings(shape=(32, 32, 32), n_train=2, n_test=2, epochs=1, steps_per_epoch=1, tta=1)
# The budget with which the tiny cascade learns the phantoms: eight 64x64x48 phantoms,
# 40 epochs x 3 steps of two crops (as the learning test's tiny_model).
FULL = DemoSettings(shape=(64, 64, 48), n_train=8, n_test=4, epochs=40, steps_per_epoch=3, tta=8)


def write_samplesheet(path: Path, cases: list[Path]) -> Path:
    """A samplesheet of BraTS-space cases with ground truth (relative paths, as a user would write)."""
    lines = ["case_id,t1,t1ce,t2,flair,seg,space"]
    for case in cases:
        cid = case.name
        rel = case.relative_to(path.parent)
        files = [f"{rel}/{cid}_{m}.nii.gz" for m in ("t1", "t1ce", "t2", "flair", "seg")]
        lines.append(",".join([cid, *files, "brats"]))
    text = "\n".join(lines) + "\n"
    if not (path.is_file() and path.read_text() == text):
        with atomic_path(path) as tmp:
            tmp.write_text(text)
    return path


def trained_epochs(model: Path) -> int:
    """Epochs finished in ``model`` (train_log.csv gets a row after each epoch's checkpoint)."""
    log_csv = model / "train_log.csv"
    if not log_csv.is_file():
        return 0
    with open(log_csv, newline="") as fh:
        return max((int(r["epoch"]) for r in csv.DictReader(fh)), default=0)


def train_model(data: Path, model: Path, settings: DemoSettings, threads: int = 1) -> Path:
    """Train `tiny` on the training phantoms with ``threads`` torch threads (skipped when finished).

    The demo trains with the threads one run worker gets (cores // workers): the tiny network's
    small convolutions gain little from more threads, and on a busy 2-core machine 4 epochs took
    15 s with one thread against 110 s with two (OpenMP threads competing for the cores).
    """
    import torch

    from .configs import load_config
    from .data import cases_from_folder
    from .train import train

    if trained_epochs(model) >= settings.epochs:
        log.info("demo: model %s is trained, training skipped", model)
        return model
    resume = (model / "checkpoint.pt").is_file()
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(threads)))
    try:
        train(cases_from_folder(data), model, load_config("tiny"), epochs=settings.epochs, seed=0, resume=resume,
              device="cpu", precision="auto", steps_per_epoch=settings.steps_per_epoch, source=str(data))
    finally:
        torch.set_num_threads(before)
    return model


def mean_dice(cohort_csv: Path) -> dict[str, float]:
    """Mean Dice per region and over all three, from the report's cohort_metrics.csv."""
    with open(cohort_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    out: dict[str, float] = {}
    for region in ("WT", "TC", "ET"):
        values = [float(r[f"dice_{region}"]) for r in rows if r.get(f"dice_{region}") not in (None, "")]
        out[region] = sum(values) / len(values) if values else float("nan")
    out["mean"] = sum(out[r] for r in ("WT", "TC", "ET")) / 3
    out["cases"] = len(rows)
    return out


def run_demo(out: Path, quick: bool = False, workers: int = 2, settings: DemoSettings | None = None) -> int:
    """Phantoms -> train tiny -> run on held-out phantoms -> report; returns run's exit code."""
    from .pipeline import run_pipeline, worker_threads

    settings = settings or (QUICK if quick else FULL)
    t0 = time.time()
    out = Path(out)
    data = out / "data"
    log.info("demo: %s settings %s", "quick" if quick else "full", settings)
    write_phantoms(data / "train", settings.n_train, 0, settings.shape, prefix="train", digits=4, keep_existing=True)
    test_cases = write_phantoms(data / "heldout", settings.n_test, HELD_OUT_SEED, settings.shape, prefix="heldout",
                                digits=4, keep_existing=True)
    t_data = time.time()
    model = train_model(data / "train", out / "model", settings, threads=worker_threads(workers))
    t_train = time.time()
    sheet = write_samplesheet(out / "samplesheet.csv", test_cases)
    results = run_pipeline(sheet, [model], out / "run", workers=workers, tta=settings.tta, device="cpu")
    t_run = time.time()
    scores = mean_dice(out / "run" / REPORT_DIR / COHORT_METRICS_NAME)
    summary = {"settings": asdict(settings), "quick": quick, "workers": workers, "dice": scores,
               "failed_cases": [r.case_id for r in results if not r.ok],
               "seconds": {"phantoms": round(t_data - t0, 1), "train": round(t_train - t_data, 1),
                           "run": round(t_run - t_train, 1), "total": round(t_run - t0, 1)}}
    with atomic_path(out / "demo_summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
    log.info("demo: mean Dice %.3f (WT %.3f, TC %.3f, ET %.3f) on %d held-out phantoms in %.0f s; "
             "report: %s", scores["mean"], scores["WT"], scores["TC"], scores["ET"], scores["cases"],
             t_run - t0, out / "run" / REPORT_DIR / "report.html")
    return 1 if summary["failed_cases"] else 0
