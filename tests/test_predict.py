"""predict: geometry on any grid, both label conventions, provenance, --cases, and bad input."""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from gliocascade.io import MODALITIES, write_image
from gliocascade.phantom import make_phantom


@pytest.fixture(scope="module")
def snapshot_tiny_model(tmp_path_factory) -> Path:
    """A `tiny` model folder with random weights and two snapshots (fast to build, not trained)."""
    from gliocascade.configs import load_config
    from gliocascade.model_io import write_model_folder
    from gliocascade.networks import build_cascade

    cfg = load_config("tiny")
    torch.manual_seed(3)
    states = [{"model": build_cascade(cfg).state_dict()} for _ in range(3)]
    folder = tmp_path_factory.mktemp("random_tiny")
    write_model_folder(folder, cfg, states[0], states[1:], {"label_convention": "2019", "split": None})
    return folder


def _oblique_affine() -> np.ndarray:
    a = np.deg2rad(20.0)
    rot = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    aff = np.eye(4)
    aff[:3, :3] = rot @ np.diag([0.9, 1.2, 2.0])
    aff[:3, 3] = [-30.0, 12.5, 7.0]
    return aff


def _write_case(folder: Path, case_id: str, shape=(37, 33, 21), affine=None, seed: int = 11,
                names: str = "2019") -> Path:
    """A phantom written on a non-BraTS grid (oblique, anisotropic, odd sizes)."""
    ph = make_phantom(seed, shape)
    affine = _oblique_affine() if affine is None else affine
    suffix = {"t1": "t1n", "t1ce": "t1c", "t2": "t2w", "flair": "t2f"}
    for m in MODALITIES:
        name = f"{case_id}_{m}" if names == "2019" else f"{case_id}-{suffix[m]}"
        write_image(folder / f"{name}.nii.gz", ph.images[m], affine)
    return folder


def test_geometry_on_non_brats_grid(cli, tmp_path, snapshot_tiny_model):
    case = _write_case(tmp_path / "folder_name_differs", "caseA")
    out = tmp_path / "out"
    res = cli("predict", "--case", case, "--model", snapshot_tiny_model, "--out", out, "--tta", "2", "--device", "cpu",
              "--save-probabilities")
    assert res.exit_code == 0, res.output
    ref = nib.load(case / "caseA_t1ce.nii.gz")
    pred = nib.load(out / "caseA_pred.nii.gz")
    assert pred.shape == ref.shape == (37, 33, 21)
    assert np.array_equal(pred.affine, ref.affine)
    for key in ("qform_code", "sform_code", "pixdim", "srow_x", "srow_y", "srow_z", "quatern_b", "quatern_c",
                "quatern_d", "qoffset_x", "qoffset_y", "qoffset_z", "xyzt_units", "dim_info"):
        assert np.array_equal(pred.header[key], ref.header[key]), key
    assert pred.get_data_dtype() == np.uint8
    labels = np.asarray(pred.dataobj)
    assert set(np.unique(labels)) <= {0, 1, 2, 4}
    prob = nib.load(out / "caseA_prob.nii.gz")
    assert prob.shape == (37, 33, 21, 3) and np.array_equal(prob.affine, ref.affine)
    p = np.asarray(prob.dataobj)
    assert p.min() >= 0 and p.max() <= 1
    # Outside the brain's bounding box nothing is predicted (the crop leaves zeros there).
    brain = np.all(np.stack([np.asarray(nib.load(case / f"caseA_{m}.nii.gz").dataobj) for m in MODALITIES]) != 0, 0)
    box = np.zeros_like(brain)
    box[tuple(slice(i.min(), i.max() + 1) for i in np.nonzero(brain))] = True
    assert not box.all() and not p[~box].any() and p[box].any()
    prov = json.loads((out / "provenance_predict.json").read_text())
    assert prov["parameters"]["tta"] == 2 and prov["parameters"]["device"] == "cpu"
    model_json = json.loads((snapshot_tiny_model / "model.json").read_text())
    assert prov["models"][0]["weights_sha256"] == model_json["sha256"]
    assert prov["passes"] == 2 and prov["timings_s"]["inference_s"] > 0
    assert set(prov["inputs"]) == set(MODALITIES)


def test_2023_names_and_convention(cli, tmp_path, snapshot_tiny_model):
    case = _write_case(tmp_path / "c", "BraTS-X-1", names="2023", affine=np.diag([-1.0, -1.0, 1.0, 1.0]))
    out19, out23 = tmp_path / "o19", tmp_path / "o23"
    for out, conv in ((out19, "2019"), (out23, "2023")):
        res = cli("predict", "--case", case, "--model", snapshot_tiny_model, "--out", out, "--tta", "1",
                  "--device", "cpu", "--label-convention", conv)
        assert res.exit_code == 0, res.output
    a = np.asarray(nib.load(out19 / "BraTS-X-1_pred.nii.gz").dataobj)
    b = np.asarray(nib.load(out23 / "BraTS-X-1_pred.nii.gz").dataobj)
    assert np.array_equal(a == 4, b == 3) and np.array_equal(np.isin(a, [0, 1, 2]) * a, np.isin(b, [0, 1, 2]) * b)
    assert not (b == 4).any()


def test_cases_folder_loads_models_once(cli, tmp_path, snapshot_tiny_model, monkeypatch):
    import gliocascade.model_io as model_io

    root = tmp_path / "cases"
    _write_case(root / "one", "p1", shape=(24, 24, 16), seed=1)
    _write_case(root / "two", "p2", shape=(24, 24, 16), seed=2)
    calls = []
    real = model_io.load_model
    monkeypatch.setattr(model_io, "load_model", lambda *a, **k: calls.append(a) or real(*a, **k))
    res = cli("predict", "--cases", root, "--model", snapshot_tiny_model, "--model", snapshot_tiny_model,
              "--out", tmp_path / "out", "--tta", "1", "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert len(calls) == 2  # once per --model, not per case
    for cid in ("p1", "p2"):
        assert nib.load(tmp_path / "out" / cid / f"{cid}_pred.nii.gz").shape == (24, 24, 16)
        prov = json.loads((tmp_path / "out" / cid / "provenance_predict.json").read_text())
        assert prov["passes"] == 2  # two model folders, one pass each


def _predict_with_mask(tmp_path: Path, model: Path, mask: np.ndarray, tta: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """Predict a 32x32x24 phantom case whose folder has ``mask`` as brain mask: (probabilities, labels, provenance)."""
    from gliocascade.io import write_labels
    from gliocascade.predict import load_models, predict_case

    case = _write_case(tmp_path / "c", "m1", shape=(32, 32, 24), affine=np.eye(4))
    write_labels(case / "m1_brainmask.nii.gz", mask.astype(np.uint8), np.eye(4))
    images = {m: case / f"m1_{m}.nii.gz" for m in MODALITIES}
    predict_case(images, "m1", load_models([model], "cpu"), tmp_path / "o", tta=tta, device="cpu",
                 brainmask=case / "m1_brainmask.nii.gz", save_probabilities=True)
    out = tmp_path / "o"
    return (np.asarray(nib.load(out / "m1_prob.nii.gz").dataobj), np.asarray(nib.load(out / "m1_pred.nii.gz").dataobj),
            json.loads((out / "provenance_predict.json").read_text()))


def test_brainmask_limits_the_crop(tmp_path, snapshot_tiny_model):
    mask = np.zeros((32, 32, 24), bool)
    mask[8:20, 6:25, 5:15] = True
    p, _, prov = _predict_with_mask(tmp_path, snapshot_tiny_model, mask, tta=1)
    assert not p[~mask].any() and p[mask].any()  # the mask is its own bounding box
    assert prov["window"]["box"] == [[8, 20], [6, 25], [5, 15]]
    assert all(s % 4 == 0 for s in prov["window"]["padded_shape"])


def test_nothing_is_predicted_outside_the_brain_inside_its_box(tmp_path, snapshot_tiny_model):
    """A ball-shaped brain mask: its box corners are in the network input, but get no tumour."""
    grid = np.indices((32, 32, 24))
    ball = ((grid - np.array([16, 16, 12])[:, None, None, None]) ** 2).sum(0) <= 10 ** 2
    p, labels, _ = _predict_with_mask(tmp_path, snapshot_tiny_model, ball, tta=2)
    assert not p[~ball].any() and not labels[~ball].any()
    assert p[ball].any()  # random weights give non-zero maps inside


# --------------------------------------------------------------------------- bad input

def _expect_input_error(cli, tmp_path, case, model, needle: str):
    out = tmp_path / "out_bad"
    res = cli("predict", "--case", case, "--model", model, "--out", out, "--tta", "1", "--device", "cpu")
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], res.output
    assert not out.exists() or not any(out.iterdir())
    return lines[0]


def test_missing_modality(cli, tmp_path, snapshot_tiny_model):
    case = _write_case(tmp_path / "c", "c1", shape=(16, 16, 16))
    (case / "c1_flair.nii.gz").unlink()
    line = _expect_input_error(cli, tmp_path, case, snapshot_tiny_model, "flair")
    assert "c1_flair.nii.gz" in line


def test_grids_differ(cli, tmp_path, snapshot_tiny_model):
    case = _write_case(tmp_path / "c", "c1", shape=(16, 16, 16))
    img = nib.load(case / "c1_t2.nii.gz")
    aff = img.affine.copy()
    aff[0, 3] += 2.0
    write_image(case / "c1_t2.nii.gz", np.asarray(img.dataobj), aff)
    _expect_input_error(cli, tmp_path, case, snapshot_tiny_model, "c1_t2.nii.gz")


def test_nan_voxels(cli, tmp_path, snapshot_tiny_model):
    case = _write_case(tmp_path / "c", "c1", shape=(16, 16, 16))
    img = nib.load(case / "c1_t1.nii.gz")
    arr = np.asarray(img.dataobj).astype(np.float32)
    arr[3, 4, 5] = np.nan
    write_image(case / "c1_t1.nii.gz", arr, img.affine)
    line = _expect_input_error(cli, tmp_path, case, snapshot_tiny_model, "NaN")
    assert "c1_t1.nii.gz" in line


def test_model_without_model_json(cli, tmp_path):
    case = _write_case(tmp_path / "c", "c1", shape=(16, 16, 16))
    empty = tmp_path / "not_a_model"
    empty.mkdir()
    _expect_input_error(cli, tmp_path, case, empty, "model.json")


def test_checkpoint_hash_differs(cli, tmp_path, snapshot_tiny_model):
    import shutil

    case = _write_case(tmp_path / "c", "c1", shape=(16, 16, 16))
    model = tmp_path / "model_copy"
    shutil.copytree(snapshot_tiny_model, model)
    snap = sorted((model / "snapshots").glob("*.pt"))[0]
    data = bytearray(snap.read_bytes())
    data[-10] ^= 0xFF
    snap.write_bytes(bytes(data))
    line = _expect_input_error(cli, tmp_path, case, model, "sha256")
    assert snap.name in line


def test_case_and_cases_exclusive(cli, tmp_path, snapshot_tiny_model):
    res = cli("predict", "--model", snapshot_tiny_model, "--out", tmp_path / "o")
    assert res.exit_code == 2 and "--case" in res.output


def test_cases_folder_one_bad_case_fails_alone(cli, tmp_path, snapshot_tiny_model):
    root = tmp_path / "cases"
    _write_case(root / "good", "g1", shape=(16, 16, 16), seed=1)
    bad = _write_case(root / "bad", "b1", shape=(16, 16, 16), seed=2)
    img = nib.load(bad / "b1_t2.nii.gz")
    arr = np.asarray(img.dataobj).astype(np.float32)
    arr[1, 1, 1] = np.inf
    write_image(bad / "b1_t2.nii.gz", arr, img.affine)
    res = cli("predict", "--cases", root, "--model", snapshot_tiny_model, "--out", tmp_path / "out", "--tta", "1",
              "--device", "cpu")
    assert res.exit_code == 1
    assert (tmp_path / "out" / "g1" / "g1_pred.nii.gz").is_file()
    assert not (tmp_path / "out" / "b1").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message for machines without CUDA")
def test_cuda_requested_without_cuda(cli, tmp_path, snapshot_tiny_model):
    case = _write_case(tmp_path / "c", "c1", shape=(16, 16, 16))
    res = cli("predict", "--case", case, "--model", snapshot_tiny_model, "--out", tmp_path / "o", "--device", "cuda")
    assert res.exit_code == 2 and "no CUDA device" in res.output
    assert not (tmp_path / "o").exists()
