"""The CUDA paths (bf16 autocast) against the CPU fp32 path: run only where a GPU is present.

CPU-only machines skip this whole file; the CPU suite checks that asking for CUDA there is a
clean usage error (test_predict, test_pipeline).
"""
from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_cuda_bf16_predict_agrees_with_cpu(cli, tmp_path, tiny_model):
    """The trained tiny model gives (nearly) the same labels and Dice on CUDA (bf16) as on CPU (fp32)."""
    from gliocascade.metrics import dice
    from gliocascade.phantom import write_phantoms

    write_phantoms(tmp_path / "cases", n=1, seed=1000, shape=(64, 64, 48))
    (case,) = [p for p in (tmp_path / "cases").iterdir() if p.is_dir()]
    outs = {}
    for device in ("cpu", "cuda"):
        res = cli("predict", "--case", case, "--model", tiny_model, "--out", tmp_path / device, "--tta", "8",
                  "--device", device, "--save-probabilities")
        assert res.exit_code == 0, res.output
        outs[device] = tmp_path / device
    prov = json.loads((outs["cuda"] / "provenance_predict.json").read_text())
    assert prov["parameters"]["device"].startswith("cuda") and prov["parameters"]["precision"] == "bf16"
    cid = case.name
    probs = {d: np.asarray(nib.load(o / f"{cid}_prob.nii.gz").dataobj) for d, o in outs.items()}
    assert np.abs(probs["cuda"] - probs["cpu"]).max() < 0.05  # bf16 rounding, not a different answer
    labels = {d: np.asarray(nib.load(o / f"{cid}_pred.nii.gz").dataobj) for d, o in outs.items()}
    assert (labels["cuda"] == labels["cpu"]).mean() >= 0.999
    truth = np.asarray(nib.load(case / f"{cid}_seg.nii.gz").dataobj)
    wt = {d: dice(lab > 0, truth > 0) for d, lab in labels.items()}
    assert wt["cpu"] > 0.8 and abs(wt["cuda"] - wt["cpu"]) < 0.01


def test_cuda_training_runs_with_bf16(tmp_path, small_phantoms):
    """A few epochs of tiny training on CUDA (bf16 autocast): finite losses and a model that loads on the GPU."""
    from gliocascade.configs import load_config
    from gliocascade.data import cases_from_folder
    from gliocascade.model_io import load_model
    from gliocascade.train import train

    out = train(cases_from_folder(small_phantoms), tmp_path / "model", load_config("tiny"), epochs=3,
                steps_per_epoch=2, device="cuda", progress=False)
    card = json.loads((out / "model.json").read_text())["data_card"]
    assert card["device"].startswith("cuda") and card["precision"] == "bf16"
    model = load_model(out, "cuda")
    assert next(model.networks[0].parameters()).is_cuda
    with open(out / "train_log.csv", newline="") as fh:
        losses = [float(row["loss"]) for row in csv.DictReader(fh)]
    assert len(losses) == 3 and all(np.isfinite(losses))
