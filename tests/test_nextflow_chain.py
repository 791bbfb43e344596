"""The modules' command lines, run for real, chain into the `test` profile's pipeline.

Without a Nextflow runtime, each task is run as Nextflow would run it: inputs staged under the
names the process declares, ext.args of the `test` profile, the script's one `gliocascade`
command, then every declared output looked up. The chain is the test profile's: phantoms ->
train (2 folds) -> out-of-fold predictions -> tune-threshold -> predict held-out -> postprocess
-> evaluate -> report. It proves that what one process emits is what the next one reads.
"""
from __future__ import annotations

import csv
import json
import re
import shutil

import pytest

import nfdoor
from nfcheck import MODULES, ROOT, run_task, task_env

pytestmark = pytest.mark.slow

if shutil.which("gliocascade", path=task_env()["PATH"]) is None:  # as on a task's PATH in a container
    pytest.skip("the gliocascade console script is not installed", allow_module_level=True)


# The test profile's settings, on smaller phantoms to keep the suite fast.
SMALL = {"params.phantom_shape": "32 32 24"}


def _module(name: str):
    return MODULES / name / "main.nf"


def _models_arg(n: int) -> str:
    return " ".join(f"--model model_{i}" for i in range(1, n + 1))


def _split_key() -> str:
    """The key of model.json's split that the train workflow reads validation ids from."""
    text = (ROOT / "workflows" / "train.nf").read_text()
    return re.search(r"def ids = split\.(\w+)", text).group(1)


def _images(case) -> dict:
    """PHANTOM_INPUT caseFiles: a phantom folder's four images, as PREDICT takes them."""
    return {m: case / f"{case.name}_{m}.nii.gz" for m in nfdoor.MODALITIES}


def _row(case) -> nfdoor.Row:
    return nfdoor.Row({"meta.id": case.name, "meta.space": "brats", "meta.label_convention": "2019"},
                      _images(case), case / f"{case.name}_seg.nii.gz", None)


def test_test_profile_chain_runs_module_by_module(tmp_path):
    w = tmp_path
    train_dirs = run_task(_module("phantom"), w / "phantom_train", {},
                          {"meta.id": "train", "meta.n": "2", "meta.seed": "0", **SMALL})
    train_cases = next(iter(train_dirs.values()))
    assert [d.name for d in train_cases] == ["train000", "train001"]
    heldout = next(iter(run_task(_module("phantom"), w / "phantom_heldout", {},
                                 {"meta.id": "heldout", "meta.n": "1", "meta.seed": "1000", **SMALL}).values()))[0]

    rows = [_row(d) for d in train_cases]
    files, text = nfdoor.training_set(rows)
    sheet = w / "collect" / "train_samplesheet.csv"
    sheet.parent.mkdir(parents=True)
    sheet.write_text(text)
    models = []
    for fold in (0, 1):
        out = run_task(_module("train"), w / f"train_{fold}", {"files": files, "samplesheet": [sheet]},
                       {"meta.id": f"model_fold{fold}_seed0", "meta.fold": str(fold), "meta.folds": "2",
                        "meta.seed": "0"})
        models.append(out["${task.ext.prefix ?: meta.id}"][0])

    # out-of-fold: each case is predicted by the model whose validation split holds it
    key = _split_key()
    holders: dict[str, list] = {}
    for m in models:
        split = json.loads((m / "model.json").read_text())["split"]
        assert isinstance(split[key], list) and split[key], f"model.json split has no '{key}' list"
        for cid in split[key]:
            holders.setdefault(cid, []).append(m)
    assert sorted(holders) == [d.name for d in train_cases]
    preds = []
    for case in train_cases:
        out = run_task(_module("predict"), w / f"oof_{case.name}",
                       {**_images(case), "brainmask": [], "models": holders[case.name]},
                       {"meta.id": case.name, "model_args": _models_arg(len(holders[case.name]))},
                       process_name="PREDICT_VALIDATION")
        preds += out["${meta.id}_pred.nii.gz"]

    gts, ref_text = nfdoor.reference_set(rows)
    references = w / "collect" / "references.csv"
    references.write_text(ref_text)
    tuned = run_task(_module("tune_threshold"), w / "tune",
                     {"preds": preds, "gts": gts, "references": [references], "models": models},
                     {"meta.id": "out_of_fold", "model_args": " ".join(f"--model {m.name}" for m in models)})
    tuned_models = tuned["model_*"]
    assert [m.name for m in tuned_models] == [m.name for m in models]
    for original, copy in zip(models, tuned_models):
        assert "et_threshold" in json.loads((copy / "model.json").read_text())
        assert "et_threshold" not in json.loads((original / "model.json").read_text()), "inputs were modified"

    cid = heldout.name
    pred = run_task(_module("predict"), w / "predict", {**_images(heldout), "brainmask": [], "models": tuned_models},
                    {"meta.id": cid, "model_args": _models_arg(len(tuned_models))})["${meta.id}_pred.nii.gz"][0]
    seg = run_task(_module("postprocess"), w / "postprocess", {"pred": pred, "models": tuned_models},
                   {"meta.id": cid, "model_args": _models_arg(len(tuned_models)), "native_arg": ""}
                   )["${task.ext.prefix ?: meta.id}_seg.nii.gz"][0]
    metrics = run_task(_module("evaluate"), w / "evaluate",
                       {"seg": seg, "seg_native": [], "gt": heldout / f"{cid}_seg.nii.gz"},
                       {"meta.id": cid, "meta.label_convention": "2019",
                        "gt_arg": f"--gt reference/{cid}_seg.nii.gz"})["${task.ext.prefix ?: meta.id}_metrics.csv"][0]
    report = run_task(_module("report"), w / "report", {"metrics": [metrics]},
                      {"meta.id": "cohort", "metrics_args": f"--metrics metrics/{metrics.name}"})
    rows = list(csv.DictReader(report["report/cohort_metrics.csv"][0].open()))
    assert [r["case_id"] for r in rows] == [cid]
    for region in ("WT", "TC", "ET"):
        assert 0.0 <= float(rows[0][f"dice_{region}"]) <= 1.0
