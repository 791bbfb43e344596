"""The tiny cascade learns the phantoms (held-out seeds), and does not when its targets are shuffled."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TINY_SHAPE, TINY_TRAIN_SEEDS, train_tiny
from gliocascade.data import cases_from_folder, load_volume
from gliocascade.metrics import dice
from gliocascade.model_io import load_model
from gliocascade.phantom import write_phantoms
from gliocascade.train import predict_regions

HELD_OUT_SEED = 1000  # far from the training seeds 0-7


@pytest.fixture(scope="module")
def held_out(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("held_out")
    write_phantoms(root, n=3, seed=HELD_OUT_SEED, shape=TINY_SHAPE)
    return root


def held_out_dice(model_dir: Path, cases: Path) -> np.ndarray:
    """Per-case hard Dice (WT, TC, ET) of the snapshot ensemble's mean stage-2 probabilities."""
    model = load_model(model_dir)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rows = []
        for case in cases_from_folder(cases):
            vol = load_volume(case)
            prob = np.mean([predict_regions(n, vol.images, model.config["divisor"]) for n in model.networks], axis=0)
            rows.append([dice(prob[r] > 0.5, vol.regions[r] > 0) for r in range(3)])
    finally:
        torch.set_num_threads(threads)
    return np.array(rows)


def test_tiny_model_learns_held_out_phantoms(tiny_model, held_out):
    d = held_out_dice(tiny_model, held_out).mean(axis=0)
    assert all(d >= 0.85), f"Dice WT/TC/ET {d.round(3)}"
    assert d.mean() >= 0.9, f"Dice WT/TC/ET {d.round(3)}"
    assert len(load_model(tiny_model).networks) == 8  # the last 8 epochs as snapshots


def test_negative_control_shuffled_targets(tmp_path, held_out):
    """Same budget, each case trained on another case's labels: the test above must then fail."""
    data = tmp_path / "train"
    write_phantoms(data, n=len(TINY_TRAIN_SEEDS), seed=TINY_TRAIN_SEEDS[0], shape=TINY_SHAPE)
    ids = sorted(p.name for p in data.iterdir())
    segs = [(data / i / f"{i}_seg.nii.gz").read_bytes() for i in ids]
    for k, i in enumerate(ids):  # case k gets the labels of case k+1
        (data / i / f"{i}_seg.nii.gz").write_bytes(segs[(k + 1) % len(ids)])
    model = train_tiny(data, tmp_path / "model")
    d = held_out_dice(model, held_out).mean(axis=0)
    assert d.mean() < 0.5, f"Dice WT/TC/ET {d.round(3)} with shuffled targets"
    shutil.rmtree(data)
