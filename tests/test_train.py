"""`gliocascade train`: schedule, split, input checks before any step, weights-only checkpoints,
bit-exact resume after a real SIGKILL, and a smoke run on a real BraTS 2023 case."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from gliocascade.data import Volume
from gliocascade.io import brats_affine, write_image, write_labels
from gliocascade.phantom import write_phantoms
from gliocascade.train import learning_rate, make_split, validation_dice

# A very small cascade for the subprocess runs (16^3 crops of 32x32x24 phantoms).
SMALL = {"base": "tiny", "crop": [16, 16, 16], "widths2": [8, 16, 32], "batch_size": 1}


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONHASHSEED="0")
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1] / "python") + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _train_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "gliocascade.cli", "train", *[str(a) for a in args]]


def test_learning_rate_schedule():
    assert learning_rate(0, 405, 1e-4, 5) == pytest.approx(2e-5)
    assert learning_rate(4, 405, 1e-4, 5) == pytest.approx(1e-4)
    assert learning_rate(5, 405, 1e-4, 5) == pytest.approx(1e-4 * (400 / 405) ** 0.9)
    assert learning_rate(404, 405, 1e-4, 5) == pytest.approx(1e-4 * (1 / 405) ** 0.9)
    lrs = [learning_rate(e, 405, 1e-4, 5) for e in range(5, 405)]
    assert all(a > b for a, b in zip(lrs, lrs[1:]))


def test_kfold_split_is_seeded_and_partitions():
    ids = [f"c{i:02d}" for i in range(11)]
    splits = [make_split(ids, k, 5, seed=3) for k in range(5)]
    vals = [v for s in splits for v in s["val"]]
    assert sorted(vals) == ids  # every case validates exactly once
    for s in splits:
        assert set(s["train"]) | set(s["val"]) == set(ids) and not set(s["train"]) & set(s["val"])
    assert make_split(ids, 2, 5, seed=3) == splits[2]
    assert any(make_split(ids, k, 5, seed=4)["val"] != splits[k]["val"] for k in range(5))
    assert make_split(ids, None, 5, 0)["val"] == []


# --------------------------------------------------------------------------- bad input

class _FixedStage2(torch.nn.Module):
    """Stand-in cascade whose stage 2 always returns the same probability map (3, X, Y, Z)."""

    def __init__(self, prob: np.ndarray):
        super().__init__()
        self.register_buffer("prob", torch.from_numpy(prob.astype(np.float32)))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"stage2": self.prob[None].expand(x.shape[0], *self.prob.shape)}


def _volume(regions: np.ndarray) -> Volume:
    """A case whose brain is the whole image (non-zero z-scored voxels everywhere)."""
    return Volume("v", np.ones((4, *regions.shape[1:]), np.float32), regions.astype(np.uint8))


def test_validation_dice_follows_brats_conventions():
    # WT: 4 reference voxels, 2 of them predicted plus 2 others -> 2*2/(4+4); TC: reference only -> 0;
    # ET: empty in both -> 1 (BraTS convention).
    ref = np.zeros((3, 4, 4, 4), np.uint8)
    ref[0, 0, 0, :4] = 1
    ref[1, 0, 0, :2] = 1
    prob = np.full((3, 4, 4, 4), 0.1, np.float32)
    prob[0, 0, 0, :2] = 0.9
    prob[0, 3, 3, :2] = 0.9
    assert validation_dice(_FixedStage2(prob), [_volume(ref)], divisor=1) == pytest.approx([0.5, 0.0, 1.0])


def test_validation_dice_averages_cases_and_empty_case_is_perfect():
    # A case empty in reference and prediction scores 1 everywhere; its mean with a case whose
    # every region is missed (reference only) is 0.5 per region.
    empty = np.zeros((3, 4, 4, 4), np.uint8)
    missed = np.zeros_like(empty)
    missed[:, 1, 1, 1] = 1
    model = _FixedStage2(np.zeros((3, 4, 4, 4), np.float32))
    assert validation_dice(model, [_volume(empty)], divisor=1) == [1.0, 1.0, 1.0]
    assert validation_dice(model, [_volume(empty), _volume(missed)], divisor=1) == pytest.approx([0.5] * 3)


def test_validation_dice_without_volumes_is_nan():
    assert all(np.isnan(v) for v in validation_dice(_FixedStage2(np.zeros((3, 1, 1, 1))), [], divisor=1))


class _WhereInTheInput(torch.nn.Module):
    """Stand-in cascade whose output depends on where a voxel lies in the input tensor, so a
    different crop or padding of the same volume gives different probabilities."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv3d(4, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        ramp = torch.linspace(-2.0, 2.0, x.shape[2]).view(1, 1, -1, 1, 1)
        return {"stage2": torch.sigmoid(self.conv(x) + ramp)}


def test_validation_predicts_as_the_deployed_predictor(small_phantoms, tmp_path):
    """Training validation sees exactly what predict (tta 1) computes: same brain window, same
    padding, zero outside the brain; the validation Dice is metrics.dice of that prediction."""
    from gliocascade.data import load_volume
    from gliocascade.inference import stage2_probabilities
    from gliocascade.io import discover_case
    from gliocascade.metrics import dice
    from gliocascade.model_io import LoadedModel
    from gliocascade.orientation import to_orientation
    from gliocascade.predict import case_probabilities, read_case
    from gliocascade.train import predict_regions

    case = discover_case(sorted(small_phantoms.iterdir())[0])
    net = _WhereInTheInput().eval()
    model = LoadedModel(card={}, config={"divisor": 8}, networks=[net], folder=tmp_path)
    inputs = read_case(case.images, case.case_id)
    deployed, _ = case_probabilities(inputs, [model], 1, stage2_probabilities, torch.device("cpu"))
    deployed = to_orientation(deployed, inputs.reference.affine, "LPS")  # load_volume's order
    vol = load_volume(case)
    validated = predict_regions(net, vol.images, 8)
    np.testing.assert_allclose(validated, deployed, atol=1e-6)
    with torch.no_grad():  # the whole volume unwindowed would differ: the comparison can fail
        whole = net(torch.from_numpy(vol.images[None]))["stage2"][0].numpy()
    assert not np.allclose(whole * (validated > 0), validated, atol=1e-3)
    expected = [dice(p, r) for p, r in zip(deployed > 0.5, vol.regions)]
    assert validation_dice(net, [vol], 8) == pytest.approx(expected)


@pytest.fixture
def tiny_cases(tmp_path):
    write_phantoms(tmp_path / "data", n=2, seed=0, shape=(16, 16, 16))
    return tmp_path / "data"


def _expect_input_error(cli, tmp_path, data, needle, *extra):
    out = tmp_path / "model"
    res = cli("train", "--data", data, "--out", out, "--config", "tiny", "--epochs", "1", *extra)
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and needle in lines[0], res.output
    assert not (out / "checkpoint.pt").exists()  # nothing trained, nothing half-written
    return lines[0]


def test_missing_modality(cli, tmp_path, tiny_cases):
    (tiny_cases / "phantom001" / "phantom001_t2.nii.gz").unlink()
    line = _expect_input_error(cli, tmp_path, tiny_cases, "modality t2 missing")
    assert "phantom001_t2" in line


def test_modalities_on_different_grids(cli, tmp_path, tiny_cases):
    aff = brats_affine()
    aff[0, 3] += 5.0
    write_image(tiny_cases / "phantom000" / "phantom000_flair.nii.gz", np.ones((16, 16, 16), np.float32), aff)
    line = _expect_input_error(cli, tmp_path, tiny_cases, "differs")
    assert "phantom000_flair" in line


def test_labels_outside_convention(cli, tmp_path, tiny_cases):
    lab = np.zeros((16, 16, 16), np.uint8)
    lab[4:8, 4:8, 4:8] = 3  # ET of 2023, not a 2019 label
    write_labels(tiny_cases / "phantom001" / "phantom001_seg.nii.gz", lab, brats_affine())
    line = _expect_input_error(cli, tmp_path, tiny_cases, "outside the BraTS 2019 convention")
    assert "phantom001_seg" in line


def test_empty_data_folder(cli, tmp_path):
    (tmp_path / "empty").mkdir()
    _expect_input_error(cli, tmp_path, tmp_path / "empty", "no case folders")


def test_resume_without_checkpoint(cli, tmp_path, tiny_cases):
    _expect_input_error(cli, tmp_path, tiny_cases, "nothing to resume", "--resume")


# --------------------------------------------------------------------------- checkpoints and resume

@pytest.fixture(scope="module")
def resume_runs(tmp_path_factory):
    """An uninterrupted 4-epoch run, and the same run SIGKILLed mid-epoch 3 then resumed."""
    root = tmp_path_factory.mktemp("resume")
    write_phantoms(root / "data", n=3, seed=10, shape=(32, 32, 24))
    cfg = root / "small.json"
    cfg.write_text(json.dumps(SMALL))
    common = ["--data", root / "data", "--config", cfg, "--epochs", 4, "--steps-per-epoch", 6,
              "--fold", 0, "--folds", 3, "--seed", 5, "--device", "cpu"]
    full = subprocess.run(_train_cmd(*common, "--out", root / "full"), env=_env(), capture_output=True, text=True,
                          timeout=600)
    assert full.returncode == 0, full.stderr[-2000:]

    killed = root / "killed"
    proc = subprocess.Popen(_train_cmd(*common, "--out", killed), env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    k = 2
    deadline = time.time() + 600
    epoch_seen = 0
    while time.time() < deadline and proc.poll() is None:
        if (killed / "checkpoint.pt").exists():
            epoch_seen = int(torch.load(killed / "checkpoint.pt", weights_only=True)["epoch"])
            if epoch_seen >= k:
                break
        time.sleep(0.05)
    assert proc.poll() is None, "training finished before it could be killed"
    time.sleep(0.3)  # into the next epoch
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = int(torch.load(killed / "checkpoint.pt", weights_only=True)["epoch"])
    resumed = subprocess.run(_train_cmd(*common, "--out", killed, "--resume"), env=_env(), capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    return root, killed_at, proc.returncode


def test_resume_after_sigkill_is_bit_identical(resume_runs):
    root, killed_at, rc = resume_runs
    assert rc == -signal.SIGKILL and 2 <= killed_at < 4
    a = torch.load(root / "full" / "checkpoint.pt", weights_only=True)
    b = torch.load(root / "killed" / "checkpoint.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 4
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for snap in ("001.pt", "002.pt", "003.pt", "004.pt"):
        sa = torch.load(root / "full" / "snapshots" / snap, weights_only=True)["model"]
        sb = torch.load(root / "killed" / "snapshots" / snap, weights_only=True)["model"]
        assert all(torch.equal(sa[k], sb[k]) for k in sa), snap
    with open(root / "killed" / "train_log.csv") as fh:
        assert [int(r["epoch"]) for r in csv.DictReader(fh)] == [1, 2, 3, 4]


def test_checkpoint_is_plain_weights_only(resume_runs):
    root, _, _ = resume_runs
    ck = torch.load(root / "full" / "checkpoint.pt", weights_only=True)
    assert {"model", "optimizer", "scheduler", "rng", "epoch", "seed"} <= set(ck)
    assert {"torch", "numpy", "python"} <= set(ck["rng"])
    assert ck["optimizer"]["param_groups"][0]["weight_decay"] == pytest.approx(1e-5)
    model = json.loads((root / "full" / "model.json").read_text())
    assert model["split"]["fold"] == 0 and len(model["split"]["val"]) == 1
    assert len(model["snapshots"]) == 4 and set(model["sha256"]) == {"checkpoint.pt", *model["snapshots"]}
    assert json.loads((root / "full" / "split.json").read_text()) == model["split"]
    with open(root / "full" / "train_log.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert all(0 <= float(r["val_dice_WT"]) <= 1 for r in rows)


def test_resume_refuses_other_config_and_corrupt_checkpoint(resume_runs, cli, tmp_path):
    root, _, _ = resume_runs
    import shutil
    work = tmp_path / "m"
    shutil.copytree(root / "full", work)
    other = tmp_path / "wider.json"
    other.write_text(json.dumps({**SMALL, "widths2": [16, 32, 64]}))
    res = cli("train", "--data", root / "data", "--out", work, "--config", other, "--fold", "0", "--folds", "3",
              "--resume")
    assert res.exit_code == 2 and "another config (differs in widths2)" in res.output
    res = cli("train", "--data", root / "data", "--out", work, "--config", root / "small.json")
    assert res.exit_code == 2 and "use --resume" in res.output
    ck = work / "checkpoint.pt"
    ck.write_bytes(ck.read_bytes()[: ck.stat().st_size // 2])
    res = cli("train", "--data", root / "data", "--out", work, "--config", root / "small.json", "--fold", "0",
              "--folds", "3", "--resume")
    assert res.exit_code == 2 and "corrupt" in res.output


# --------------------------------------------------------------------------- real data

def test_real_case_smoke(data_dir, tmp_path, cli):
    case = data_dir / "brats_space" / "BraTS-GLI-00001-000"
    cid = "BraTS-GLI-00001-000"
    seg = case / "algorithm_segmentations" / "brats23_winner_labels0123.nii.gz"
    sheet = tmp_path / "samples.csv"
    names = {"t1": "t1n", "t1ce": "t1c", "t2": "t2w", "flair": "t2f"}
    row = [cid] + [str(case / f"{cid}-{names[m]}.nii.gz") for m in ("t1", "t1ce", "t2", "flair")] + [str(seg), "brats", "2023"]
    sheet.write_text("case_id,t1,t1ce,t2,flair,seg,space,label_convention\n" + ",".join(row) + "\n")
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"base": "tiny", "fg_crop_prob": 1.0}))  # winner's tumour in every crop
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        res = cli("train", "--samplesheet", sheet, "--out", tmp_path / "m", "--config", cfg, "--epochs", "6",
                  "--steps-per-epoch", "3", "--device", "cpu")
    finally:
        torch.set_num_threads(threads)
    assert res.exit_code == 0, res.output
    with open(tmp_path / "m" / "train_log.csv") as fh:
        loss = [float(r["loss"]) for r in csv.DictReader(fh)]
    assert len(loss) == 6 and np.mean(loss[-2:]) < np.mean(loss[:2]) - 0.1, loss
    card = json.loads((tmp_path / "m" / "model.json").read_text())
    assert card["label_convention"] == "2023"
