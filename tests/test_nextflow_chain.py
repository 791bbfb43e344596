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
import subprocess

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
        preds += out["${task.ext.prefix ?: meta.id}_pred.nii.gz"]

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
                    {"meta.id": cid, "model_args": _models_arg(len(tuned_models))})["${task.ext.prefix ?: meta.id}_pred.nii.gz"][0]
    seg = run_task(_module("postprocess"), w / "postprocess", {"pred": pred, "models": tuned_models},
                   {"meta.id": cid, "model_args": _models_arg(len(tuned_models)), "native_arg": ""}
                   )["${task.ext.prefix ?: meta.id}_seg.nii.gz"][0]
    metrics = run_task(_module("evaluate"), w / "evaluate",
                       {"seg": seg, "seg_native": [], "gt": heldout / f"{cid}_seg.nii.gz"},
                       {"meta.id": cid, "meta.label_convention": "2019",
                        "gt_arg": f"--gt reference/{cid}_seg.nii.gz"})["${task.ext.prefix ?: meta.id}_metrics.csv"][0]
    report = run_task(_module("report"), w / "report", {"metrics": [metrics]},
                      {"meta.id": "cohort", "metrics_args": f"--metrics metrics/{metrics.name}", "model_args": ""})
    rows = list(csv.DictReader(report["${task.ext.prefix ?: 'report'}/cohort_metrics.csv"][0].open()))
    assert [r["case_id"] for r in rows] == [cid]
    for region in ("WT", "TC", "ET"):
        assert 0.0 <= float(rows[0][f"dice_{region}"]) <= 1.0


# --------------------------------------------------------------------------- REPORT: the pages of run's report

IMAGE = re.compile(r"<img class='slice' data-view='(\w+)' data-slice='(\d+)' data-what='([^']*)'[^>]* src='([^']+)'")
THUMB = re.compile(r"<img alt='([^']+) thumbnail' src='([^']+)'")


def _cohort(path):
    with open(path, newline="") as fh:
        return {r["case_id"]: r for r in csv.DictReader(fh)}


def _models_table(page: str) -> str:
    """The case page's model table without the folder cell (run names the folder, Nextflow a staged copy)."""
    table = re.search(r"<table class='models'>.*?</table>", page, re.S).group(0)
    return re.sub(r"<tr><td>[^<]*<br>", "<tr><td>", table)


@pytest.mark.realdata
def test_nextflow_report_has_the_case_pages_thumbnails_and_qc_flags_of_run(tmp_path, data_dir, tiny_model):
    """One sheet through both doors: a phantom BraTS-space row with its reference, one refused, and the
    raw TCGA-FG-6692 exam (2x in-plane downsampled) with a volunteer's T1 in place of its own, kept by
    --allow-qc-failure (params.allow_qc_failure). REPORT gets the segmentations, images, references,
    provenance and refusals (segment.nf), so its case pages, thumbnails and qc_flags are run's."""
    import SimpleITK as sitk

    from gliocascade.phantom import write_phantoms

    a, c = write_phantoms(tmp_path / "cases", n=2, seed=1200, shape=(64, 64, 48))
    (c / f"{c.name}_t2.nii.gz").write_bytes(b"\x1f\x8b broken")  # refused by predict in both doors
    native = data_dir / "native" / "TCGA-FG-6692"
    small = {}
    for m, name in (("t1ce", "t1c"), ("t2", "t2"), ("flair", "flair")):
        small[m] = tmp_path / "exam" / f"small_{m}.nii.gz"
        small[m].parent.mkdir(exist_ok=True)
        sitk.WriteImage(sitk.Shrink(sitk.ReadImage(str(native / f"TCGA-FG-6692_{name}.nii.gz")), [2, 2, 1]),
                        str(small[m]))
    small["t1"] = (data_dir / "dicom" / "dcm_qa_decubitus_HFS" / "Ref_regenerated_dcm2niix_v1.0.20260724"
                   / "t1_fl2d_sag_20220407150138.nii.gz")  # another person's T1: fails t1_to_t1ce
    files = lambda d: ",".join(str(d / f"{d.name}_{m}.nii.gz") for m in nfdoor.MODALITIES)  # noqa: E731
    sheet = tmp_path / "s.csv"
    sheet.write_text("case_id,t1,t1ce,t2,flair,space,seg\n"
                     f"PA,{files(a)},brats,{a / (a.name + '_seg.nii.gz')}\n"
                     f"PC,{files(c)},brats,\n"
                     f"RAW,{','.join(str(small[m]) for m in nfdoor.MODALITIES)},native,\n")
    atlas = data_dir / "atlas"
    env = {**task_env(), "OMP_NUM_THREADS": "1"}
    run_out = tmp_path / "run"
    proc = subprocess.run(["gliocascade", "run", "--samplesheet", str(sheet), "--model", str(tiny_model), "--out",
                           str(run_out), "--tta", "1", "--device", "cpu", "--atlas", str(atlas), "--allow-qc-failure"],
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 1, proc.stderr[-3000:]  # PC fails, the others finish
    nf_out = tmp_path / "nf"
    dropped = nfdoor.segment(sheet, [tiny_model], nf_out, tmp_path / "work", atlas=atlas, env={"OMP_NUM_THREADS": "1"},
                             params={"params.tta": "1", "params.allow_qc_failure": "true"})
    assert dropped == ["PC"]

    for out in (run_out, nf_out):  # preprocess kept the case and said why, in both doors
        qc = json.loads((out / "RAW" / "preprocessed" / "provenance_preprocess.json").read_text())["qc"]
        assert qc["decision"] == "overridden" and qc["checks"]["t1_to_t1ce"]["passed"] is False
        assert [n for n, chk in qc["checks"].items() if not chk["passed"]] == ["t1_to_t1ce"]
        assert sorted(p.name for p in (out / "report" / "cases").iterdir()) == ["PA.html", "RAW.html"]

    run_rows, nf_rows = _cohort(run_out / "report" / "cohort_metrics.csv"), _cohort(nf_out / "report" / "cohort_metrics.csv")
    assert run_rows == nf_rows  # every column, qc_flags included
    assert nf_rows["RAW"]["qc_flags"].startswith("QC overridden: preprocess (t1_to_t1ce): case RAW, t1: does not match")

    run_page, nf_page = ((out / "report" / "report.html").read_text() for out in (run_out, nf_out))
    assert dict(THUMB.findall(nf_page)) == dict(THUMB.findall(run_page)) and set(dict(THUMB.findall(nf_page))) == {
        "PA", "RAW"}
    for page in (run_page, nf_page):
        assert "failed: predict:" in page and f"{c.name}_t2.nii.gz" in page  # the refused case, flagged
        assert page.count("trained on synthetic phantoms only") == 1  # RAW's phantom-model warning (PA is one)

    for cid in ("PA", "RAW"):
        run_case, nf_case = ((out / "report" / "cases" / f"{cid}.html").read_text() for out in (run_out, nf_out))
        images = IMAGE.findall(nf_case)
        assert images == IMAGE.findall(run_case), cid  # the same slices, byte for byte
        whats = {what for _view, _z, what, _src in images}
        assert {"T1Gd", "FLAIR"} <= whats, (cid, whats)
        assert _models_table(nf_case) == _models_table(run_case) and "<td>8</td>" in _models_table(nf_case)  # the card
    raw_whats = {what for _v, _z, what, _s in IMAGE.findall(nf_case)}
    assert {"registered t1", "registered flair", "native T1Gd"} <= raw_whats, raw_whats
    assert "QC decision: <b>overridden</b>" in nf_case
    pa_page = (nf_out / "report" / "cases" / "PA.html").read_text()
    assert "Prediction vs reference" in pa_page and "WT disagreement" in pa_page
