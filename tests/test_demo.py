"""`gliocascade demo --quick`: phantoms -> tiny training -> run on held-out phantoms -> report.

The quick setting trains for one epoch, so no accuracy is expected; the test checks that every
stage ran on the right data (held-out cases are not in the training split) and that a second
demo resumes without retraining or rewriting anything.
"""
from __future__ import annotations

import csv
import json

from gliocascade.demo import QUICK


def test_demo_quick_runs_and_resumes(tmp_path, cli):
    out = tmp_path / "demo"
    result = cli("demo", "--out", out, "--quick")
    assert result.exit_code == 0, result.output

    summary = json.loads((out / "demo_summary.json").read_text())
    assert summary["quick"] is True and summary["failed_cases"] == []
    assert summary["dice"]["cases"] == QUICK.n_test
    for region in ("WT", "TC", "ET"):
        assert 0.0 <= summary["dice"][region] <= 1.0

    card = json.loads((out / "model" / "model.json").read_text())
    assert card["config"]["name"] == "tiny"
    with open(out / "run" / "report" / "cohort_metrics.csv", newline="") as fh:
        reported = sorted(r["case_id"] for r in csv.DictReader(fh))
    assert len(reported) == QUICK.n_test
    trained_on = set(json.loads((out / "model" / "split.json").read_text())["train"])
    assert trained_on and not trained_on & set(reported)  # evaluated only on held-out phantoms
    assert (out / "run" / "report" / "report.html").read_text().count("heldout") >= QUICK.n_test

    stamps = {p: p.stat().st_mtime_ns for p in sorted((out / "model").rglob("*")) + sorted((out / "run").rglob("*"))
              if p.is_file()}
    again = cli("demo", "--out", out, "--quick")
    assert again.exit_code == 0, again.output
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
