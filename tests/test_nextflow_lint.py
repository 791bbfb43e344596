"""The pipeline passes the official Nextflow language server and has the expected structure.

`nextflow lint` is used where Nextflow is installed, else the language-server driver
../shared/tools/nf_lint.py (strict: warnings fail too). The DAG checks read the Mermaid graph the
language server builds from the real parser, so a process that is dropped or rewired fails.
"""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from nfcheck import NF_LINT, ROOT, linter, parse_mermaid, run_nf_lint


def _need_lint_driver() -> None:
    if not NF_LINT.is_file():
        pytest.skip(f"DAG checks need the language-server driver, not found at {NF_LINT}")


@pytest.fixture(scope="module")
def entry_lint() -> subprocess.CompletedProcess:
    """One language-server run: strict diagnostics of every file plus the entry workflow's DAG."""
    _need_lint_driver()
    return run_nf_lint("--strict", "--dag", "main.nf")


def test_every_nf_and_config_file_lints_clean(request):
    found = linter()
    if found is None:
        pytest.skip(f"neither `nextflow` on PATH nor {NF_LINT}: no linter to run")
    name, cmd = found
    print(f"\nlinting with: {name}", file=sys.stderr)
    if name.startswith("nextflow"):
        res = subprocess.run(cmd + [str(ROOT)], capture_output=True, text=True, timeout=600)
    else:
        res = request.getfixturevalue("entry_lint")
    out = res.stdout + res.stderr
    assert res.returncode == 0, f"{name} reported problems:\n{out[-6000:]}"
    if "diagnostics" in out:  # nf_lint.py's summary line: '-- N diagnostics, M files reported'
        assert "-- 0 diagnostics" in out, out[-3000:]


def test_lint_catches_an_undefined_variable(tmp_path):
    """Control: the same lint fails on a copy of the pipeline with one broken module."""
    _need_lint_driver()
    copy = tmp_path / "pipeline"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".git", ".venv", "python", "tests", "work",
                                                               "results*", "benchmarks", "containers"))
    module = copy / "modules" / "local" / "evaluate" / "main.nf"
    text = module.read_text()
    module.write_text(text.replace("--case-id ${meta.id}", "--case-id ${case_name}", 1))
    res = run_nf_lint("--strict", project=copy)
    assert res.returncode != 0
    assert "case_name" in res.stdout + res.stderr


def _dag(target: str):
    res = run_nf_lint("--dag", target)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return parse_mermaid(res.stdout)


def test_segment_workflow_runs_the_steps_in_order():
    _need_lint_driver()
    dag = _dag("workflows/segment.nf:GLIOCASCADE_SEGMENT")
    order = ["PREDICT", "POSTPROCESS", "EVALUATE", "REPORT"]
    assert sorted(set(dag.names.values())) == sorted(order)
    for a, b in zip(order, order[1:]):
        assert dag.before(a, b), f"{b} is not downstream of {a}"
    assert not dag.before("REPORT", "PREDICT")


def test_train_workflow_tunes_on_out_of_fold_predictions():
    _need_lint_driver()
    dag = _dag("workflows/train.nf:GLIOCASCADE_TRAIN")
    assert set(dag.names.values()) == {"TRAIN", "PREDICT_VALIDATION", "TUNE_THRESHOLD"}
    assert dag.before("TRAIN", "PREDICT_VALIDATION")
    assert dag.before("PREDICT_VALIDATION", "TUNE_THRESHOLD")


def test_input_workflow_converts_then_preprocesses():
    _need_lint_driver()
    dag = _dag("subworkflows/local/prepare_inputs/main.nf:PREPARE_INPUTS")
    assert set(dag.names.values()) == {"CONVERT", "PREPROCESS"}
    assert dag.before("CONVERT", "PREPROCESS")


def test_entry_workflow_chains_input_train_and_segment(entry_lint):
    assert entry_lint.returncode == 0, entry_lint.stdout[-3000:]
    dag = parse_mermaid(entry_lint.stdout)
    assert {"PREPARE_INPUTS", "PHANTOM_INPUT", "GLIOCASCADE_TRAIN", "GLIOCASCADE_SEGMENT"} <= set(dag.names.values())
    assert dag.before("PREPARE_INPUTS", "GLIOCASCADE_SEGMENT")
    assert dag.before("PHANTOM_INPUT", "GLIOCASCADE_TRAIN")
    assert dag.before("GLIOCASCADE_TRAIN", "GLIOCASCADE_SEGMENT")
