"""Every bad input of the catalogue (tests/bad_inputs.py) through `run` and through the step command
that first reads it; plus the checks behind the rows: implausible references, cross-modality
consistency, early validation in `run`, the messages, and checkpoint safety.

`run` takes every case row in ONE cohort with two good phantoms: it exits 1, the good cases
finish, each bad case is listed with its message and leaves no folder. The step command exits 2
with one `error:` line holding the row's fragment and writes nothing.
"""
from __future__ import annotations

import csv
import errno
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from bad_inputs import CATALOGUE, MODS, SHEET_HEADER, BadInput, Ctx, markdown_table, rows
from conftest import ROOT, real_data_dir

SHAPE = (64, 64, 48)
GOOD_SEEDS = (300, 301)
TEMPLATE_SEED, OTHER_SEED = 310, 311
ATLAS = real_data_dir() / "atlas"
MISSING_FILE_ROWS = ("image_missing", "seg_missing")


def _error_lines(output: str) -> list[str]:
    return [ln for ln in output.splitlines() if ln.startswith("error:")]


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory) -> dict[str, Path]:
    """The good cases, the template every bad row copies, and another patient (another seed)."""
    from gliocascade.phantom import write_phantoms

    root = tmp_path_factory.mktemp("bad_inputs")
    good = write_phantoms(root / "good", n=len(GOOD_SEEDS), seed=GOOD_SEEDS[0], shape=SHAPE)
    template = write_phantoms(root / "template", n=1, seed=TEMPLATE_SEED, shape=SHAPE)[0]
    other = write_phantoms(root / "other", n=1, seed=OTHER_SEED, shape=SHAPE)[0]
    return {"root": root, "good": good, "template": template, "other": other}


def _ctx(phantoms, row: BadInput, where: Path, model: Path | None = None) -> Ctx:
    cid = f"bad-{row.name}".replace("_", "-")
    return Ctx(phantoms["template"], phantoms["other"], where / cid, cid, model)


def _sheet_line(case_id: str, cells: dict[str, str]) -> str:
    return ",".join([case_id, *[cells.get(m, "") for m in (*MODS, "seg")], cells.get("space", "brats"), "2019"])


def _atlas_available() -> bool:
    return (ATLAS / "t1_brats_space.nii.gz").is_file()


# --------------------------------------------------------------------------- the table and the docs

def test_catalogue_rows_are_complete_and_unique():
    names = [r.name for r in CATALOGUE]
    assert len(names) == len(set(names))
    for r in CATALOGUE:
        assert r.scope in ("case", "sheet", "model") and r.space in ("brats", "native")
        assert r.run in ("case fails", "case flagged", "run refused") and r.step_exit == 2
        assert r.fragment.strip() and r.problem.strip()


def test_reliability_table_doc_is_generated_from_the_catalogue():
    doc = (ROOT / "docs" / "reliability_table.md").read_text()
    assert markdown_table() in doc, "docs/reliability_table.md is stale: regenerate it from tests/bad_inputs.py"


def test_readme_reliability_section_lists_every_row_once():
    readme = (ROOT / "README.md").read_text()
    if "\n## Reliability" not in readme:
        pytest.skip("README.md has no '## Reliability' section yet (paste docs/reliability_table.md there)")
    for line in markdown_table().splitlines()[2:]:
        assert readme.count(line) == 1, line


# --------------------------------------------------------------------------- one run, every case row

@pytest.fixture(scope="module")
def cohort(phantoms, random_tiny_model):
    """Every case row of the catalogue plus the good cases, run once (two workers, --tta 1, CPU)."""
    from click.testing import CliRunner

    from gliocascade.cli import main

    where = phantoms["root"] / "cohort_rows"
    case_rows = rows("case", "brats") + (rows("case", "native") if _atlas_available() else [])
    lines = [SHEET_HEADER]
    for case in phantoms["good"]:
        cells = {m: str(case / f"{case.name}_{m}.nii.gz") for m in (*MODS, "seg")}
        lines.append(_sheet_line(case.name, cells))
    ids = {}
    for row in case_rows:
        ctx = _ctx(phantoms, row, where)
        lines.append(_sheet_line(ctx.case_id, row.make(ctx)))
        ids[row.name] = ctx.case_id
    sheet = phantoms["root"] / "cohort.csv"
    sheet.write_text("\n".join(lines) + "\n")
    out = phantoms["root"] / "cohort_out"
    args = ["run", "--samplesheet", str(sheet), "--model", str(random_tiny_model), "--out", str(out),
            "--workers", "2", "--tta", "1", "--device", "cpu"]
    if _atlas_available():
        args += ["--atlas", str(ATLAS)]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    with open(out / "report" / "failures.csv", newline="") as fh:
        failures = {r["case_id"]: r for r in csv.DictReader(fh)}
    return result, out, ids, failures, case_rows


def test_run_cohort_exits_1_and_the_good_cases_finish(cohort, phantoms):
    result, out, ids, failures, _ = cohort
    assert result.exit_code == 1, result.output[-3000:]
    for case in phantoms["good"]:
        assert (out / case.name / f"{case.name}_metrics.csv").is_file()
        assert case.name not in failures


@pytest.mark.parametrize("row", [r for r in CATALOGUE if r.scope == "case"], ids=lambda r: r.name)
def test_run_cohort_row(cohort, row):
    result, out, ids, failures, case_rows = cohort
    if row not in case_rows:
        pytest.skip(f"native rows need the atlas in `run` ({ATLAS} not found)")
    cid = ids[row.name]
    if row.run == "case flagged":
        assert cid not in failures, failures.get(cid)
        metrics = pd.read_csv(out / cid / f"{cid}_metrics.csv")
        assert metrics["qc_reference"].tolist() == [0]
        qc = json.loads((out / cid / "provenance_evaluate.json").read_text())["qc"]
        assert qc["decision"] == "fail" and qc["reasons"]
        return
    assert cid in failures, f"{cid} was not refused"
    message = failures[cid]["message"]
    assert row.message_fragment(cid) in message, message
    assert "\n" not in message and len(message) < 600, message
    # every input is checked before the first step, and the failure is reported at the step that
    # reads the file (as the Nextflow door reports it); a file the sheet names but that is absent
    # is caught when the sheet is read ('inputs')
    assert failures[cid]["step"] == ("inputs" if row.name in MISSING_FILE_ROWS else row.step), failures[cid]
    assert not (out / cid).exists(), _files(out / cid)


# --------------------------------------------------------------------------- the step commands

def _step_args(row: BadInput, cells: dict[str, str], phantoms, model: Path, out: Path, cid: str) -> list:
    if row.step == "predict":
        return ["predict", *[a for m in MODS for a in (f"--{m}", cells[m])], "--case-id", cid, "--model", model,
                "--out", out, "--tta", "1", "--device", "cpu"]
    if row.step == "evaluate":
        good = phantoms["template"] / f"{phantoms['template'].name}_seg.nii.gz"
        return ["evaluate", "--pred", good, "--gt", cells["seg"], "--case-id", cid, "--out", out / "m.csv"]
    if row.step == "preprocess":
        return ["preprocess", *[a for m in MODS for a in (f"--{m}", cells[m])], "--case-id", cid, "--out", out]
    if row.step == "train":
        sheet = out.parent / f"{cid}_train.csv"
        sheet.write_text(SHEET_HEADER + "\n" + _sheet_line(cid, cells) + "\n")
        return ["train", "--samplesheet", sheet, "--out", out, "--config", "tiny", "--epochs", "1",
                "--device", "cpu"]
    raise AssertionError(row.step)


def _expect_refusal(result, fragment: str) -> str:
    assert result.exit_code == 2, result.output[-2000:]
    lines = _error_lines(result.output)
    assert len(lines) == 1, result.output[-2000:]
    assert fragment in lines[0], lines[0]
    assert len(lines[0]) < 600 and "weights_only" not in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("row", [r for r in CATALOGUE if r.scope == "case"], ids=lambda r: r.name)
def test_step_command_refuses_row(row, phantoms, random_tiny_model, tmp_path, cli):
    ctx = _ctx(phantoms, row, tmp_path)
    cells = row.make(ctx)
    out = tmp_path / "step_out"
    _expect_refusal(cli(*_step_args(row, cells, phantoms, random_tiny_model, out, ctx.case_id)),
                    row.message_fragment(ctx.case_id))
    assert _files(out) == []


@pytest.mark.parametrize("row", [r for r in CATALOGUE if r.scope == "case" and r.space == "brats"
                                 and r.step != "train"], ids=lambda r: r.name)
def test_train_refuses_row_too(row, phantoms, tmp_path, cli):
    """Training reads every case before the first step: the same inputs stop it with the same message."""
    ctx = _ctx(phantoms, row, tmp_path)
    cells = row.make(ctx)
    out = tmp_path / "model"
    train = BadInput(row.name, row.kind, row.problem, "train", 2, row.run, row.fragment, row.make)
    _expect_refusal(cli(*_step_args(train, cells, phantoms, None, out, ctx.case_id)), row.message_fragment(ctx.case_id))
    assert not (out / "checkpoint.pt").exists()


@pytest.mark.parametrize("row", rows("sheet"), ids=lambda r: r.name)
def test_sheet_row_stops_run_and_train_before_any_output(row, phantoms, random_tiny_model, tmp_path, cli):
    sheet = row.make(_ctx(phantoms, row, tmp_path))
    out = tmp_path / "out"
    _expect_refusal(cli("run", "--samplesheet", sheet, "--model", random_tiny_model, "--out", out, "--tta", "1",
                        "--device", "cpu"), row.fragment)
    assert not out.exists()
    _expect_refusal(cli("train", "--samplesheet", sheet, "--out", out, "--config", "tiny", "--epochs", "1",
                        "--device", "cpu"), row.fragment)
    assert not out.exists()


@pytest.mark.parametrize("row", rows("model"), ids=lambda r: r.name)
def test_model_row_stops_run_and_predict(row, phantoms, random_tiny_model, tmp_path, cli):
    ctx = _ctx(phantoms, row, tmp_path, random_tiny_model)
    model = row.make(ctx)
    good = phantoms["good"][0]
    sheet = tmp_path / "samples.csv"
    sheet.write_text(SHEET_HEADER + "\n" + _sheet_line(good.name, {m: str(good / f"{good.name}_{m}.nii.gz")
                                                                   for m in (*MODS, "seg")}) + "\n")
    out = tmp_path / "out"
    _expect_refusal(cli("run", "--samplesheet", sheet, "--model", model, "--out", out, "--tta", "1",
                        "--device", "cpu"), row.fragment)
    assert not out.exists()
    _expect_refusal(cli("predict", "--case", good, "--model", model, "--out", out, "--tta", "1",
                        "--device", "cpu"), row.fragment)
    assert not out.exists()
    assert not (ctx.folder / "EXECUTED").exists()  # the pickled payload never ran


# --------------------------------------------------------------------------- 4. implausible references

def _labels_file(path: Path, labels: np.ndarray) -> Path:
    from gliocascade.io import brats_affine, write_labels

    return write_labels(path, labels, brats_affine())


def test_evaluate_flags_an_implausible_reference_and_keeps_the_metrics(phantoms, tmp_path, cli):
    from gliocascade.io import read_labels

    good, _ = read_labels(phantoms["template"] / f"{phantoms['template'].name}_seg.nii.gz")
    pred = _labels_file(tmp_path / "pred.nii.gz", good)
    box = np.zeros_like(good)
    brain = np.asarray(nib.load(str(phantoms["template"] / f"{phantoms['template'].name}_t1ce.nii.gz")).dataobj) > 0
    idx = np.argwhere(brain)
    lo, hi = idx.min(0), idx.max(0) + 1
    box[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = 2  # the whole brain box as oedema
    for name, ref in (("ones", np.ones_like(good)), ("brainbox", box)):
        gt = _labels_file(tmp_path / f"{name}.nii.gz", ref)
        out = tmp_path / name / "m.csv"
        res = cli("evaluate", "--pred", pred, "--gt", gt, "--case-id", "c", "--out", out)
        assert res.exit_code == 0, res.output
        warnings = [ln for ln in res.output.splitlines() if ln.startswith("warning:")]
        assert len(warnings) == 1 and str(gt) in warnings[0] and "implausible reference" in warnings[0], res.output
        row = pd.read_csv(out).iloc[0]
        assert row["qc_reference"] == 0 and 0 < row["dice_WT"] < 1
        qc = json.loads((out.parent / "provenance_evaluate.json").read_text())["qc"]
        assert qc["decision"] == "fail" and qc["reasons"]
        assert all({"score", "threshold", "passed"} <= set(c) for c in qc["checks"].values())
    out = tmp_path / "good" / "m.csv"
    gt = phantoms["template"] / f"{phantoms['template'].name}_seg.nii.gz"
    res = cli("evaluate", "--pred", pred, "--gt", gt, "--case-id", "c", "--out", out)
    assert res.exit_code == 0 and "warning:" not in res.output, res.output
    assert pd.read_csv(out)["qc_reference"].tolist() == [1]
    qc = json.loads((out.parent / "provenance_evaluate.json").read_text())["qc"]
    assert qc["decision"] == "pass" and qc["reasons"] == [] and all(c["passed"] for c in qc["checks"].values())


@pytest.mark.parametrize("kind", ["outside_brain", "brain_box"])
def test_train_refuses_implausible_references(kind, phantoms, tmp_path, cli):
    ctx = Ctx(phantoms["template"], phantoms["other"], tmp_path / "c1", "c1")
    cells = ctx.copy_case()
    from gliocascade.io import read_labels

    lab, _ = read_labels(ctx.dst("seg"))
    brain = np.asarray(nib.load(cells["t1ce"]).dataobj) > 0
    bad = np.zeros_like(lab)
    if kind == "outside_brain":
        bad[:10, :10, :10] = 2  # a corner of the image, all background
    else:
        idx = np.argwhere(brain)
        lo, hi = idx.min(0), idx.max(0) + 1
        bad[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = 2
    _labels_file(ctx.dst("seg"), bad)
    sheet = tmp_path / "train.csv"
    sheet.write_text(SHEET_HEADER + "\n" + _sheet_line("c1", cells) + "\n")
    out = tmp_path / "model"
    line = _expect_refusal(cli("train", "--samplesheet", sheet, "--out", out, "--config", "tiny", "--epochs", "1",
                               "--device", "cpu"), "implausible reference")
    assert "c1_seg.nii.gz" in line
    assert not out.exists() or not (out / "checkpoint.pt").exists()


def test_real_references_are_plausible(data_dir):
    """No real reference is flagged: the two BraTS-space cases' algorithm labels and the expert maps."""
    from gliocascade.io import read_labels
    from gliocascade.metrics import reference_qc

    found = sorted((data_dir / "brats_space").glob("*/algorithm_segmentations/*.nii.gz"))
    assert found
    for seg in found:
        labels, _ = read_labels(seg, "2023" if "0123" in seg.name else "2019")
        qc = reference_qc(labels, "2023" if "0123" in seg.name else "2019")
        assert qc["decision"] == "pass", (seg, qc)


HD95_SCRIPT = textwrap.dedent("""
    import sys, time
    import numpy as np
    sys.path.insert(0, {python!r})
    from gliocascade.metrics import evaluate_arrays
    ref = np.ones((240, 240, 155), np.uint8)          # every voxel labelled 1
    rng = np.random.default_rng(0)
    pred = np.zeros_like(ref)                          # a speckled prediction: a huge border
    pred[60:180, 60:180, 40:115] = (rng.random((120, 120, 75)) < 0.3) * 2
    t = time.time()
    row = evaluate_arrays(pred, ref, (1.0, 1.0, 1.0))
    print(round(time.time() - t, 2), row["hd95_WT"])
""")


def test_hd95_stays_fast_on_huge_surfaces():
    """A full-grid reference against a speckled prediction (2 x 300k border voxels far apart): the k-d
    tree alone takes minutes here; the bounded search with the distance-transform fallback seconds."""
    script = HD95_SCRIPT.format(python=str(ROOT / "python"))
    try:
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=90)
    except subprocess.TimeoutExpired:
        pytest.fail("HD95 on a full-grid reference took more than 90 s")
    assert proc.returncode == 0, proc.stderr[-2000:]
    seconds, value = proc.stdout.split()
    assert float(value) > 40.0  # the speckle lies 40-60 voxels inside the image faces


def test_hd95_distance_transform_path_matches_medpy():
    """Masks far apart (beyond the bounded k-d search) go through the distance transform: still MedPy's value."""
    import medpy.metric.binary as medpy_binary
    from scipy import ndimage

    from gliocascade.metrics import hd95

    rng = np.random.default_rng(3)
    ref = np.zeros((90, 80, 40), bool)
    ref[2:40, 5:70, 3:37] = ndimage.binary_opening(rng.random((38, 65, 34)) > 0.35)
    pred = np.zeros_like(ref)
    pred[60:88, 10:60, 5:30] = True
    for spacing in ((1.0, 1.0, 1.0), (0.9, 1.3, 2.5)):
        assert hd95(pred, ref, spacing) == pytest.approx(medpy_binary.hd95(pred, ref, voxelspacing=spacing),
                                                         abs=1e-6)


# --------------------------------------------------------------------------- 7. one exam, four images

def _swap_flair(tmp_path: Path, case: Path, donor: Path) -> dict[str, Path]:
    folder = tmp_path / f"{case.name}_with_{donor.name}"
    folder.mkdir()
    images = {}
    for m in MODS:
        src = (donor if m == "flair" else case) / f"{(donor if m == 'flair' else case).name}_{m}.nii.gz"
        images[m] = folder / f"{case.name}_{m}.nii.gz"
        shutil.copyfile(src, images[m])
    return images


def test_phantom_swaps_are_refused_and_genuine_phantoms_pass(tmp_path):
    from gliocascade.errors import InputError
    from gliocascade.io import read_modalities
    from gliocascade.phantom import write_phantoms

    cases = write_phantoms(tmp_path / "p", n=4, seed=0, shape=SHAPE)
    for case in cases:
        read_modalities({m: case / f"{case.name}_{m}.nii.gz" for m in MODS}, case.name)
    for case in cases:
        for donor in cases:
            if donor != case:
                with pytest.raises(InputError, match="brain outline"):
                    read_modalities(_swap_flair(tmp_path, case, donor), case.name)


REAL = {"BraTS-GLI-00001-000": {"t1": "-t1n", "t1ce": "-t1c", "t2": "-t2w", "flair": "-t2f"},
        "TCGA-FG-6692": {m: f"_{m}" for m in MODS}}


def test_real_cases_pass_and_a_swap_between_them_is_refused(data_dir, tmp_path):
    from gliocascade.errors import InputError
    from gliocascade.io import read_modalities

    images = {cid: {m: data_dir / "brats_space" / cid / f"{cid}{suffix}.nii.gz" for m, suffix in names.items()}
              for cid, names in REAL.items()}
    for cid, imgs in images.items():
        read_modalities(imgs, cid)
    a, b = list(images)
    for case, donor in ((a, b), (b, a)):
        swapped = {**images[case], "flair": images[donor]["flair"]}
        with pytest.raises(InputError, match="brain outline") as info:
            read_modalities(swapped, case)
        assert str(images[donor]["flair"]) in str(info.value) and "Dice" in str(info.value)


# --------------------------------------------------------------------------- 9. messages

def test_run_names_the_file_when_the_disk_is_full(phantoms, random_tiny_model, tmp_path, monkeypatch):
    """A write error without a file name (gzip's) is reported with what the step was writing."""
    from gliocascade.samplesheet import read_samplesheet
    from gliocascade.steps import RunOptions, process_case

    real = nib.save

    def save(img, filename, *args, **kwargs):
        if "_pred" in str(filename):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(img, filename, *args, **kwargs)

    monkeypatch.setattr(nib, "save", save)
    good = phantoms["good"][0]
    sheet = tmp_path / "s.csv"
    sheet.write_text(SHEET_HEADER + "\n" + _sheet_line(good.name, {m: str(good / f"{good.name}_{m}.nii.gz")
                                                                   for m in (*MODS, "seg")}) + "\n")
    opts = RunOptions(models=[random_tiny_model], out=tmp_path / "out", tta=1, device="cpu")
    result = process_case(read_samplesheet(sheet)[0], opts)
    assert not result.ok and result.failed_step == "predict"
    assert "No space left on device" in result.message
    assert f"{good.name}_pred" in result.message or ".partial-predict" in result.message, result.message
    assert not (tmp_path / "out" / good.name).exists()


def test_cli_names_the_output_when_an_os_error_has_no_file(phantoms, tmp_path, cli, monkeypatch):
    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", no_space)
    seg = phantoms["template"] / f"{phantoms['template'].name}_seg.nii.gz"
    out = tmp_path / "m.csv"
    res = cli("evaluate", "--pred", seg, "--gt", seg, "--case-id", "c", "--out", out)
    line = _expect_refusal(res, "No space left on device")
    assert "m.csv" in line and "?:" not in line, line


def test_cli_names_what_the_step_was_writing_when_an_os_error_names_nothing(phantoms, tmp_path, cli, monkeypatch):
    """An OSError outside the atomic writers (here: provenance, after the CSV) still names a file."""
    import gliocascade.metrics as metrics

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(metrics, "write_provenance", no_space)
    seg = phantoms["template"] / f"{phantoms['template'].name}_seg.nii.gz"
    out = tmp_path / "m.csv"
    line = _expect_refusal(cli("evaluate", "--pred", seg, "--gt", seg, "--case-id", "c", "--out", out),
                           "No space left on device")
    assert line.startswith(f"error: {out}: "), line


def test_checkpoint_refusal_never_suggests_turning_weights_only_off(random_tiny_model, tmp_path):
    import torch

    from bad_inputs import FileWritingPayload
    from gliocascade.errors import InputError
    from gliocascade.model_io import load_weights

    marker = tmp_path / "EXECUTED"
    path = tmp_path / "ck.pt"
    torch.save({"model": {}, "network_config": "{}", "x": FileWritingPayload(str(marker))}, path)
    with pytest.raises(InputError) as info:
        load_weights(path)
    message = str(info.value)
    assert "weights_only" not in message and "trust" not in message.lower(), message
    assert "io.open" in message and str(path) in message
    assert not marker.exists()


# --------------------------------------------------------------------------- checkpoint safety: --resume

@pytest.fixture
def trained(tmp_path):
    """A one-epoch model folder (16^3 phantoms), trained in-process."""
    import torch

    from gliocascade.configs import load_config
    from gliocascade.data import cases_from_folder
    from gliocascade.phantom import write_phantoms
    from gliocascade.train import train

    write_phantoms(tmp_path / "data", n=2, seed=0, shape=(16, 16, 16))
    cfg = dict(load_config("tiny"), crop=[16, 16, 16])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(cases_from_folder(tmp_path / "data"), tmp_path / "m", cfg, epochs=1, steps_per_epoch=1, device="cpu",
              progress=False)
    finally:
        torch.set_num_threads(threads)
    (tmp_path / "cfg.json").write_text(json.dumps({"base": "tiny", "crop": [16, 16, 16]}))
    return tmp_path


def _resume(cli, root: Path):
    return cli("train", "--data", root / "data", "--out", root / "m", "--config", root / "cfg.json", "--epochs", "2",
               "--steps-per-epoch", "1", "--device", "cpu", "--resume")


def test_resume_refuses_a_checkpoint_whose_sha256_differs_from_model_json(trained, cli):
    import torch

    ck = trained / "m" / "checkpoint.pt"
    state = torch.load(ck, weights_only=True)
    key = next(iter(state["model"]))
    state["model"][key] = state["model"][key] + 1.0  # other weights, a valid checkpoint all the same
    torch.save(state, ck)
    line = _expect_refusal(_resume(cli, trained), "sha256 does not match model.json")
    assert "checkpoint.pt" in line
    assert json.loads((trained / "m" / "model.json").read_text())["data_card"]["epochs"] == 1


def test_resume_never_unpickles_a_planted_payload(trained, cli):
    import torch

    from bad_inputs import FileWritingPayload

    ck = trained / "m" / "checkpoint.pt"
    marker = trained / "EXECUTED"
    state = torch.load(ck, weights_only=True)
    state["extra"] = FileWritingPayload(str(marker))
    torch.save(state, ck)
    _expect_refusal(_resume(cli, trained), "sha256 does not match model.json")
    assert not marker.exists()
