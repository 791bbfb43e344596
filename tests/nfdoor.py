"""The Nextflow front door, emulated task by task, for tests that compare it with `gliocascade run`.

Without a Nextflow runtime the wiring of `main.nf`, `subworkflows/local/input_check` and
`workflows/segment.nf` is mirrored here: every row goes through the same module scripts
(`nfcheck.run_task`: inputs staged as the process declares them, ext.args of the profile, the one
`gliocascade` command), and each process's outputs are published into ``OUT/<id>/`` as
`conf/modules.config` says. Keep this file in step with those `.nf` files: a change of wiring
there that is not mirrored here leaves the parity tests proving the wrong thing.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from nfcheck import MODULES, TaskRefused, run_task

MODALITIES = ("t1", "t1ce", "t2", "flair")


def module(name: str) -> Path:
    return MODULES / name / "main.nf"


def models_arg(models: list[Path]) -> str:
    return " ".join(f"--model model_{i}" for i in range(1, len(models) + 1))


@dataclass
class Row:
    """A samplesheet row as nf-schema's samplesheetToList hands it to INPUT_CHECK."""

    meta: dict[str, str]
    images: dict[str, Path]
    seg: Path | None
    brainmask: Path | None


def sheet_rows(sheet: Path) -> list[Row]:
    """The sheet's rows with meta (id, space, label_convention) and files resolved."""
    from gliocascade.io import read_samplesheet

    rows = []
    for r in read_samplesheet(sheet):
        meta = {"meta.id": r.case_id, "meta.space": r.space, "meta.label_convention": r.label_convention}
        rows.append(Row(meta, dict(r.images), r.seg, getattr(r, "brainmask", None)))
    return rows


def publish(files: list[Path], dest: Path) -> None:
    """publishDir mode 'copy': files and folders copied into ``dest`` under their names."""
    dest.mkdir(parents=True, exist_ok=True)
    for f in files:
        target = dest / f.name
        if f.is_dir():
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(f, target)
        else:
            shutil.copy2(f, target)


def postprocess_and_evaluate(row: Row, pred: Path, transforms: list[Path], models: list[Path], work: Path,
                             case_out: Path) -> Path:
    """POSTPROCESS -> EVALUATE of one case as GLIOCASCADE_SEGMENT wires them; returns the metrics CSV."""
    post = run_task(module("postprocess"), work / "postprocess",
                    {"pred": [pred], "transforms": transforms, "models": models},
                    {**row.meta, "model_args": models_arg(models),
                     "native_arg": "--native-transforms transforms" if transforms else ""})
    seg = post["${task.ext.prefix ?: meta.id}_seg.nii.gz"]
    publish(seg + post["${task.ext.prefix ?: meta.id}_seg_native.nii.gz"] + post["provenance_postprocess.json"],
            case_out)
    gt = [row.seg] if row.seg else []
    ev = run_task(module("evaluate"), work / "evaluate", {"seg": seg, "gt": gt},
                  {**row.meta, "gt_arg": f"--gt reference/{row.seg.name}" if row.seg else ""})
    csv = ev["${task.ext.prefix ?: meta.id}_metrics.csv"]
    publish(csv, case_out)
    return csv[0]


def segment_case(row: Row, models: list[Path], out: Path, work: Path, atlas: Path | None = None) -> Path:
    """One row through PREPROCESS (native rows) -> PREDICT -> POSTPROCESS -> EVALUATE."""
    cid = row.meta["meta.id"]
    w = work / cid
    case_out = out / cid
    transforms: list[Path] = []
    if row.meta["meta.space"] == "native":
        pre = run_task(module("preprocess"), w / "preprocess", {**row.images, "atlas": [atlas] if atlas else []},
                       {**row.meta, "atlas_arg": f"--atlas {atlas.name}" if atlas else ""})
        case_dir = pre["preprocessed"][0]
        transforms = pre["preprocessed/transforms"]
        publish([case_dir], case_out)
    else:
        case_dir = row.images["t1ce"].parent  # bratsCaseFolder: the images' folder
    pred = run_task(module("predict"), w / "predict", {"case_dir": case_dir, "models": models},
                    {**row.meta, "model_args": models_arg(models)})
    publish(pred["${meta.id}_pred.nii.gz"] + pred["provenance_predict.json"], case_out)
    return postprocess_and_evaluate(row, pred["${meta.id}_pred.nii.gz"][0], transforms, models, w, case_out)


def segment(sheet: Path, models: list[Path], out: Path, work: Path, atlas: Path | None = None) -> list[str]:
    """INPUT_CHECK -> GLIOCASCADE_SEGMENT for every row, outputs published under ``out``.

    A task that exits 2 drops its case, as the error strategy of conf/base.config does; the ids of
    the dropped cases are returned.
    """
    metrics, dropped = [], []
    for row in sheet_rows(sheet):
        try:
            metrics.append(segment_case(row, models, out, work, atlas))
        except TaskRefused:
            dropped.append(row.meta["meta.id"])
    rep = run_task(module("report"), work / "report", {"metrics": metrics},
                   {"meta.id": "cohort", "metrics_args": " ".join(f"--metrics metrics/{m.name}" for m in metrics)})
    publish(rep["report/cohort_metrics.csv"] + rep["report/summary.csv"] + rep["report/report.html"], out / "report")
    return dropped


def train(sheet: Path, work: Path, folds: int = 2, seed: int = 0) -> list[Path]:
    """GLIOCASCADE_TRAIN's TRAIN tasks (one per fold, one seed) on the sheet's rows; the model folders."""
    rows = sheet_rows(sheet)
    dirs = [r.images["t1ce"].parent for r in rows]  # bratsCaseFolder of each space=brats row
    models = []
    for fold in range(folds):
        cid = f"model_fold{fold}_seed{seed}"
        out = run_task(module("train"), work / f"train_{fold}", {"cases": dirs},
                       {"meta.id": cid, "meta.fold": str(fold), "meta.folds": str(folds), "meta.seed": str(seed)})
        models.append(out["${task.ext.prefix ?: meta.id}"][0])
    return models
