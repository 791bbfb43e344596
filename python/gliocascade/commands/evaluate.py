"""Commands that measure: evaluate, report."""
from __future__ import annotations

from pathlib import Path

import click

from ..errors import InputError


def evaluate_command(pred: Path, gt: Path | None, case_id: str, out: Path, pred_labels: str,
                     gt_labels: str, pred_native: Path | None = None,
                     brain_images: dict[str, Path] | None = None, lesion_wise: bool = False,
                     lesion_task: str = "gli") -> int:
    """`gliocascade evaluate`: one row per case, volumes only without ``--gt``; an implausible
    reference is evaluated, flagged and warned about on stderr (``metrics.evaluate_to_files``)."""
    from ..metrics import QC_COLUMN, evaluate_to_files

    if lesion_wise and gt is None:
        raise InputError(Path(pred), "--lesion-wise needs a reference (--gt)")
    qc = evaluate_to_files(Path(pred), gt, case_id, Path(out), pred_labels, gt_labels, pred_native, brain_images,
                           lesion_task if lesion_wise else None)
    if qc is not None and qc["decision"] == "fail":
        click.echo(f"warning: {gt}: implausible reference: {'; '.join(qc['reasons'])} (metrics written, "
                   f"flagged {QC_COLUMN}=0)", err=True)
    return 0


def report_command(run_dir: Path | None, metrics_files: tuple[Path, ...], out: Path,
                   failures_files: tuple[Path, ...] = (), case_files: Path | None = None,
                   models: tuple[Path, ...] = (), atlas: Path | None = None) -> int:
    """`gliocascade report`: exit 0 when there is something to report; files left out are warned about.

    ``failures_files`` (case_id, step, message CSVs: a run's failures.csv, or the records of
    refused Nextflow tasks) list the cases that never reached a metrics file. ``case_files`` (a
    case_id,role,path CSV) gives the files of case pages that are not in a run folder.
    """
    from ..report import report_from_files

    bad = report_from_files(run_dir, [Path(f) for f in metrics_files], Path(out), [Path(f) for f in failures_files],
                            case_files, [Path(m) for m in models], atlas)
    for path, problem in bad:
        click.echo(f"warning: {path}: {problem} (left out of the report)", err=True)
    return 0
