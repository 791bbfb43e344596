"""ET relabelling at, below and above the threshold, threshold sources, and bad input."""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from gliocascade.io import brats_affine, write_labels
from gliocascade.postprocess import relabel_small_et


def _label_map(et_voxels: int, et_value: int = 4) -> np.ndarray:
    """Oedema block, a necrotic core and exactly ``et_voxels`` enhancing voxels."""
    lab = np.zeros((20, 20, 12), dtype=np.uint8)
    lab[2:18, 2:18, 2:10] = 2
    lab[6:10, 6:10, 4:8] = 1
    flat = np.flatnonzero(lab == 2)[:et_voxels]
    lab.flat[flat] = et_value
    return lab


@pytest.mark.parametrize("et_voxels,threshold,relabelled", [(49, 50, True), (50, 50, False), (51, 50, False),
                                                            (1, 0, False), (0, 100, False)])
def test_relabel_at_below_above(et_voxels, threshold, relabelled):
    lab = _label_map(et_voxels)
    out = relabel_small_et(lab, threshold, "2019")
    if relabelled:
        assert not (out == 4).any()
        assert np.array_equal(out == 1, (lab == 1) | (lab == 4))
    else:
        assert np.array_equal(out, lab)
    assert np.array_equal(out == 2, lab == 2)  # oedema untouched either way


def test_relabel_2023_convention():
    lab = _label_map(30, et_value=3)
    out = relabel_small_et(lab, 31, "2023")
    assert not (out == 3).any() and (out == 1).sum() == (lab == 1).sum() + 30


def _write(tmp_path: Path, lab: np.ndarray, name: str = "c1_pred.nii.gz") -> Path:
    return write_labels(tmp_path / name, lab, brats_affine())


def test_cli_threshold_option(cli, tmp_path):
    pred = _write(tmp_path, _label_map(40))
    res = cli("postprocess", "--pred", pred, "--out", tmp_path / "c1_seg.nii.gz", "--et-threshold", 41)
    assert res.exit_code == 0, res.output
    out = nib.load(tmp_path / "c1_seg.nii.gz")
    assert not (np.asarray(out.dataobj) == 4).any()
    assert np.allclose(out.affine, brats_affine()) and out.shape == (20, 20, 12)
    record = json.loads((tmp_path / "provenance_postprocess.json").read_text())
    assert record["parameters"]["et_threshold"] == 41 and record["et_voxels_relabelled"] == 40


def _model_dir(tmp_path: Path, name: str, threshold: int | None) -> Path:
    d = tmp_path / name
    d.mkdir()
    card = {"format": "gliocascade-model", "config": {"name": "tiny"}, "sha256": {"checkpoint.pt": "ab" * 32}}
    if threshold is not None:
        card["et_threshold"] = threshold
    (d / "model.json").write_text(json.dumps(card))
    return d


def test_cli_threshold_from_model(cli, tmp_path):
    pred = _write(tmp_path, _label_map(40))
    m = _model_dir(tmp_path, "m", 30)
    res = cli("postprocess", "--pred", pred, "--out", tmp_path / "keep.nii.gz", "--model", m)
    assert res.exit_code == 0
    assert (np.asarray(nib.load(tmp_path / "keep.nii.gz").dataobj) == 4).sum() == 40
    m2 = _model_dir(tmp_path, "m2", 100)
    res = cli("postprocess", "--pred", pred, "--out", tmp_path / "drop.nii.gz", "--model", m2)
    assert res.exit_code == 0
    assert (np.asarray(nib.load(tmp_path / "drop.nii.gz").dataobj) == 4).sum() == 0


def test_cli_models_disagree(cli, tmp_path):
    pred = _write(tmp_path, _label_map(40))
    a, b = _model_dir(tmp_path, "a", 30), _model_dir(tmp_path, "b", 100)
    res = cli("postprocess", "--pred", pred, "--out", tmp_path / "x.nii.gz", "--model", a, "--model", b)
    assert res.exit_code == 2 and "disagree" in res.output
    assert not (tmp_path / "x.nii.gz").exists()


def test_cli_bad_input(cli, tmp_path):
    bad = _label_map(10)
    bad[0, 0, 0] = 3  # not a 2019 label
    pred = _write(tmp_path, bad)
    res = cli("postprocess", "--pred", pred, "--out", tmp_path / "o.nii.gz", "--et-threshold", 5)
    assert res.exit_code == 2
    assert str(pred) in res.output and "outside" in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "o.nii.gz").exists()
    res = cli("postprocess", "--pred", tmp_path / "missing.nii.gz", "--out", tmp_path / "o.nii.gz")
    assert res.exit_code == 2 and "not found" in res.output
    empty = tmp_path / "nomodel"
    empty.mkdir()
    good = _write(tmp_path, _label_map(10), "good_pred.nii.gz")
    res = cli("postprocess", "--pred", good, "--out", tmp_path / "o.nii.gz", "--model", empty)
    assert res.exit_code == 2 and "model.json" in res.output
    assert not (tmp_path / "o.nii.gz").exists()
    res = cli("postprocess", "--pred", good, "--out", tmp_path / "o.nii.gz", "--et-threshold", 5,
              "--native-transforms", tmp_path / "nowhere")
    assert res.exit_code == 2 and "transforms" in res.output
    assert not (tmp_path / "o.nii.gz").exists()
