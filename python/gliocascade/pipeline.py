"""`gliocascade run` and `gliocascade demo`: the one-machine chain without a workflow engine.

Everything that can stop the whole run (the samplesheet schema, the model folders, the atlas) is
checked before any output is written (exit 2). Then cases run in a pool of worker processes, each
isolated: one case's failure is recorded and reported, the others finish (exit 1). Steps whose
outputs exist are skipped, so a rerun resumes where the last one stopped (see `steps.py`).

A run holds an exclusive lock on its output folder (`run_lock.py`); its workers die with it
however it dies, and SIGTERM or Ctrl-C stop it cleanly (`lifeline.py`): workers stopped,
unfinished staging removed, exit 128 + signal, a rerun of the same command resumes.
"""
from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import signal
import threading
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Callable, ContextManager

from .errors import InputError
from .io import SampleRow, atomic_path, check_writable_folder
from .layout import COHORT_METRICS_NAME, REPORT_DIR
from .leftovers import discard_run_leftovers
from .lifeline import PARENT_ENV, Interrupted, die_with_parent, process_alive, stop_on_signals
from .run_lock import OutLock
from .steps import CaseResult, RunOptions, case_paths, process_case
from .worker_logs import LogRelay, worker_logging

# `progress(total)` is a context manager yielding a callback called with each finished case's result
# (the entry layer's bar or lines: `progress.cohort_progress`).
Progress = Callable[[int], ContextManager[Callable[[CaseResult], None]]]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- checks before starting

def load_samplesheet(path: Path) -> list[SampleRow]:
    """The sheet's rows: read once, checked by the schema (as Nextflow checks it), typed."""
    from .samplesheet import read_samplesheet

    return read_samplesheet(path)


def check_models(models: list[Path]) -> int | None:
    """Load every model folder once (hash checks) and return the agreed ET threshold (None: never tuned)."""
    from .model_io import load_model
    from .postprocess import threshold_from_models

    if not models:
        raise InputError(None, "at least one model folder is needed")
    for folder in models:
        load_model(folder, device="cpu")
    threshold = threshold_from_models(models)
    return None if threshold is None else int(threshold)


def check_atlas(rows: list[SampleRow], atlas: Path | None) -> None:
    """Native-space rows need the atlas: a missing one stops the run before it starts."""
    if any(r.space == "native" for r in rows):
        from .atlas import locate_atlas

        locate_atlas(atlas)


def worker_threads(workers: int, cores: int | None = None, env: dict[str, str] | None = None) -> int:
    """Torch threads per worker: the machine's cores shared out, at least one each, and never more
    than ``OMP_NUM_THREADS`` when it is set (as a cluster job script or a Nextflow task sets it)."""
    if cores is None:
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - not Linux
            cores = os.cpu_count() or 1
    threads = max(1, int(cores) // max(1, int(workers)))
    limit = (os.environ if env is None else env).get("OMP_NUM_THREADS", "")
    return max(1, min(threads, int(limit))) if limit.strip().isdigit() and int(limit) > 0 else threads


def _pool_context() -> multiprocessing.context.BaseContext:
    """The fork-server start method where the platform has it, else spawn.

    The fork server imports `forkserver_lifeline` first, which ties its life to this process (it
    reads our pid from the environment, set here, since the fork server starts on first use).
    """
    if "forkserver" in multiprocessing.get_all_start_methods():
        os.environ[PARENT_ENV] = str(os.getpid())
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["gliocascade.forkserver_lifeline", "torch", "gliocascade.steps",
                                    "gliocascade.predict", "gliocascade.postprocess", "gliocascade.metrics"])
        return ctx
    return multiprocessing.get_context("spawn")


def _init_worker(threads: int, run_pid: int, log_queue: Any = None, log_level: int = logging.INFO) -> None:
    """Pool initializer: die with the parent (the fork server), leave Ctrl-C to the run (which
    stops the workers itself), log through the run (``worker_logs``), and limit the worker's torch
    threads before any work."""
    import torch

    if log_queue is not None:
        worker_logging(log_queue, log_level)
    die_with_parent()
    if not process_alive(run_pid):
        os._exit(1)  # the run died while this worker was starting
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:  # progress bars share a thread lock, not tqdm's default semaphore, which a killed worker
        from tqdm import tqdm  # would leave behind ("leaked semaphore" warnings after a stop)

        tqdm.set_lock(threading.RLock())
    except ImportError:  # pragma: no cover
        pass
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)


def _kill_workers(pool: ProcessPoolExecutor) -> None:
    """Stop every worker now (a case in progress is abandoned; its staging is removed after)."""
    kill = getattr(pool, "kill_workers", None)  # Python 3.14+
    if kill is not None:
        kill()
        return
    procs = list((getattr(pool, "_processes", None) or {}).values())
    for proc in procs:
        proc.kill()
    for proc in procs:
        proc.join(10)


# --------------------------------------------------------------------------- running the cases

def run_cases(rows: list[SampleRow], opts: RunOptions, workers: int,
              progress: Progress | None = None) -> list[CaseResult]:
    """Process every row in a pool of ``workers`` processes; ``progress`` hears of each finished case.

    Workers come from a fork server that imported torch and the steps once (fast starts, and safe
    even when this process already ran torch: forking a process with live thread pools is not).
    Their log records are logged here (``worker_logs``), as this process's own are.
    """
    results: dict[str, CaseResult] = {}
    ctx = _pool_context()
    log_queue = ctx.Queue()
    pool = ProcessPoolExecutor(max_workers=min(workers, len(rows)), mp_context=ctx, initializer=_init_worker,
                               initargs=(opts.threads, os.getpid(), log_queue, logging.getLogger().getEffectiveLevel()))
    shown = progress(len(rows)) if progress is not None else contextlib.nullcontext(None)
    try:
        futures = {pool.submit(process_case, row, opts): row.case_id for row in rows}
        with shown as on_result, LogRelay(log_queue):
            for fut in as_completed(futures):
                cid = futures[fut]
                try:
                    res = fut.result()
                except BrokenProcessPool as exc:
                    res = CaseResult(cid, ok=False, failed_step="worker",
                                     message=f"worker process died ({exc})")
                except Exception as exc:  # pickling and similar pool errors fail the case only
                    res = CaseResult(cid, ok=False, failed_step="worker", message=f"{type(exc).__name__}: {exc}")
                results[cid] = res
                _log_result(res)
                if on_result is not None:
                    on_result(res)
    except BaseException:  # Interrupted, Ctrl-C, or a bug here: no worker may go on writing
        _kill_workers(pool)
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    log_queue.close()
    return [results[r.case_id] for r in rows]


def _log_result(res: CaseResult) -> None:
    if res.ok:
        log.info("%s: done in %.1f s (ran: %s; skipped: %s)", res.case_id, res.seconds,
                 ",".join(res.ran) or "-", ",".join(res.skipped) or "-")
    else:
        log.error("%s: FAILED at %s: %s", res.case_id, res.failed_step, res.message)


# --------------------------------------------------------------------------- the report

def _write_if_changed(path: Path, text: str) -> bool:
    """Write ``text`` atomically unless the file already holds exactly it (keeps resumed runs untouched)."""
    if path.is_file() and path.read_text() == text:
        return False
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return True


def write_report(out: Path, results: list[CaseResult]) -> Path:
    """OUT/report/: failures.csv and the cohort report; rebuilt only when its inputs changed."""
    from .refusals import failures_text
    from .report import build_report

    report_dir = out / REPORT_DIR
    report_dir.mkdir(parents=True, exist_ok=True)
    failures = sorted((r for r in results if not r.ok), key=lambda r: r.case_id)
    _write_if_changed(report_dir / "failures.csv",
                      failures_text([(f.case_id, f.failed_step or "", f.message or "") for f in failures]))
    metrics = [case_paths(out, r.case_id).metrics for r in results if r.ok]
    inputs = {"metrics": {str(m): os.stat(m).st_mtime_ns for m in metrics},
              "failures": [[f.case_id, f.failed_step, f.message] for f in failures]}
    manifest = report_dir / "report_inputs.json"
    text = json.dumps(inputs, indent=1, sort_keys=True) + "\n"
    complete = (report_dir / "report.html").is_file() and (report_dir / COHORT_METRICS_NAME).is_file()
    if complete and manifest.is_file() and manifest.read_text() == text:
        log.info("report: inputs unchanged, skipped")
        return report_dir
    if manifest.exists():
        manifest.unlink()  # stale until the new report is complete
    build_report(metrics, report_dir, out, failures=[(f.case_id, f"{f.failed_step}: {f.message}") for f in failures],
                 case_ids=[r.case_id for r in results if r.ok])
    _write_if_changed(manifest, text)
    return report_dir


# --------------------------------------------------------------------------- commands

def run_pipeline(samplesheet: Path, models: list[Path], out: Path, workers: int = 1, tta: int = 8,
                 device: str = "auto", atlas: Path | None = None, label_convention: str = "2019",
                 progress: Progress | None = None, rows: list[SampleRow] | None = None, layout: str = "default",
                 bids_source: Path | None = None, **step_options: Any) -> list[CaseResult]:
    """Check everything global, run all cases, write the report; returns each case's result.

    ``rows`` replaces the samplesheet (`--bids`: ``bids_input``); ``layout="bids"`` also writes the
    BIDS-Derivatives dataset (``bids_output``), recording ``bids_source`` as its source.

    ``progress`` (see :data:`Progress`) hears of every finished case.

    ``step_options`` are the per-step settings of :class:`RunOptions` (``precision``, ``save_probabilities``,
    ``registration_backend``, ``affine``, ``n4``, ``atlas_via``, ``allow_qc_failure``, ``input_skull_stripped``,
    ``skull_strip``). A failed report is appended as a
    result named ``report`` (the cases' outputs stand).
    """
    rows = load_samplesheet(Path(samplesheet)) if rows is None else rows
    if layout == "bids":
        from .bids_output import check_bids_ids

        check_bids_ids(r.case_id for r in rows)
    out = Path(out)
    check_writable_folder(out)  # before the models are loaded, not after every case failed
    models = [Path(m) for m in models]
    threshold = check_models(models)
    check_atlas(rows, atlas)
    from .model_io import resolve_device

    resolve_device(device)  # --device cuda without CUDA stops here, before any case starts
    out.mkdir(parents=True, exist_ok=True)
    opts = RunOptions(models=[m.resolve() for m in models], out=out.resolve(), tta=int(tta), device=device,
                      atlas=atlas, label_convention=str(label_convention), et_threshold=threshold or 0,
                      threads=worker_threads(workers), **step_options)
    ids = [r.case_id for r in rows]
    with OutLock(out), stop_on_signals():
        discard_run_leftovers(out, ids)  # a killed run's staging and temporaries: never outputs
        try:
            results = _run_and_report(rows, opts, out, workers, threshold, progress)
            if layout == "bids":
                _write_bids(out, rows, results, str(label_convention), bids_source)
            return results
        except Interrupted as exc:
            log.warning("run: %s received: stopping", signal.Signals(exc.signum).name)
            discard_run_leftovers(out, ids)
            raise


def _run_and_report(rows: list[SampleRow], opts: RunOptions, out: Path, workers: int,
                    threshold: int | None, progress: Progress | None = None) -> list[CaseResult]:
    log.info("run: %d case(s), %d worker(s) x %d thread(s), %s", len(rows), workers, opts.threads,
             "ET threshold: not tuned (no et_threshold in model.json): ET is kept as predicted"
             if threshold is None else f"ET threshold {threshold} voxels")
    results = run_cases(rows, opts, workers, progress)
    try:
        write_report(out, results)
    except Exception as exc:  # the cases' outputs stand; the run still reports failure (exit 1)
        problem = str(exc) if isinstance(exc, InputError) else f"{type(exc).__name__}: {exc}"
        log.error("report: FAILED: %s", problem)
        results.append(CaseResult("report", ok=False, failed_step="report", message=problem))
    return results


def _write_bids(out: Path, rows: list[SampleRow], results: list[CaseResult], label_convention: str,
                source: Path | None) -> None:
    """The derivatives dataset of the succeeded cases; a failure is the run's (exit 1), not the cases'."""
    from .bids_output import write_derivatives

    done = {r.case_id for r in results if r.ok}
    try:
        write_derivatives(out, [(r.case_id, r.images.get("t1ce")) for r in rows if r.case_id in done],
                          label_convention, source)
    except (OSError, InputError) as exc:
        log.error("bids: FAILED: %s", exc)
        results.append(CaseResult("bids", ok=False, failed_step="bids", message=str(exc)))
