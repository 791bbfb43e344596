"""The Nextflow front door, emulated task by task, for tests that compare it with `gliocascade run`.

Without a Nextflow runtime the wiring of `main.nf`, `subworkflows/local/prepare_inputs` and
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

from nfcheck import MODULES, TaskRefused
from nfcheck import run_task as _run_task

MODALITIES = ("t1", "t1ce", "t2", "flair")


PARAMS: dict[str, str] = {}  # params overridden for the tasks of one emulated run (see segment/train)


def run_task(module_path: Path, workdir: Path, inputs: dict, values: dict[str, str], **kw):
    """nfcheck.run_task with this run's params overrides (as `--tta 1` on the nextflow command line)."""
    return _run_task(module_path, workdir, inputs, {**PARAMS, **values}, **kw)


def module(name: str) -> Path:
    return MODULES / name / "main.nf"


def models_arg(models: list[Path]) -> str:
    return " ".join(f"--model model_{i}" for i in range(1, len(models) + 1))


@dataclass
class Row:
    """A samplesheet row as nf-schema's samplesheetToList hands it to PREPARE_INPUTS."""

    meta: dict[str, str]
    images: dict[str, Path]
    seg: Path | None
    brainmask: Path | None


def sheet_rows(sheet: Path) -> list[Row]:
    """The sheet's rows with meta (id, space, label_convention) and files resolved."""
    from gliocascade.samplesheet import read_samplesheet

    rows = []
    for r in read_samplesheet(sheet):
        meta = {"meta.id": r.case_id, "meta.space": r.space, "meta.label_convention": r.label_convention}
        rows.append(Row(meta, dict(r.images), r.seg, r.brainmask))
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
                             case_out: Path, env: dict[str, str] | None = None,
                             records: dict[str, Path] | None = None) -> Path:
    """POSTPROCESS -> EVALUATE of one case as GLIOCASCADE_SEGMENT wires them; returns the metrics CSV.

    EVALUATE gets the BraTS-space and the native labels (POSTPROCESS.out.seg joined with seg_native).
    ``records`` (role -> file, as segment.nf's `pages` channel) gains the files the report reads.
    """
    post = run_task(module("postprocess"), work / "postprocess",
                    {"pred": [pred], "transforms": transforms, "models": models},
                    {**row.meta, "model_args": models_arg(models)}, env=env)
    seg = post["${task.ext.prefix ?: meta.id}_seg.nii.gz"]
    seg_native = post["${task.ext.prefix ?: meta.id}_seg_native.nii.gz"]
    publish(seg + seg_native + post["provenance_postprocess.json"], case_out)
    ev = run_task(module("evaluate"), work / "evaluate",
                  {"seg": seg, "seg_native": seg_native, "gt": [row.seg] if row.seg else []}, dict(row.meta),
                  env=env)
    csv = ev["${task.ext.prefix ?: meta.id}_metrics.csv"]
    publish(csv + ev["provenance_evaluate.json"], case_out)
    if records is not None:
        for role, found in (("seg", seg), ("seg_native", seg_native), ("reference", [row.seg] if row.seg else []),
                            ("provenance_postprocess", post["provenance_postprocess.json"]),
                            ("provenance_evaluate", ev["provenance_evaluate.json"])):
            records.update({role: found[0]} if found else {})
    return csv[0]


def segment_case(row: Row, models: list[Path], out: Path, work: Path, atlas: Path | None = None,
                 env: dict[str, str] | None = None, records: dict[str, Path] | None = None) -> Path:
    """One row through PREPARE_INPUTS (PREPROCESS for native rows) -> PREDICT -> POSTPROCESS -> EVALUATE.

    ``records`` gets the case's files by role, as segment.nf hands them to REPORT.
    """
    records = {} if records is None else records
    cid = row.meta["meta.id"]
    w = work / cid
    case_out = out / cid
    transforms: list[Path] = []
    images, mask = dict(row.images), [row.brainmask] if row.brainmask else []
    if row.meta["meta.space"] == "native":
        pre = run_task(module("preprocess"), w / "preprocess", {**row.images, "atlas": [atlas] if atlas else []},
                       dict(row.meta), env=env)
        publish(pre["preprocessed"], case_out)
        transforms = pre["preprocessed/transforms"]
        images = {m: pre[f"preprocessed/${{task.ext.prefix ?: meta.id}}_{m}.nii.gz"][0] for m in MODALITIES}
        mask = pre["preprocessed/${task.ext.prefix ?: meta.id}_brainmask.nii.gz"]
        records.update(provenance_preprocess=pre["preprocessed/provenance_preprocess.json"][0],
                       native_t1ce=row.images["t1ce"])  # PREPARE_INPUTS.out.records
    records.update(images)  # the cases channel: BraTS-space images and brain mask
    records.update({"brainmask": mask[0]} if mask else {})
    pred = run_task(module("predict"), w / "predict", {**images, "brainmask": mask, "models": models},
                    {**row.meta, "model_args": models_arg(models)}, env=env)
    publish(pred["${task.ext.prefix ?: meta.id}_pred.nii.gz"] + pred["${task.ext.prefix ?: meta.id}_prob.nii.gz"] + pred["provenance_predict.json"],
            case_out)
    records["provenance_predict"] = pred["provenance_predict.json"][0]
    return postprocess_and_evaluate(row, pred["${task.ext.prefix ?: meta.id}_pred.nii.gz"][0], transforms, models, w, case_out, env,
                                    records)


def segment(sheet: Path, models: list[Path], out: Path, work: Path, atlas: Path | None = None,
            env: dict[str, str] | None = None, params: dict[str, str] | None = None) -> list[str]:
    """PREPARE_INPUTS -> GLIOCASCADE_SEGMENT for every row, outputs published under ``out``.

    A task that refuses its case drops it; its refusal record goes to REPORT (collectFile of every
    refusal.csv, header kept once). The ids of the dropped cases are returned.
    """
    PARAMS.clear()
    PARAMS.update(params or {})
    metrics, dropped, records, pages = [], [], [], {}
    for row in sheet_rows(sheet):
        files: dict[str, Path] = {}
        try:
            metrics.append(segment_case(row, models, out, work, atlas, env, files))
            pages[row.meta["meta.id"]] = files  # only reported cases: `.combine(reported, by: 0)`
        except TaskRefused as exc:
            dropped.append(row.meta["meta.id"])
            assert exc.record is not None, f"{exc.module} exited 2 without a refusal record"
            records.append(exc.record)
    failures = []
    if records:
        lines = [records[0].read_text().splitlines()[0]]
        for r in sorted(records):
            lines += r.read_text().splitlines()[1:]
        failures = [work / "failures.csv"]
        failures[0].write_text("\n".join(lines) + "\n")
    case_files, text = case_files_set(pages)
    sheet_file = work / "collect" / "case_files.csv"
    sheet_file.parent.mkdir(parents=True, exist_ok=True)
    sheet_file.write_text(text)
    rep = run_task(module("report"), work / "report",
                   {"metrics": metrics, "failures": failures, "case_files": case_files, "case_sheet": [sheet_file],
                    "models": models, "atlas": [atlas] if atlas else []},
                   {"meta.id": "cohort", "metrics_args": " ".join(f"--metrics metrics/{m.name}" for m in metrics),
                    "model_args": models_arg(models)})
    folder = "${task.ext.prefix ?: 'report'}"  # REPORT's output folder, as its output patterns name it
    publish(rep[f"{folder}/cohort_metrics.csv"] + rep[f"{folder}/summary.csv"] + rep[f"{folder}/report.html"]
            + rep[f"{folder}/failures.csv"], out / "report")
    publish(rep[f"{folder}/cases/*.html"], out / "report" / "cases")
    return dropped


def case_files_set(pages: dict[str, dict[str, Path]]) -> tuple[list[Path], str]:
    """workflows/segment.nf caseFilesSet: every file of the reported cases, sorted by case and role, and
    the case_id,role,path CSV naming each as REPORT stages them (cases/fNNNNN/<name>)."""
    files: list[Path] = []
    lines = ["case_id,role,path"]
    for cid in sorted(pages):
        for role in sorted(pages[cid]):
            files.append(pages[cid][role])
            lines.append(",".join([cid, role, staged_name("cases", len(files), pages[cid][role])]))
    return files, "\n".join(lines) + "\n"


def staged_name(folder: str, index: int, path: Path) -> str:
    """workflows/train.nf stagedName: the index-th file of a list staged as 'FOLDER/f?????/*'."""
    return f"{folder}/f{index:05d}/{path.name}"


def training_set(rows: list[Row]) -> tuple[list[Path], str]:
    """workflows/train.nf trainingSet: every file of the rows and the samplesheet naming them."""
    files: list[Path] = []
    lines = ["case_id,t1,t1ce,t2,flair,seg,brainmask,space,label_convention"]
    for row in sorted(rows, key=lambda r: r.meta["meta.id"]):
        cells = []
        for f in [*(row.images[m] for m in MODALITIES), row.seg, row.brainmask]:
            if f is None:
                cells.append("")
                continue
            files.append(f)
            cells.append(staged_name("data", len(files), f))
        lines.append(",".join([row.meta["meta.id"], *cells, "brats", row.meta["meta.label_convention"]]))
    return files, "\n".join(lines) + "\n"


def train(sheet: Path, work: Path, folds: int = 2, seed: int = 0, params: dict[str, str] | None = None,
          config: str | Path = "tiny") -> list[Path]:
    """GLIOCASCADE_TRAIN's TRAIN tasks (one per fold, one seed) on the sheet's rows; the model folders.
    ``config``: a built-in name, or a JSON file staged into each task as config/<name> (as the workflow does)."""
    PARAMS.clear()
    PARAMS.update(params or {})
    builtin = str(config) in ("paper", "tiny", "small")
    config_inputs = {} if builtin else {"config_file": [Path(config)]}
    config_name = str(config) if builtin else f"config/{Path(config).name}"
    files, text = training_set(sheet_rows(sheet))
    sheet_file = work / "collect" / "train_samplesheet.csv"
    sheet_file.parent.mkdir(parents=True, exist_ok=True)
    sheet_file.write_text(text)
    models = []
    for fold in range(folds):
        cid = f"model_fold{fold}_seed{seed}"
        out = run_task(module("train"), work / f"train_{fold}",
                       {"files": files, "samplesheet": [sheet_file], **config_inputs},
                       {"meta.id": cid, "meta.fold": str(fold), "meta.folds": str(folds), "meta.seed": str(seed),
                        "meta.config": config_name})
        models.append(out["${task.ext.prefix ?: meta.id}"][0])
    return models


def reference_set(rows: list[Row]) -> tuple[list[Path], str]:
    """workflows/train.nf referenceSet: the rows' references and the CSV naming them as staged."""
    files: list[Path] = []
    lines = ["case_id,seg,label_convention"]
    for row in sorted(rows, key=lambda r: r.meta["meta.id"]):
        files.append(row.seg)
        lines.append(",".join([row.meta["meta.id"], staged_name("gt", len(files), row.seg),
                               row.meta["meta.label_convention"]]))
    return files, "\n".join(lines) + "\n"
