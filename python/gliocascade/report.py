"""The cohort report: one CSV of every case's metrics, summary statistics, and a self-contained HTML page.

A researcher checks a cohort by eye before trusting its numbers, so the page puts the summary
table and box plots first and then one sortable row per case with its QC flags, warnings (the
model's and the label maps') and a thumbnail, linking to the case's own page (``cases/<id>.html``:
mosaic, orthogonal slices, reference, preprocessing QC, facts). Everything is inline (base64 PNG), so each page can be mailed
or archived alone; the cohort page holds no image but thumbnails and box plots, so it stays small
for hundreds of cases.

A bad metrics file does not stop the report: the other cases are reported and the bad file is
listed on the page and on stderr. `gliocascade report` exits 0 (with that warning) when at least
one metrics file was good, and 2 when none was.
"""
from __future__ import annotations

import base64
import html
import io as _io
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .errors import InputError
from .io import atomic_path
from .qc_flags import (MAX_COMPONENTS, MAX_WT_ML, MIN_COHORT_FOR_OUTLIERS, MIN_COMPONENT_VOXELS, TumourFacts,
                       case_flags, cohort_flags, overridden_checks)
from .report_html import TABLE_CSS, CaseRow, case_table
from .labels import REGIONS
from .layout import COHORT_METRICS_NAME, metrics_name, seg_name
from .metrics import METRICS

log = logging.getLogger(__name__)

STATISTICS = ("mean", "std", "median", "q1", "q3", "count")
FLAGS_COLUMN = "qc_flags"


@dataclass
class ReportResult:
    """What was written, and which metrics files could not be used (path, problem)."""

    html: Path
    cohort_csv: Path
    summary_csv: Path
    n_cases: int
    bad_files: list[tuple[str, str]] = field(default_factory=list)


# --------------------------------------------------------------------------- tables

def _column_order(columns: list[str]) -> list[str]:
    known = ["case_id"] + [f"{m}_{r}" for r in REGIONS for m in METRICS]
    return [c for c in known if c in columns] + sorted(c for c in columns if c not in known)


def read_metrics_file(path: Path) -> pd.DataFrame:
    """One per-case metrics CSV, checked: a case_id column and numeric metric columns."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "metrics file not found")
    try:
        df = pd.read_csv(path, dtype={"case_id": str})
    except Exception as exc:  # pandas raises several types for malformed CSV
        raise InputError(path, f"not a readable CSV ({type(exc).__name__}: {exc})") from None
    if "case_id" not in df.columns:
        raise InputError(path, "missing column 'case_id'")
    if df.empty:
        raise InputError(path, "no rows")
    if df["case_id"].isna().any():
        raise InputError(path, "empty case_id")
    metric_cols = [c for c in df.columns if c != "case_id"]
    if not metric_cols:
        raise InputError(path, "no metric columns")
    for c in metric_cols:
        values = pd.to_numeric(df[c], errors="coerce")
        if (values.isna() & df[c].notna()).any():
            raise InputError(path, f"column {c!r} holds non-numeric values")
        df[c] = values.astype(float)
    return df


def collect_metrics(files: list[Path]) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """All good files' rows (ordered columns, sorted by case) and the (path, problem) of the bad ones."""
    frames, bad, seen = [], [], set()
    for f in files:
        try:
            df = read_metrics_file(Path(f))
        except InputError as exc:
            bad.append((str(f), exc.problem))
            continue
        dup = sorted(set(df["case_id"]) & seen)
        if dup:
            bad.append((str(f), f"case_id {dup[0]!r} already reported by another file"))
            continue
        seen.update(df["case_id"])
        frames.append(df)
    if not frames:
        return pd.DataFrame(columns=["case_id"]), bad
    cohort = pd.concat(frames, ignore_index=True)
    cohort = cohort[_column_order(list(cohort.columns))]
    return cohort.sort_values("case_id", kind="stable").reset_index(drop=True), bad


def summarise(cohort: pd.DataFrame) -> pd.DataFrame:
    """Mean, std, median, quartiles and the case count per metric and region (NaN cells not counted)."""
    rows = []
    for col in cohort.columns:
        if col == "case_id":
            continue
        metric, _, region = col.rpartition("_")
        if region not in REGIONS:
            metric, region = col, ""
        v = cohort[col].dropna().astype(float)
        rows.append({"metric": metric, "region": region,
                     "mean": v.mean(), "std": v.std(ddof=1), "median": v.median(),
                     "q1": v.quantile(0.25), "q3": v.quantile(0.75), "count": int(v.size)})
    return pd.DataFrame(rows, columns=["metric", "region", *STATISTICS])


# --------------------------------------------------------------------------- figures

def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=72)  # fixed layouts: tight bboxes cost seconds per figure
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def box_plot(cohort: pd.DataFrame, region: str) -> str | None:
    """Base64 PNG of one region's metrics as box plots with every case as a dot (None without data)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = [f"{m}_{region}" for m in METRICS if f"{m}_{region}" in cohort.columns]
    cols = [c for c in cols if cohort[c].notna().any()]
    if not cols:
        return None
    fig, axes = plt.subplots(1, len(cols), figsize=(2.0 * len(cols), 2.8), squeeze=False)
    rng = np.random.default_rng(0)
    for ax, col in zip(axes[0], cols):
        v = cohort[col].dropna().to_numpy(dtype=float)
        ax.boxplot(v, widths=0.5, showfliers=False)
        ax.scatter(1 + rng.uniform(-0.12, 0.12, v.size), v, s=8, alpha=0.6, color="tab:blue")
        ax.set_title(col.rpartition("_")[0].replace("_", " "), fontsize=9)
        ax.set_xticks([])
        ax.tick_params(labelsize=7)
    fig.suptitle(region, fontsize=11)
    fig.subplots_adjust(left=0.35 / len(cols), right=0.98, top=0.84, bottom=0.04, wspace=0.6)
    return _png(fig)


def find_background(run_dir: Path, case_id: str) -> Path | None:
    """The case's T1Gd in BraTS space: preprocessed/, the case folder, then the T1Gd predict read.

    Cases given already in BraTS space are not copied into the run folder; their T1Gd path is
    recorded in ``provenance_predict.json`` (inputs -> t1ce -> path).
    """
    from .report_case import find_modality

    return find_modality(Path(run_dir), case_id, "t1ce")


def run_dir_cases(run_dir: Path) -> list[str]:
    """Case ids of a run folder: subfolders holding their final labels (``layout.seg_name``)."""
    run_dir = Path(run_dir)
    return sorted(p.name for p in run_dir.iterdir() if p.is_dir() and (p / seg_name(p.name)).is_file())


def run_dir_metrics(run_dir: Path) -> list[Path]:
    """The per-case metrics files of a run folder (``OUT/<id>/`` + ``layout.metrics_name``)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(run_dir, "run folder not found")
    return sorted(p / metrics_name(p.name) for p in run_dir.iterdir()
                  if p.is_dir() and (p / metrics_name(p.name)).is_file())


# --------------------------------------------------------------------------- HTML

_CSS = """body{font-family:sans-serif;margin:1.5em;color:#222;max-width:1400px}
table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}
th{background:#eee}td.l,th.l{text-align:left}.bad{color:#a00}img{display:inline-block}"""
UNITS = {"hd95": "mm", "volume_pred_ml": "mL", "volume_ref_ml": "mL"}


def _table(df: pd.DataFrame, left: tuple[str, ...] = ("case_id", "metric", "unit", "region", "file", "problem",
                                                     "message")) -> str:
    head = "".join(f'<th class="{"l" if c in left else ""}">{html.escape(str(c))}</th>' for c in df.columns)
    body = []
    for _, row in df.iterrows():
        cells = []
        for c in df.columns:
            v = row[c]
            text = "" if pd.isna(v) else (f"{v:.4g}" if isinstance(v, float) else str(v))
            cells.append(f'<td class="{"l" if c in left else ""}">{html.escape(text)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def summary_with_units(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary table with a unit column after the metric (Dice, sensitivity, specificity: none)."""
    shown = summary.copy()
    shown.insert(1, "unit", [UNITS.get(m, "") for m in shown["metric"]])
    return shown


def render_html(cohort: pd.DataFrame, summary: pd.DataFrame, plots: dict[str, str],
                rows: list[CaseRow], bad: list[tuple[str, str]],
                failures: list[tuple[str, str]]) -> str:
    """The cohort page as one string: counts, failures, summary with units, box plots, the case table."""
    n_flagged = sum(1 for r in rows if r.flags)
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>gliocascade cohort report</title>",
             f"<style>{_CSS}\n{TABLE_CSS}</style></head><body><h1>gliocascade cohort report</h1>",
             f"<p>{len(cohort)} case(s) reported; {len(failures)} failed case(s); "
             f"{len(bad)} unusable metrics file(s); {n_flagged} flagged case(s).</p>"]
    if failures:
        parts.append("<h2 class='bad'>Failed cases</h2>")
        parts.append(_table(pd.DataFrame(failures, columns=["case_id", "message"])))
    if bad:
        parts.append("<h2 class='bad'>Unusable metrics files</h2>")
        parts.append(_table(pd.DataFrame(bad, columns=["file", "problem"])))
    parts.append("<h2>Summary</h2>")
    parts.append(_table(summary_with_units(summary)) if not summary.empty else "<p>No metrics.</p>")
    if plots:
        parts.append("<h2>Distributions per region</h2>")
        parts += [f"<img alt='{r} box plots' src='data:image/png;base64,{png}'>" for r, png in plots.items()]
    if rows:
        parts.append("<h2>Cases</h2><p>Click a header to sort; a case name opens its page. Flags: overridden QC, "
                     f"empty prediction, WT &gt; {MAX_WT_ML:.0f} mL, &gt; {MAX_COMPONENTS} components of "
                     f"&ge; {MIN_COMPONENT_VOXELS} voxels, WT Dice or WT volume beyond 1.5 IQR "
                     f"(cohorts of {MIN_COHORT_FOR_OUTLIERS} or more), failed steps.</p>")
        parts.append(case_table(cohort, rows))
    parts.append("</body></html>\n")
    return "\n".join(parts)


# --------------------------------------------------------------------------- entry points

def _metrics_facts(row: pd.Series | None) -> TumourFacts | None:
    """Without the label map only the WT volume is known (components unknown: not flagged)."""
    if row is None or "volume_pred_ml_WT" not in row.index or pd.isna(row["volume_pred_ml_WT"]):
        return None
    return TumourFacts(float(row["volume_pred_ml_WT"]), 0, 0)


def case_sources(run_dir: Path | None, case_ids: list[str] | None,
                 case_files: dict[str, dict[str, Path]] | None) -> dict[str, dict[str, Path]]:
    """Case id -> role -> file of every case that gets a page: the run folder's (only ``case_ids``
    when given), then those of a case-files list (``case_files.py``)."""
    from .report_case import run_dir_files

    sources: dict[str, dict[str, Path]] = {}
    if run_dir is not None and Path(run_dir).is_dir():
        wanted = None if case_ids is None else set(case_ids)
        sources = {c: run_dir_files(Path(run_dir), c) for c in run_dir_cases(Path(run_dir))
                   if wanted is None or c in wanted}
    sources.update(case_files or {})
    return sources


def model_cards(models: list[Path]) -> dict[str, dict]:
    """model.json sha256 -> card of each model folder given to the report (pages find cards by hash)."""
    from .model_card import card_sha256, read_card

    return {card_sha256(m): read_card(m) for m in models}


def case_rows(cohort: pd.DataFrame, out: Path, sources: dict[str, dict[str, Path]],
              failures: list[tuple[str, str]], bad: list[tuple[str, str]], case_pages: bool = True,
              cards: dict[str, dict] | None = None, atlas: Path | None = None) -> list[CaseRow]:
    """One row per reported or failed case, with flags; writes ``out/cases/<id>.html`` for each case of
    ``sources`` (see :func:`case_sources`)."""
    from .report_case import load_case
    from .report_figures import thumbnail_b64
    from .report_page import render_case_page, write_case_page

    metrics = {str(r["case_id"]): r for _, r in cohort.iterrows()}
    ids = list(metrics)
    on_disk = list(sources)
    ids += [c for c in on_disk if c not in metrics]
    failed = dict(failures)
    ids += [c for c in failed if c not in ids]
    rows, loaded, own_flags, wt_ml = {}, {}, {}, {}
    from tqdm import tqdm

    for case_id in tqdm(ids, desc="case pages", unit="case", disable=None):
        row = CaseRow(case_id)
        facts = _metrics_facts(metrics.get(case_id))
        overridden: list[str] = []
        if case_id in on_disk:
            try:
                data = load_case(case_id, sources[case_id])
            except InputError as exc:
                bad.append((str(exc.path or case_id), f"no case page: {exc.problem}"))
            else:
                loaded[case_id] = data
                # The metrics' WT volume when there is one (it may come from the native grid): the
                # flags then agree with the cohort table, and with a report built from metrics alone.
                facts = replace(data.facts(), wt_ml=facts.wt_ml) if facts is not None else data.facts()
                overridden = overridden_checks(data.provenance)
                row.warnings = data.warnings()
                row.thumbnail = thumbnail_b64(data.labels, data.t1ce)
        values = metrics.get(case_id)
        ref_qc = None if values is None or pd.isna(values.get("qc_reference", np.nan)) else bool(values["qc_reference"])
        own_flags[case_id] = case_flags(facts, overridden, failed.get(case_id), ref_qc)
        if facts is not None:
            wt_ml[case_id] = facts.wt_ml
        rows[case_id] = row
    dice = {k: float(r["dice_WT"]) for k, r in metrics.items() if "dice_WT" in r.index}
    flags = cohort_flags(own_flags, dice, wt_ml)
    for case_id, row in rows.items():
        row.flags = flags.get(case_id, [])
        data = loaded.pop(case_id, None)
        if data is not None and case_pages:
            values = metrics.get(case_id)
            page = render_case_page(data, {} if values is None else values.drop("case_id").to_dict(), row.flags,
                                    cards, atlas)
            write_case_page(out / "cases" / f"{case_id}.html", page)
            row.page = f"cases/{case_id}.html"
    written = {f"{r.case_id}.html" for r in rows.values() if r.page}
    for stale in (out / "cases").glob("*.html") if (out / "cases").is_dir() else ():
        if stale.name not in written:  # a page of a case no longer reported would contradict the cohort page
            stale.unlink()
    return list(rows.values())


def build_report(metrics_files: list[Path], out: Path, run_dir: Path | None = None,
                 failures: list[tuple[str, str]] | None = None, quiet: bool = False,
                 case_ids: list[str] | None = None, case_pages: bool = True,
                 case_files: dict[str, dict[str, Path]] | None = None, models: list[Path] = (),
                 atlas: Path | None = None) -> ReportResult:
    """Write ``out/{cohort_metrics.csv, summary.csv, report.html}`` (and ``out/cases/<id>.html``).

    With ``run_dir``, every ``run_dir/<id>/<id>_seg.nii.gz`` gets a case page and a thumbnail
    (only the ``case_ids`` given, when given: a run's report leaves out case folders of earlier runs);
    so does every case of ``case_files`` (role -> file per case, as ``case_files.read_case_files``
    reads them: a workflow engine's staged files). ``models`` and ``atlas``: the model folders whose
    cards and the atlas whose brain outline the pages show when provenance names folders that are
    not there.
    ``failures`` (case id, message) are listed in a "Failed cases" table and flagged. Bad metrics
    files are skipped, listed on the page, logged as warnings (unless ``quiet``) and returned in
    ``bad_files``. ``cohort_metrics.csv`` gains a ``qc_flags`` column (flags joined by "; ").
    """
    out = Path(out)
    failures = sorted(failures or [])  # by case id: the same table whichever door collected them
    cohort, bad = collect_metrics([Path(f) for f in metrics_files])
    summary = summarise(cohort)
    plots = {r: p for r in REGIONS if (p := box_plot(cohort, r)) is not None}
    out.mkdir(parents=True, exist_ok=True)
    sources = case_sources(Path(run_dir) if run_dir is not None else None, case_ids, case_files)
    rows = case_rows(cohort, out, sources, failures, bad, case_pages, model_cards(list(models)),
                     Path(atlas) if atlas is not None else None)
    if not quiet:
        for path, problem in bad:
            log.warning("%s: %s (left out of the report)", path, problem)
    page = render_html(cohort, summary, plots, rows, bad, failures)
    flags = {r.case_id: "; ".join(r.flags) for r in rows}
    table = cohort.copy()
    table[FLAGS_COLUMN] = [flags.get(str(c), "") for c in table["case_id"]]
    paths = ReportResult(out / "report.html", out / COHORT_METRICS_NAME, out / "summary.csv", len(cohort), bad)
    with atomic_path(paths.cohort_csv) as tmp:
        table.to_csv(tmp, index=False)
    with atomic_path(paths.summary_csv) as tmp:
        summary.to_csv(tmp, index=False)
    with atomic_path(paths.html) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return paths


def report_from_files(run_dir: Path | None, metrics_files: Sequence[Path], out: Path,
                      failures_files: Sequence[Path] = (), case_files: Path | None = None,
                      models: Sequence[Path] = (), atlas: Path | None = None) -> list[tuple[Path, str]]:
    """Build the report in ``out`` from metrics files and/or a run folder; returns the files left out
    (path, problem). An InputError when there is nothing to report.

    ``failures_files`` (case_id, step, message CSVs: a run's failures.csv, or the records of
    refused Nextflow tasks) list the cases that never reached a metrics file. ``case_files`` (a
    case_id,role,path CSV) gives the files of case pages that are not in a run folder.
    """
    from .case_files import read_case_files
    from .refusals import failures_text, read_failures

    staged = read_case_files(Path(case_files)) if case_files is not None else None

    records = sorted(r for f in failures_files for r in read_failures(f))
    failures = [(cid, f"{step}: {message}") for cid, step, message in records]
    files = [Path(f) for f in metrics_files]
    if run_dir is not None:
        given = {f.resolve() for f in files}
        files += [f for f in run_dir_metrics(Path(run_dir)) if f.resolve() not in given]
    if not files and not failures:
        holding = f"<id>/{metrics_name('<id>')}"
        raise InputError(run_dir, f"no metrics files (give metrics files or a run folder holding {holding})")
    cohort, bad = collect_metrics(files)
    if cohort.empty and not failures:
        path, problem = bad[0]
        raise InputError(path, f"{problem} (and {len(bad) - 1} more unusable)" if len(bad) > 1 else problem)
    result = build_report(files, Path(out), run_dir, failures=failures, quiet=True, case_files=staged,
                          models=[Path(m) for m in models], atlas=atlas)
    with atomic_path(Path(out) / "failures.csv") as tmp:  # as `run` writes report/failures.csv
        tmp.write_text(failures_text(records))
    return list(result.bad_files)
