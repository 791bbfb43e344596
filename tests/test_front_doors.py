"""The two front doors, `gliocascade run` and the Nextflow pipeline, agree on the same samplesheet.

The Nextflow door is the module scripts chained as the workflows wire them (`nfdoor.py`); the
`run` door is the CLI. Each test here pins one place where the doors could differ.
"""
from __future__ import annotations

import csv
import json
import shutil

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

import nfdoor
from nfcheck import task_env

pytestmark = pytest.mark.slow

if shutil.which("gliocascade", path=task_env()["PATH"]) is None:
    pytest.skip("the gliocascade console script is not installed", allow_module_level=True)

SHAPE = (64, 64, 48)


def _phantom(root, seed: int, prefix: str = "ph"):
    from gliocascade.phantom import write_phantoms

    return write_phantoms(root, n=1, seed=seed, shape=SHAPE, prefix=prefix)[0]


def _ball_mask(reference, radius: float):
    """A ball-shaped brain mask at the image centre (smaller than the phantom's brain)."""
    img = nib.load(str(reference))
    grid = np.indices(img.shape).astype(float)
    centre = (np.array(img.shape) - 1) / 2.0
    dist = np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, centre)))
    return (dist <= radius).astype(np.uint8), img.affine


def _sheet(path, header: str, lines: list[str]):
    path.write_text(header + "\n" + "\n".join(lines) + "\n")
    return path


def _row(cid, folder, extra: str = ""):
    files = ",".join(str(folder / f"{folder.name}_{m}.nii.gz") for m in ("t1", "t1ce", "t2", "flair"))
    return f"{cid},{files},brats{extra}"


# --------------------------------------------------------------------------- 1. native metrics

def _native_transforms(tmp_path, seg_path):
    """A transforms folder mapping the phantom's grid onto a coarser, shifted 'native' grid."""
    from gliocascade.io import write_labels

    tdir = tmp_path / "transforms"
    tdir.mkdir()
    t = sitk.Euler3DTransform()
    t.SetTranslation((1.5, -2.0, 1.0))
    sitk.WriteTransform(t, str(tdir / "brats_to_native.tfm"))
    src = nib.load(str(seg_path))
    aff = src.affine.copy()
    aff[:3, :3] = aff[:3, :3] * 1.5
    write_labels(tdir / "native_reference.nii.gz", np.zeros((44, 44, 32), np.uint8), aff)
    return tdir


def test_native_row_with_a_reference_keeps_its_metrics_in_the_nextflow_door(tmp_path, random_tiny_model):
    """A native row's reference lies on its native grid: Nextflow must evaluate the native labels."""
    from gliocascade.postprocess import postprocess_labels

    case = _phantom(tmp_path / "cases", 3)
    cid = case.name
    pred = case / f"{cid}_seg.nii.gz"  # stands in for predict's output (BraTS grid)
    tdir = _native_transforms(tmp_path, pred)
    # the reference on the native grid: the phantom's labels moved there
    written = postprocess_labels(pred, tmp_path / "ref" / f"{cid}_seg.nii.gz", 0, tdir, "2019")
    reference = written[1]
    row = nfdoor.Row({"meta.id": cid, "meta.space": "native", "meta.label_convention": "2019"},
                     {}, reference, None)
    metrics = nfdoor.postprocess_and_evaluate(row, pred, [tdir], [random_tiny_model], tmp_path / "work",
                                              tmp_path / "out" / cid)
    got = next(csv.DictReader(metrics.open()))
    assert float(got["dice_WT"]) == pytest.approx(1.0)
    assert float(got["dice_ET"]) == pytest.approx(1.0)


# --------------------------------------------------------------------------- 2. the brain mask

def test_brainmask_column_defines_the_brain_for_a_brats_row_in_run(tmp_path, random_tiny_model, cli):
    from gliocascade.io import write_labels

    case = _phantom(tmp_path / "cases", 5)
    mask, aff = _ball_mask(case / f"{case.name}_t1ce.nii.gz", 12)
    write_labels(tmp_path / "mask.nii.gz", mask, aff)
    sheet = _sheet(tmp_path / "s.csv", "case_id,t1,t1ce,t2,flair,space,brainmask",
                   [_row("M1", case, f",{tmp_path / 'mask.nii.gz'}")])
    out = tmp_path / "out"
    result = cli("run", "--samplesheet", sheet, "--model", random_tiny_model, "--out", out, "--tta", "1",
                 "--device", "cpu", "--save-probabilities")
    assert result.exit_code == 0, result.output
    prov = json.loads((out / "M1" / "provenance_predict.json").read_text())
    assert prov["inputs"]["brainmask"]["path"] == str(tmp_path / "mask.nii.gz")
    prob = np.asarray(nib.load(str(out / "M1" / "M1_prob.nii.gz")).dataobj)
    assert prob[mask == 0].max() == 0.0 and prob[mask > 0].max() > 0.0


def test_train_samplesheet_uses_the_brainmask_column(tmp_path):
    from gliocascade.data import cases_from_samplesheet, load_volume
    from gliocascade.io import write_labels

    case = _phantom(tmp_path / "cases", 7)
    mask, aff = _ball_mask(case / f"{case.name}_t1ce.nii.gz", 9)
    write_labels(tmp_path / "mask.nii.gz", mask, aff)
    seg = case / f"{case.name}_seg.nii.gz"
    sheet = _sheet(tmp_path / "s.csv", "case_id,t1,t1ce,t2,flair,space,seg,brainmask",
                   [_row("T1", case, f",{seg},{tmp_path / 'mask.nii.gz'}")])
    vol = load_volume(cases_from_samplesheet(sheet)[0])
    assert np.all(vol.images[:, mask == 0] == 0)
    assert np.all(np.abs(vol.images[:, mask > 0].mean(axis=1)) < 1e-4)  # z-scored over the mask


# --------------------------------------------------------------------------- 3. train mode conventions

def test_nextflow_train_mode_reads_each_rows_label_convention(tmp_path):
    """A 2023-convention row (ET = 3) trains in Nextflow's train mode as it does with train --samplesheet."""
    from gliocascade.io import write_labels

    a = _phantom(tmp_path / "cases", 8)
    b = _phantom(tmp_path / "cases", 9)
    seg_b = b / f"{b.name}_seg.nii.gz"
    img = nib.load(str(seg_b))
    lab = np.asarray(img.dataobj).astype(np.uint8)
    lab[lab == 4] = 3
    write_labels(seg_b, lab, img.affine)  # BraTS 2023 values under BraTS 2019 file names
    sheet = _sheet(tmp_path / "s.csv", "case_id,t1,t1ce,t2,flair,space,seg,label_convention",
                   [_row(a.name, a, f",{a / (a.name + '_seg.nii.gz')},2019"), _row(b.name, b, f",{seg_b},2023")])
    models = nfdoor.train(sheet, tmp_path / "work", folds=2, seed=0,
                          params={"params.train_args": "--epochs 1 --steps-per-epoch 1"})
    assert len(models) == 2
    for m in models:
        card = json.loads((m / "model.json").read_text())
        assert card["data_card"]["label_conventions"] == {a.name: "2019", b.name: "2023"}


def test_nextflow_train_mode_stages_a_json_config_file(tmp_path, cli):
    """--config FILE reaches every TRAIN task as a staged file (not a path on the launch machine), and
    the models it trains carry the config that `train --config FILE` gives."""
    a = _phantom(tmp_path / "cases", 8)
    b = _phantom(tmp_path / "cases", 9)
    sheet = _sheet(tmp_path / "s.csv", "case_id,t1,t1ce,t2,flair,space,seg",
                   [_row(c.name, c, f",{c / (c.name + '_seg.nii.gz')}") for c in (a, b)])
    config = tmp_path / "elsewhere" / "flags.json"
    config.parent.mkdir()
    config.write_text(json.dumps({"base": "tiny", "presence_flags": True}))
    fast = "--epochs 1 --steps-per-epoch 1"
    models = nfdoor.train(sheet, tmp_path / "work", folds=2, seed=0, params={"params.train_args": fast},
                          config=config)
    direct = tmp_path / "direct"
    res = cli("train", "--samplesheet", sheet, "--out", direct, "--config", config, "--fold", "0", "--folds", "2",
              "--seed", "0", *fast.split(), "--device", "cpu")
    assert res.exit_code == 0, res.output
    want = json.loads((direct / "model.json").read_text())["config"]
    assert want["presence_flags"] is True and want["name"] == "flags"
    for m in models:
        assert json.loads((m / "model.json").read_text())["config"] == want
        staged = m.parent / "config" / "flags.json"
        assert staged.is_symlink() and staged.resolve() == config.resolve()


# --------------------------------------------------------------------------- 5. refusals

def test_a_refusing_step_records_its_reason_when_a_workflow_engine_asks(tmp_path, cli, monkeypatch):
    """Exit 2 without the variable; with it, the one-line reason in the record and exit 0."""
    bad = tmp_path / "bad_pred.nii.gz"
    bad.write_bytes(b"not a nifti")
    args = ("evaluate", "--pred", bad, "--case-id", "C7", "--out", tmp_path / "m.csv")
    monkeypatch.delenv("GLIOCASCADE_REFUSAL_RECORD", raising=False)
    assert cli(*args).exit_code == 2
    record = tmp_path / "refusal.csv"
    assert not record.exists()
    monkeypatch.setenv("GLIOCASCADE_REFUSAL_RECORD", str(record))
    assert cli(*args).exit_code == 0
    rows = list(csv.DictReader(record.open()))
    assert [(r["case_id"], r["step"]) for r in rows] == [("C7", "evaluate")]
    assert str(bad) in rows[0]["message"] and "NIfTI" in rows[0]["message"]
    assert not (tmp_path / "m.csv").exists()


# --------------------------------------------------------------------------- acceptance: one sheet, two doors

def _nifti_files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.nii.gz"))


def _table(path):
    with open(path, newline="") as fh:
        return sorted(tuple(sorted(r.items())) for r in csv.DictReader(fh))


@pytest.mark.realdata
def test_one_samplesheet_gives_the_same_files_through_both_doors(tmp_path, data_dir, random_tiny_model):
    """Phantom brats rows (one with a brainmask column, one with an unnamed <id>_brainmask beside its
    images, one refused), the raw TCGA-FG-6692 exam as a native row with its HD-BET native T1Gd mask
    as seg: every NIfTI byte-identical, the CSVs equal as tables, the refusal in both reports."""
    import subprocess

    from gliocascade.io import write_labels

    cases = tmp_path / "cases"
    a, b, c = _phantom(cases, 11), _phantom(cases, 12), _phantom(cases, 13)
    mask, aff = _ball_mask(a / f"{a.name}_t1ce.nii.gz", 14)
    write_labels(tmp_path / "mask_a.nii.gz", mask, aff)
    # lies beside PB's images but the sheet does not name it: neither door may use it
    write_labels(b / f"{b.name}_brainmask.nii.gz", _ball_mask(b / f"{b.name}_t1ce.nii.gz", 8)[0], aff)
    (c / f"{c.name}_t2.nii.gz").write_bytes(b"\x1f\x8b broken")  # refused by predict in both doors
    native = data_dir / "native" / "TCGA-FG-6692"
    raw = ",".join(str(native / f"TCGA-FG-6692_{m}.nii.gz") for m in ("t1", "t1c", "t2", "flair"))
    gt = native / "reference" / "hdbet_native_masks" / "OtherEXampleFromTCIA_hdbet_mask_native_t1c.nii.gz"
    sheet = _sheet(tmp_path / "s.csv", "case_id,t1,t1ce,t2,flair,space,seg,brainmask", [
        _row("PA", a, f",{a / (a.name + '_seg.nii.gz')},{tmp_path / 'mask_a.nii.gz'}"),
        _row("PB", b, f",{b / (b.name + '_seg.nii.gz')},"),
        _row("PC", c, ",,"),
        f"RAW,{raw},native,{gt},",
    ])
    atlas = data_dir / "atlas"
    env = {**task_env(), "OMP_NUM_THREADS": "1"}
    run_out = tmp_path / "run"
    proc = subprocess.run(["gliocascade", "run", "--samplesheet", str(sheet), "--model", str(random_tiny_model),
                           "--out", str(run_out), "--tta", "1", "--device", "cpu", "--atlas", str(atlas)],
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 1, proc.stderr[-3000:]  # PC fails, the others finish
    nf_out = tmp_path / "nf"
    dropped = nfdoor.segment(sheet, [random_tiny_model], nf_out, tmp_path / "work", atlas=atlas,
                             env={"OMP_NUM_THREADS": "1"}, params={"params.tta": "1"})
    assert dropped == ["PC"]

    files = _nifti_files(run_out)
    assert files == _nifti_files(nf_out)
    assert "RAW/RAW_seg_native.nii.gz" in files and "PA/PA_seg.nii.gz" in files
    for rel in files:
        assert (run_out / rel).read_bytes() == (nf_out / rel).read_bytes(), rel
    for cid in ("PA", "PB", "RAW"):
        assert _table(run_out / cid / f"{cid}_metrics.csv") == _table(nf_out / cid / f"{cid}_metrics.csv")
    assert "dice_WT" in next(csv.DictReader((nf_out / "RAW" / "RAW_metrics.csv").open()))
    for name in ("cohort_metrics.csv", "summary.csv"):
        assert _table(run_out / "report" / name) == _table(nf_out / "report" / name), name
    for out in (run_out, nf_out):  # the messages name the file where each door holds it (staged or not)
        failures = list(csv.DictReader((out / "report" / "failures.csv").open()))
        assert [(f["case_id"], f["step"]) for f in failures] == [("PC", "predict")]
        assert f"{c.name}_t2.nii.gz" in failures[0]["message"]
    for out in (run_out, nf_out):  # the refused case is on the page with its reason
        page = (out / "report" / "report.html").read_text()
        assert "Failed cases" in page and "PC" in page and f"{c.name}_t2.nii.gz" in page
