"""The cohort report: one CSV of every case's metrics, summary statistics, and a self-contained HTML page.

A researcher checks a cohort by eye before trusting its numbers, so the page puts the summary
table and box plots first and then, per case, three orthogonal slices through the tumour with the
labels overlaid. Everything is inline (base64 PNG), so the page can be mailed or archived alone.

A bad metrics file does not stop the report: the other cases are reported and the bad file is
listed on the page and on stderr. `gliocascade report` exits 0 (with that warning) when at least
one metrics file was good, and 2 when none was.
"""
from __future__ import annotations

import base64
import html
import io as _io
import logging
from dataclasses import dataclass, field
from pathlib import Path

import click
import numpy as np
import pandas as pd

from .errors import InputError
from .io import atomic_path, load_nifti, same_grid
from .labels import REGIONS
from .metrics import METRICS

log = logging.getLogger(__name__)

STATISTICS = ("mean", "std", "median", "q1", "q3", "count")
# Overlay colours (RGB) per label value: necrosis/non-enhancing core, oedema, enhancing (2019 and 2023).
LABEL_COLOURS = {1: (0.86, 0.10, 0.10), 2: (0.10, 0.80, 0.20), 3: (1.00, 0.85, 0.00), 4: (1.00, 0.85, 0.00)}
LABEL_NAMES = {1: "necrosis / non-enhancing", 2: "oedema", 4: "enhancing (3 in 2023 maps)"}


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


def _overlay_rgba(labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    rgba = np.zeros(labels.shape + (4,), dtype=np.float32)
    for value, colour in LABEL_COLOURS.items():
        sel = labels == value
        rgba[sel, :3] = colour
        rgba[sel, 3] = alpha
    return rgba


def overlay_figure(seg_path: Path, background_path: Path | None, title: str) -> str:
    """Base64 PNG: axial, coronal and sagittal slices through the tumour centroid, labels in colour.

    Both images are turned to RAS for display only; a background on another grid is left out.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import nibabel as nib

    seg_img = nib.as_closest_canonical(load_nifti(seg_path))
    labels = np.rint(np.asarray(seg_img.dataobj, dtype=np.float32)).astype(np.int16)
    zooms = seg_img.header.get_zooms()[:3]
    background = None
    if background_path is not None:
        bg = load_nifti(background_path)
        if same_grid(bg.affine, bg.shape, load_nifti(seg_path).affine, labels.shape):
            background = np.asarray(nib.as_closest_canonical(bg).dataobj, dtype=np.float32)
        else:
            log.warning("%s: not on the grid of %s; overlay drawn without it", background_path, seg_path)
    if background is None:
        background = np.zeros(labels.shape, dtype=np.float32)
    tumour = np.argwhere(labels > 0)
    centre = tumour.mean(axis=0).round().astype(int) if tumour.size else np.array(labels.shape) // 2
    inside = background[background > 0]
    lo, hi = (np.percentile(inside, [1, 99]) if inside.size else (0.0, 1.0))
    views = [("axial", np.s_[:, :, centre[2]], zooms[1] / zooms[0]),
             ("coronal", np.s_[:, centre[1], :], zooms[2] / zooms[0]),
             ("sagittal", np.s_[centre[0], :, :], zooms[2] / zooms[1])]
    fig, axes = plt.subplots(1, 3, figsize=(7.5, 2.7))
    for ax, (name, sl, aspect) in zip(axes, views):
        ax.imshow(background[sl].T, cmap="gray", origin="lower", vmin=lo, vmax=max(hi, lo + 1e-6),
                  aspect=aspect, interpolation="nearest")
        ax.imshow(_overlay_rgba(labels[sl].T), origin="lower", aspect=aspect, interpolation="nearest")
        ax.set_title(name, fontsize=8)
        ax.axis("off")
        if name != "sagittal":  # RAS display: the patient's right is on the right (neurological)
            ax.text(0.99, 0.02, "R", transform=ax.transAxes, color="w", fontsize=7, ha="right")
    fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.86, bottom=0.01, wspace=0.04)
    return _png(fig)


def find_background(run_dir: Path, case_id: str) -> Path | None:
    """The case's T1Gd in BraTS space: preprocessed/, the case folder, then the T1Gd predict read.

    Cases given already in BraTS space are not copied into the run folder; their T1Gd path is
    recorded in ``provenance_predict.json`` (inputs -> t1ce -> path).
    """
    import json

    folder = Path(run_dir) / case_id
    for candidate in (folder / "preprocessed" / f"{case_id}_t1ce.nii.gz", folder / f"{case_id}_t1ce.nii.gz",
                      folder / f"{case_id}-t1c.nii.gz"):
        if candidate.is_file():
            return candidate
    try:
        record = json.loads((folder / "provenance_predict.json").read_text())
        recorded = Path(record["inputs"]["t1ce"]["path"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return recorded if recorded.is_file() else None


def run_dir_cases(run_dir: Path) -> list[str]:
    """Case ids of a run folder: subfolders holding ``<id>/<id>_seg.nii.gz``."""
    run_dir = Path(run_dir)
    return sorted(p.name for p in run_dir.iterdir() if p.is_dir() and (p / f"{p.name}_seg.nii.gz").is_file())


def run_dir_metrics(run_dir: Path) -> list[Path]:
    """The per-case metrics files of a run folder: ``OUT/<id>/<id>_metrics.csv``."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(run_dir, "run folder not found")
    return sorted(p / f"{p.name}_metrics.csv" for p in run_dir.iterdir()
                  if p.is_dir() and (p / f"{p.name}_metrics.csv").is_file())


# --------------------------------------------------------------------------- HTML

_CSS = """body{font-family:sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;font-size:12px}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}th{background:#eee}td.l,th.l{text-align:left}
.bad{color:#a00}.cases{display:flex;flex-wrap:wrap;gap:8px}.case{border:1px solid #ddd;padding:4px}
.case p{margin:2px;font-size:12px}img{display:block}"""


def _table(df: pd.DataFrame, left: tuple[str, ...] = ("case_id", "metric", "region", "file", "problem",
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


def _case_caption(cohort: pd.DataFrame, case_id: str) -> str:
    row = cohort[cohort["case_id"] == case_id]
    if row.empty:
        return ""
    parts = []
    for r in REGIONS:
        for m, fmt in (("dice", "Dice {:.3f}"), ("volume_pred_ml", "{:.1f} mL")):
            col = f"{m}_{r}"
            if col in row.columns and pd.notna(row[col].iloc[0]):
                parts.append(f"{r} " + fmt.format(float(row[col].iloc[0])))
                break
    return " · ".join(parts)


def render_html(cohort: pd.DataFrame, summary: pd.DataFrame, plots: dict[str, str],
                overlays: list[tuple[str, str]], bad: list[tuple[str, str]],
                failures: list[tuple[str, str]]) -> str:
    """The whole page as one string (images inline)."""
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>gliocascade cohort report</title>",
             f"<style>{_CSS}</style></head><body><h1>gliocascade cohort report</h1>",
             f"<p>{len(cohort)} case(s) reported; {len(failures)} failed case(s); "
             f"{len(bad)} unusable metrics file(s).</p>"]
    if failures:
        parts.append("<h2 class='bad'>Failed cases</h2>")
        parts.append(_table(pd.DataFrame(failures, columns=["case_id", "message"])))
    if bad:
        parts.append("<h2 class='bad'>Unusable metrics files</h2>")
        parts.append(_table(pd.DataFrame(bad, columns=["file", "problem"])))
    parts.append("<h2>Summary</h2>")
    parts.append(_table(summary) if not summary.empty else "<p>No metrics.</p>")
    if plots:
        parts.append("<h2>Distributions per region</h2>")
        parts += [f"<img alt='{r} box plots' src='data:image/png;base64,{png}'>" for r, png in plots.items()]
    if overlays:
        legend = ", ".join(f"<span style='color:rgb({','.join(str(int(255 * c)) for c in LABEL_COLOURS[v])})'>"
                           f"&#9632;</span> {html.escape(n)}" for v, n in LABEL_NAMES.items())
        parts.append(f"<h2>Cases</h2><p>{legend}</p><div class='cases'>")
        for case_id, png in overlays:
            caption = html.escape(f"{case_id}  {_case_caption(cohort, case_id)}")
            parts.append(f"<div class='case' id='{html.escape(case_id)}'><p>{caption}</p>"
                         f"<img alt='{html.escape(case_id)} overlay' src='data:image/png;base64,{png}'></div>")
        parts.append("</div>")
    if not cohort.empty:
        parts.append("<h2>Per-case metrics</h2>")
        parts.append(_table(cohort))
    parts.append("</body></html>\n")
    return "\n".join(parts)


# --------------------------------------------------------------------------- entry points

def build_report(metrics_files: list[Path], out: Path, run_dir: Path | None = None,
                 failures: list[tuple[str, str]] | None = None, quiet: bool = False,
                 case_ids: list[str] | None = None) -> ReportResult:
    """Write ``out/{cohort_metrics.csv, summary.csv, report.html}`` from per-case metrics files.

    With ``run_dir``, every ``run_dir/<id>/<id>_seg.nii.gz`` gets an overlay on that case's T1Gd
    (only the ``case_ids`` given, when given: a run's report leaves out case folders of earlier runs).
    ``failures`` (case id, message) are listed in a "Failed cases" table. Bad metrics files are
    skipped, listed on the page, logged as warnings (unless ``quiet``) and returned in ``bad_files``.
    """
    out = Path(out)
    failures = sorted(failures or [])  # by case id: the same table whichever door collected them
    cohort, bad = collect_metrics([Path(f) for f in metrics_files])
    summary = summarise(cohort)
    plots = {r: p for r in REGIONS if (p := box_plot(cohort, r)) is not None}
    overlays = []
    if run_dir is not None and Path(run_dir).is_dir():
        from tqdm import tqdm

        wanted = None if case_ids is None else set(case_ids)
        cases = [c for c in run_dir_cases(Path(run_dir)) if wanted is None or c in wanted]
        for case_id in tqdm(cases, desc="overlays", unit="case", disable=None):
            seg = Path(run_dir) / case_id / f"{case_id}_seg.nii.gz"
            try:
                overlays.append((case_id, overlay_figure(seg, find_background(Path(run_dir), case_id), case_id)))
            except InputError as exc:
                bad.append((str(exc.path or seg), f"no overlay: {exc.problem}"))
    if not quiet:
        for path, problem in bad:
            log.warning("%s: %s (left out of the report)", path, problem)
    page = render_html(cohort, summary, plots, overlays, bad, failures)
    out.mkdir(parents=True, exist_ok=True)
    paths = ReportResult(out / "report.html", out / "cohort_metrics.csv", out / "summary.csv", len(cohort), bad)
    with atomic_path(paths.cohort_csv) as tmp:
        cohort.to_csv(tmp, index=False)
    with atomic_path(paths.summary_csv) as tmp:
        summary.to_csv(tmp, index=False)
    with atomic_path(paths.html) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return paths


def report_command(run_dir: Path | None, metrics_files: tuple[Path, ...], out: Path,
                   failures_files: tuple[Path, ...] = ()) -> int:
    """CLI body of `gliocascade report`: exit 0 when there is something to report.

    ``failures_files`` (case_id, step, message CSVs: a run's failures.csv, or the records of
    refused Nextflow tasks) list the cases that never reached a metrics file.
    """
    from .refusals import failures_text, read_failures

    records = sorted(r for f in failures_files for r in read_failures(f))
    failures = [(cid, f"{step}: {message}") for cid, step, message in records]
    files = [Path(f) for f in metrics_files]
    if run_dir is not None:
        given = {f.resolve() for f in files}
        files += [f for f in run_dir_metrics(Path(run_dir)) if f.resolve() not in given]
    if not files and not failures:
        raise InputError(run_dir, "no metrics files (give --metrics F or a --run-dir holding <id>/<id>_metrics.csv)")
    cohort, bad = collect_metrics(files)
    if cohort.empty and not failures:
        path, problem = bad[0]
        raise InputError(path, f"{problem} (and {len(bad) - 1} more unusable)" if len(bad) > 1 else problem)
    result = build_report(files, Path(out), run_dir, failures=failures, quiet=True)
    with atomic_path(Path(out) / "failures.csv") as tmp:  # as `run` writes report/failures.csv
        tmp.write_text(failures_text(records))
    for path, problem in result.bad_files:
        click.echo(f"warning: {path}: {problem} (left out of the report)", err=True)
    return 0
