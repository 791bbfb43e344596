"""Missing modalities: absent channels, modality dropout, the model card's rules, and who refuses what."""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from gliocascade.data import brain_of, drop_modalities, zscore
from gliocascade.errors import InputError
from gliocascade.io import MODALITIES, read_modalities
from gliocascade.model_card import missing_modalities_error, modality_rules, read_card
from gliocascade.phantom import write_phantoms

SHAPE = (48, 48, 32)


def test_drop_modalities_never_drops_all_and_draws_nothing_at_zero():
    images = np.ones((4, 3, 3, 3), dtype=np.float32)
    images[1] = 0  # absent already
    rng = np.random.default_rng(0)
    kept_counts = set()
    for _ in range(200):
        out = drop_modalities(images, rng, 0.9)
        kept = [c for c in range(4) if out[c].any()]
        assert kept and set(kept) <= {0, 2, 3}
        kept_counts.add(len(kept))
    assert kept_counts >= {1, 2}  # dropped often, never everything
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    assert drop_modalities(images, rng_a, 0.0) is images
    assert rng_a.random() == rng_b.random()  # p = 0 left the generator untouched


def test_zscore_brain_is_the_present_modalities():
    rng = np.random.default_rng(1)
    images = rng.uniform(1, 2, (4, 6, 6, 6)).astype(np.float32)
    images[:, 0] = 0  # background slab
    images[0] = 0  # t1 absent
    images[2] = 0  # t2 absent
    brain = brain_of(images)
    assert brain.sum() == 5 * 36  # not empty although two channels are all zero
    out = zscore(images)
    assert not out[0].any() and not out[2].any()
    assert abs(out[1][brain].mean()) < 1e-5 and abs(out[3][brain].std() - 1) < 1e-4


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("missing_modalities")
    write_phantoms(root, n=3, seed=40, shape=SHAPE)
    return root


def _sheet(path: Path, root: Path, ids: list[str], drop: tuple[str, ...]) -> Path:
    lines = ["case_id,t1,t1ce,t2,flair,seg,space"]
    for cid in ids:
        cells = ["" if m in drop else str(root / cid / f"{cid}_{m}.nii.gz") for m in MODALITIES]
        lines.append(",".join([cid, *cells, str(root / cid / f"{cid}_seg.nii.gz"), "brats"]))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_read_modalities_fills_optional_absent_ones_and_names_required_ones(cases):
    cid = "phantom040"
    images = {m: cases / cid / f"{cid}_{m}.nii.gz" for m in ("t1ce", "flair")}
    stacked, _, _ = read_modalities(images, cid, optional=("t1", "t2"))
    assert stacked.shape[0] == 4 and not stacked[0].any() and not stacked[2].any() and stacked[1].any()
    with pytest.raises(InputError, match=f"modality t1, t2 missing for case {cid}"):
        read_modalities(images, cid)


def test_cards_before_the_fields_need_all_four():
    rules = modality_rules([{"modalities_required": list(MODALITIES), "modalities_used": list(MODALITIES)}])
    assert rules == (list(MODALITIES), list(MODALITIES))


@pytest.fixture(scope="module")
def two_models(cases, tmp_path_factory):
    """A tiny model trained on T1Gd + FLAIR only, and one trained on all four with dropout 0.5."""
    import torch

    from gliocascade.configs import load_config
    from gliocascade.data import cases_from_samplesheet
    from gliocascade.train import train

    root = tmp_path_factory.mktemp("models_missing")
    ids = ["phantom040", "phantom041"]
    two = _sheet(root / "two.csv", cases, ids, ("t1", "t2"))
    four = _sheet(root / "four.csv", cases, ids, ())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        common = dict(epochs=2, steps_per_epoch=1, device="cpu", precision="fp32", progress=False)
        flair_t1ce = train(cases_from_samplesheet(two), root / "flair_t1ce", load_config("tiny"), **common)
        dropout = train(cases_from_samplesheet(four), root / "dropout", load_config("tiny"), modality_dropout=0.5,
                        **common)
    finally:
        torch.set_num_threads(threads)
    return flair_t1ce, dropout


def test_card_records_used_required_and_dropout(two_models, cli):
    flair_t1ce, dropout = two_models
    doc = json.loads((flair_t1ce / "model.json").read_text())
    assert (doc["modalities_used"], doc["modalities_required"], doc["modality_dropout"]) == (
        ["t1ce", "flair"], ["t1ce", "flair"], 0.0)
    card = read_card(dropout)
    assert (card["modalities_used"], card["modalities_required"], card["modality_dropout"]) == (
        list(MODALITIES), [], 0.5)
    res = cli("model-card", str(flair_t1ce))
    assert "modalities used: t1ce, flair" in res.output and "modalities required: t1ce, flair" in res.output


def _predict(cli, model: Path, case_dir: Path, cid: str, out: Path, mods: tuple[str, ...]):
    args = ["predict", "--model", str(model), "--out", str(out), "--case-id", cid, "--tta", "1"]
    for m in mods:
        args += [f"--{m}", str(case_dir / cid / f"{cid}_{m}.nii.gz")]
    return cli(*args)


def test_unused_modalities_are_zero_filled_and_required_ones_refused(two_models, cases, cli, tmp_path):
    flair_t1ce, _ = two_models
    cid = "phantom042"
    with_all = _predict(cli, flair_t1ce, cases, cid, tmp_path / "all", MODALITIES)
    without = _predict(cli, flair_t1ce, cases, cid, tmp_path / "two", ("t1ce", "flair"))
    assert with_all.exit_code == 0 and without.exit_code == 0, with_all.output + without.output
    a = nib.load(str(tmp_path / "all" / f"{cid}_pred.nii.gz")).get_fdata()
    b = nib.load(str(tmp_path / "two" / f"{cid}_pred.nii.gz")).get_fdata()
    assert np.array_equal(a, b)  # t1 and t2 were never seen by the model: present or not, same result
    record = json.loads((tmp_path / "all" / "provenance_predict.json").read_text())
    assert record["parameters"]["modalities"] == {"present": list(MODALITIES), "used": ["t1ce", "flair"]}
    refused = _predict(cli, flair_t1ce, cases, cid, tmp_path / "no_flair", ("t1", "t1ce", "t2"))
    assert refused.exit_code == 2
    [line] = refused.stderr.strip().splitlines()
    assert "modality flair missing" in line and "requires it" in line
    assert not (tmp_path / "no_flair").exists() or not any((tmp_path / "no_flair").iterdir())


def test_dropout_model_segments_an_exam_with_one_modality(two_models, cases, cli, tmp_path):
    _, dropout = two_models
    res = _predict(cli, dropout, cases, "phantom042", tmp_path / "one", ("flair",))
    assert res.exit_code == 0, res.output
    record = json.loads((tmp_path / "one" / "provenance_predict.json").read_text())
    assert record["parameters"]["modalities"] == {"present": ["flair"], "used": ["flair"]}


def test_run_segments_brats_rows_with_empty_cells_and_reports_the_modalities(two_models, cases, cli, tmp_path):
    flair_t1ce, _ = two_models
    sheet = _sheet(tmp_path / "sheet.csv", cases, ["phantom042"], ("t1", "t2"))
    res = cli("run", "--samplesheet", str(sheet), "--model", str(flair_t1ce), "--out", str(tmp_path / "out"),
              "--tta", "1", "--workers", "1")
    assert res.exit_code == 0, res.output
    page = (tmp_path / "out" / "report" / "cases" / "phantom042.html").read_text()
    assert "present: t1ce, flair; absent: t1, t2" in page
    # the row has a reference, so run's evaluate step adds the lesion-wise columns
    import pandas as pd

    metrics = pd.read_csv(tmp_path / "out" / "phantom042" / "phantom042_metrics.csv")
    assert {"lesionwise_dsc_mean_wt", "all_instance_tp_wt", "dice_WT"} <= set(metrics.columns)


def test_missing_modality_error_names_the_model():
    cards = [{"folder": "m0", "modalities_required": ["t1ce", "flair"], "modalities_used": ["t1ce", "flair"]}]
    assert missing_modalities_error(cards, {"t1ce": "a", "flair": "b"}, "c1") is None
    message = missing_modalities_error(cards, {"t1ce": "a"}, "c1")
    assert message.startswith("case c1: modality flair missing, and model m0 requires it")


def test_run_lists_a_row_missing_a_required_modality_as_failed(two_models, cases, cli, tmp_path):
    flair_t1ce, _ = two_models
    sheet = _sheet(tmp_path / "sheet.csv", cases, ["phantom042"], ("t1", "flair"))
    res = cli("run", "--samplesheet", str(sheet), "--model", str(flair_t1ce), "--out", str(tmp_path / "out"),
              "--tta", "1", "--workers", "1")
    assert res.exit_code == 1, res.output
    failures = (tmp_path / "out" / "report" / "failures.csv").read_text()
    assert "phantom042" in failures and "phantom042_flair.nii.gz" in failures and "requires it" in failures
    assert not (tmp_path / "out" / "phantom042" / "phantom042_pred.nii.gz").exists()


def test_presence_flag_model_is_stored_loaded_and_segments_an_incomplete_exam(cases, cli, tmp_path):
    """A model trained with the ``presence_flags`` key keeps it in its card, loads as the wider
    network, and predicts a case lacking T1 and T2 through the CLI."""
    import torch

    from gliocascade.configs import load_config
    from gliocascade.data import cases_from_samplesheet
    from gliocascade.model_io import load_model
    from gliocascade.train import train

    sheet = _sheet(tmp_path / "four.csv", cases, ["phantom040", "phantom041"], ())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = train(cases_from_samplesheet(sheet), tmp_path / "flags", {**load_config("tiny"), "presence_flags": True},
                      epochs=1, steps_per_epoch=1, device="cpu", precision="fp32", progress=False,
                      modality_dropout=0.5)
    finally:
        torch.set_num_threads(threads)
    assert json.loads((model / "model.json").read_text())["config"]["presence_flags"] is True
    [net] = load_model(model, "cpu").networks[:1]
    assert net.presence_flags and net.stage1.encoder.init_conv.conv.in_channels == 8
    res = _predict(cli, model, cases, "phantom042", tmp_path / "two", ("t1ce", "flair"))
    assert res.exit_code == 0, res.output
    labels = nib.load(str(tmp_path / "two" / "phantom042_pred.nii.gz")).get_fdata()
    assert set(np.unique(labels)) <= {0, 1, 2, 4}
