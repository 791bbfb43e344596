"""Time the cohort report (cohort page, 200 case pages, thumbnails, flags) on 200 64^3 phantom cases.

The cohort page must stay light for large cohorts (target: under 2 MB for 200 cases) and the whole
report must be written in under 2 minutes on 2 cores. The run folder is built first (not timed):
each case has its segmentation (the phantom's labels shifted, so metrics are not perfect), T1Gd,
FLAIR, a reference, metrics and provenance as `gliocascade run` leaves them.

Usage: python benchmarks/report_bench.py [--n 200] [--size 64] [--out benchmarks/results/report.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np


def make_run(root: Path, n: int, size: int) -> Path:
    """A run folder of ``n`` phantom cases (BraTS-space rows) with references, metrics and provenance."""
    import nibabel as nib

    from gliocascade.io import read_labels, write_image, write_labels
    from gliocascade.metrics import evaluate_case, write_metrics_csv
    from gliocascade.phantom import write_phantoms

    cases = write_phantoms(root / "phantoms", n=n, seed=0, shape=(size, size, size))
    run = root / "run"
    for k, case in enumerate(cases):
        cid = case.name
        folder = run / cid
        folder.mkdir(parents=True)
        labels, aff = read_labels(case / f"{cid}_seg.nii.gz")
        write_labels(folder / f"{cid}_seg.nii.gz", np.roll(labels, k % 4, axis=0), aff)
        for m in ("t1ce", "flair"):
            img = nib.load(case / f"{cid}_{m}.nii.gz")
            write_image(folder / f"{cid}_{m}.nii.gz", np.asarray(img.dataobj, dtype=np.float32), img.affine)
        gt = case / f"{cid}_seg.nii.gz"
        write_metrics_csv([evaluate_case(folder / f"{cid}_seg.nii.gz", gt, cid)], folder / f"{cid}_metrics.csv")
        (folder / "provenance_evaluate.json").write_text(json.dumps(
            {"inputs": {"gt": {"path": str(gt)}}, "parameters": {"pred_labels": "2019", "gt_labels": "2019"},
             "timings_s": {"total": 0.4}, "command": "gliocascade run"}))
        (folder / "provenance_predict.json").write_text(json.dumps(
            {"command": "gliocascade run", "timings_s": {"total": 2.0}, "models": [{"folder": "model"}],
             "warnings": ["model model: ET threshold not tuned"]}))
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "report.json")
    args = parser.parse_args()

    from gliocascade.report import build_report

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        run = make_run(Path(tmp), args.n, args.size)
        t_setup = time.perf_counter() - t0
        metrics = sorted(run.glob("*/*_metrics.csv"))
        t0 = time.perf_counter()
        res = build_report(metrics, Path(tmp) / "report", run, quiet=True)
        seconds = time.perf_counter() - t0
        cohort_bytes = res.html.stat().st_size
        pages = sorted((Path(tmp) / "report" / "cases").glob("*.html"))
        page_bytes = [p.stat().st_size for p in pages]
    result = {
        "n_cases": args.n, "shape": [args.size] * 3, "report_s": round(seconds, 2), "setup_s": round(t_setup, 2),
        "cohort_page_bytes": cohort_bytes, "cohort_page_bytes_per_case": round(cohort_bytes / args.n, 1),
        "case_pages": len(page_bytes), "case_page_bytes_median": int(np.median(page_bytes)) if page_bytes else 0,
        "targets": {"report_s": 120, "cohort_page_bytes": 2_000_000},
        "cpu_count": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
