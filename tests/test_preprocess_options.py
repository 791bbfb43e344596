"""`preprocess`, `run` and the Nextflow PREPROCESS module take the same preprocessing options.

A user who finds an option on one door expects it on the others; this keeps the three in step.
"""
from __future__ import annotations

import re

from nfcheck import ROOT, modules_config, params_defaults

from gliocascade.cli import main

# Options of `preprocess` that are per case or per process, set by the door itself.
PER_CASE = {"t1", "t1ce", "t2", "flair", "case_id", "out", "atlas", "threads", "verbose", "help"}
# `run` spells the backend for what it configures (preprocess runs among other steps).
RUN_NAME = {"backend": "registration_backend"}


def _options(command: str) -> dict[str, list[str]]:
    return {p.name: p.opts for p in main.commands[command].params}


def test_run_takes_every_preprocessing_option_of_preprocess():
    pre = set(_options("preprocess")) - PER_CASE
    run = set(_options("run"))
    missing = {RUN_NAME.get(name, name) for name in pre} - run
    assert not missing, f"run lacks preprocess options {sorted(missing)}"
    assert {"input_skull_stripped", "skull_strip", "affine", "n4", "atlas_via", "allow_qc_failure"} <= pre


def test_the_preprocess_module_passes_every_preprocessing_option_from_params():
    args = modules_config()["PREPROCESS"]["args"]
    params = params_defaults()
    for name, opts in _options("preprocess").items():
        if name in PER_CASE:
            continue
        flag = max(opts, key=len)
        assert re.search(rf"{re.escape(flag)}\b", args), f"PREPROCESS ext.args lacks {flag}"
        assert RUN_NAME.get(name, name) in params, f"nextflow.config lacks params.{RUN_NAME.get(name, name)}"


def test_run_forwards_the_skull_options_to_the_preprocess_step(monkeypatch, tmp_path):
    """What `run` is given reaches preprocess_case (the step's call, not just the option list)."""
    from gliocascade import preprocess, steps

    seen = {}
    monkeypatch.setattr(preprocess, "preprocess_case", lambda *a, **kw: seen.update(kw) or {})
    monkeypatch.setattr(steps, "_publish_folder", lambda stage, dest: None)
    paths = steps.CasePaths(tmp_path, "P1")
    opts = steps.RunOptions(models=[], out=tmp_path, input_skull_stripped="yes", skull_strip="hd-bet", n4=True)
    steps.step_preprocess({m: tmp_path / f"{m}.nii.gz" for m in ("t1", "t1ce", "t2", "flair")}, paths, opts)
    assert (seen["input_skull_stripped"], seen["skull_strip"], seen["n4"]) == ("yes", "hd-bet", True)
