"""Orientation: a case gives the same labels in world space whatever order its axes are stored in.

The storage-order copies are made with nibabel alone (``as_reoriented``), and the outputs are
brought back to a common orientation with nibabel alone, so these checks do not lean on the code
they test.
"""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

# LPS is the BraTS storage order; RAS the scanner convention; PSR a permutation with one flip;
# IRA permutes all three axes (none stays in place) and flips all three.
STORAGE_ORDERS = ("LPS", "RAS", "PSR", "IRA")
GEOMETRY_KEYS = ("qform_code", "sform_code", "pixdim", "srow_x", "srow_y", "srow_z", "qoffset_x",
                 "qoffset_y", "qoffset_z", "quatern_b", "quatern_c", "quatern_d", "dim")


@pytest.fixture
def one_thread():
    """One torch thread, so that identical inputs give identical outputs whatever the load."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def reoriented(img: nib.Nifti1Image, codes: str) -> nib.Nifti1Image:
    """The same voxels and world geometry with the array axes stored in ``codes`` order."""
    ornt = nib.orientations.ornt_transform(nib.io_orientation(img.affine), nib.orientations.axcodes2ornt(tuple(codes)))
    return img.as_reoriented(ornt)


def stored_as(case_dir: Path, case_id: str, codes: str, out: Path, suffixes: tuple[str, ...]) -> Path:
    """A copy of a BraTS case folder with every image stored in ``codes`` order."""
    dest = out / f"{codes}" / case_id
    dest.mkdir(parents=True)
    for suffix in suffixes:
        src = case_dir / f"{case_id}_{suffix}.nii.gz"
        img = reoriented(nib.load(str(src)), codes)
        assert "".join(nib.aff2axcodes(img.affine)) == codes
        nib.save(img, str(dest / src.name))
    return dest


def predict_in(folder: Path, model: Path, out: Path, probabilities: bool = True) -> Path:
    """``predict --tta 1`` of one case folder with the model, called in-process."""
    from gliocascade.io import discover_case
    from gliocascade.predict import load_models, predict_case

    case = discover_case(folder)
    return predict_case(case.images, case.case_id, load_models([model], "cpu"), out, tta=1, device="cpu",
                        save_probabilities=probabilities)


def assert_on_input_grid(pred_path: Path, input_path: Path) -> None:
    """The output carries its input's grid exactly: shape, affine and every geometry header field."""
    pred, ref = nib.load(str(pred_path)), nib.load(str(input_path))
    assert pred.shape == ref.shape
    assert np.array_equal(pred.affine, ref.affine)
    for key in GEOMETRY_KEYS:
        assert np.array_equal(pred.header[key], ref.header[key]), key


def world_arrays(pred_path: Path, prob_path: Path | None, codes: str = "LPS"
                 ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Labels, probabilities (channels last, when written) and affine of an output brought to ``codes`` order."""
    lab = reoriented(nib.load(str(pred_path)), codes)
    probs = None
    if prob_path is not None:
        prob = nib.load(str(prob_path))
        ornt = nib.orientations.ornt_transform(nib.io_orientation(prob.affine),
                                               nib.orientations.axcodes2ornt(tuple(codes)))
        probs = nib.orientations.apply_orientation(np.asarray(prob.dataobj), ornt)
    return np.asarray(lab.dataobj), probs, lab.affine


def assert_same_bytes(got: np.ndarray, want: np.ndarray, what: str) -> None:
    """Byte-identical arrays; the message counts the voxels that differ."""
    assert got.dtype == want.dtype and got.shape == want.shape, what
    if got.tobytes() != want.tobytes():
        differ = int(np.count_nonzero(got != want))
        pytest.fail(f"{what}: {differ} of {got.size} values differ from the LPS-stored case")


def check_storage_orders(case_dir: Path, case_id: str, model: Path, tmp_path: Path,
                         suffixes: tuple[str, ...], probabilities: bool = True) -> None:
    """Predict the case stored in every order; labels (and probabilities) agree byte for byte in world space."""
    results = {}
    for codes in STORAGE_ORDERS:
        folder = stored_as(case_dir, case_id, codes, tmp_path / "cases", suffixes)
        pred = predict_in(folder, model, tmp_path / "out" / codes, probabilities)
        assert_on_input_grid(pred, folder / f"{case_id}_t1ce.nii.gz")
        assert "".join(nib.aff2axcodes(nib.load(str(pred)).affine)) == codes
        results[codes] = world_arrays(pred, pred.parent / f"{case_id}_prob.nii.gz" if probabilities else None)
    ref_labels, ref_probs, ref_affine = results["LPS"]
    assert len(np.unique(ref_labels)) >= 3  # a labelling that a permutation could change
    for codes, (labels, probs, affine) in results.items():
        assert np.allclose(affine, ref_affine, atol=1e-6), codes
        assert_same_bytes(labels, ref_labels, f"labels stored {codes}")
        if probabilities:
            assert_same_bytes(probs, ref_probs, f"probabilities stored {codes}")


def test_phantom_same_labels_in_world_space_whatever_storage_order(random_tiny_model, tmp_path, one_thread):
    from gliocascade.phantom import write_phantoms

    case_dir = write_phantoms(tmp_path / "phantom", n=1, seed=11, shape=(64, 64, 48))[0]
    check_storage_orders(case_dir, case_dir.name, random_tiny_model, tmp_path,
                         ("t1", "t1ce", "t2", "flair", "seg"))


@pytest.mark.realdata
def test_real_case_same_labels_in_world_space_whatever_storage_order(data_dir, random_tiny_model, tmp_path,
                                                                       one_thread):
    case_dir = data_dir / "brats_space" / "TCGA-FG-6692"
    if not case_dir.is_dir():
        pytest.skip(f"{case_dir} not found")
    assert nib.aff2axcodes(nib.load(str(case_dir / "TCGA-FG-6692_t1ce.nii.gz")).affine) == ("L", "P", "S")
    # Labels only: the probability maps of a whole BraTS grid cost time and the phantom checks them.
    check_storage_orders(case_dir, "TCGA-FG-6692", random_tiny_model, tmp_path, ("t1", "t1ce", "t2", "flair"),
                         probabilities=False)


# --------------------------------------------------------------------------- the array mapping

def affine_of(codes: str) -> np.ndarray:
    """A 1 mm grid whose array axes point toward ``codes`` (as nibabel reads it)."""
    from gliocascade.io import brats_affine

    ornt = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt(("L", "P", "S")),
                                           nib.orientations.axcodes2ornt(tuple(codes)))
    return brats_affine() @ nib.orientations.inv_ornt_aff(ornt, (6, 7, 8))


@pytest.mark.parametrize("stored", ["LPS", "RAS", "SRA"])
@pytest.mark.parametrize("target", ["LPS", "RAS", "PSR", "SRA", "IAL", "LAI"])
@pytest.mark.parametrize("channels", [None, 3])
def test_round_trip_is_exact_and_matches_nibabel(stored, target, channels):
    from gliocascade.orientation import axis_codes, from_orientation, to_orientation

    rng = np.random.default_rng(0)
    affine = affine_of(stored)
    assert "".join(axis_codes(affine)) == stored
    shape = nib.orientations.apply_orientation(np.zeros((6, 7, 8)), nib.orientations.ornt_transform(
        nib.orientations.axcodes2ornt(("L", "P", "S")), nib.orientations.axcodes2ornt(tuple(stored)))).shape
    arr = rng.standard_normal(((channels,) if channels else ()) + shape).astype(np.float32)
    moved = to_orientation(arr, affine, target)
    # Independently: nibabel reorients each channel image, and the result's affine has the target codes.
    for c in range(channels or 1):
        img = nib.Nifti1Image(arr[c] if channels else arr, affine)
        want = reoriented(img, target)
        assert "".join(nib.aff2axcodes(want.affine)) == target
        assert np.array_equal(moved[c] if channels else moved, np.asarray(want.dataobj))
    back = from_orientation(moved, affine, target)
    assert back.tobytes() == arr.tobytes() and back.shape == arr.shape
    assert moved.flags["C_CONTIGUOUS"] and back.flags["C_CONTIGUOUS"]
    if stored == target:
        assert moved is arr  # already in the target orientation: untouched


def test_flips_and_permutations_are_not_identities():
    from gliocascade.orientation import to_orientation

    arr = np.arange(6 * 7 * 8, dtype=np.int32).reshape(6, 7, 8)
    affine = affine_of("LPS")
    assert np.array_equal(to_orientation(arr, affine, "RPS"), arr[::-1])
    assert np.array_equal(to_orientation(arr, affine, "LAI"), arr[:, ::-1, ::-1])
    assert np.array_equal(to_orientation(arr, affine, "PSL"), arr.transpose(1, 2, 0))
    assert np.array_equal(to_orientation(arr, affine, "IRA"), arr[::-1, ::-1, ::-1].transpose(2, 0, 1))


@pytest.mark.parametrize("stored", ["LPS", "RAS", "SRA"])
@pytest.mark.parametrize("target", ["LPS", "PSR", "IAL"])
def test_box_and_sizes_map_back_to_the_stored_axes(stored, target):
    """Records name voxels of the files as stored: a box found in the model's orientation, mapped back."""
    from gliocascade.orientation import box_from_orientation, from_orientation, sizes_from_orientation, to_orientation

    affine = affine_of(stored)
    moved = to_orientation(np.zeros((6, 7, 8)), affine_of("LPS"), stored)  # the stored grid's shape
    shape = to_orientation(moved, affine, target).shape
    box = [[1, 4], [0, 3], [2, shape[2]]]
    inside = np.zeros(shape, bool)
    inside[tuple(slice(a, b) for a, b in box)] = True
    stored_inside = from_orientation(inside, affine, target)
    idx = np.argwhere(stored_inside)
    want = [[int(lo), int(hi) + 1] for lo, hi in zip(idx.min(axis=0), idx.max(axis=0))]
    assert box_from_orientation(box, shape, affine, target) == want
    assert sizes_from_orientation(shape, affine, target) == list(moved.shape)


def test_axis_codes_oblique_and_degenerate():
    from gliocascade.orientation import axis_codes, to_orientation

    a = np.deg2rad(20)
    rot = np.array([[np.cos(a), -np.sin(a), 0, 0], [np.sin(a), np.cos(a), 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    assert axis_codes(rot @ affine_of("LPS")) == ("L", "P", "S")  # nearest axes of a 20 degree tilt
    assert axis_codes(affine_of("PSR")) == ("P", "S", "R")
    flat = np.diag([1.0, 1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="degenerate"):
        axis_codes(flat)
    with pytest.raises(ValueError, match="degenerate"):
        to_orientation(np.zeros((2, 2, 2)), flat, "LPS")


@pytest.mark.parametrize("bad", ["LPX", "LLS", "LP", "LPSR", "lps", "LRS", "", ("L", "P"), 7])
def test_invalid_codes_are_refused(bad):
    from gliocascade.orientation import parse_codes

    with pytest.raises(ValueError, match="orientation"):
        parse_codes(bad)


# --------------------------------------------------------------------------- the model card

def _model_json(folder: Path) -> dict:
    import json

    return json.loads((folder / "model.json").read_text())


def _set_orientation(folder: Path, value) -> None:
    """Rewrite model.json's orientation (the weight hashes do not cover model.json)."""
    import json

    doc = _model_json(folder)
    if value is None:
        doc.pop("orientation", None)
    else:
        doc["orientation"] = value
    (folder / "model.json").write_text(json.dumps(doc))


def _tiny_folder(folder: Path, card: dict) -> Path:
    from gliocascade.configs import load_config
    from gliocascade.model_io import write_model_folder
    from gliocascade.networks import build_cascade

    cfg = load_config("tiny")
    torch.manual_seed(0)
    return write_model_folder(folder, cfg, build_cascade(cfg).state_dict(), [], card)


def test_model_json_orientation_written_defaulted_and_checked(tmp_path):
    from gliocascade.errors import InputError
    from gliocascade.model_card import read_model_json
    from gliocascade.model_io import load_model

    default = _tiny_folder(tmp_path / "default", {"source": "x"})
    doc = _model_json(default)
    assert doc["orientation"] == "LPS" and "orientation" not in doc["data_card"]
    assert load_model(default).orientation == "LPS"
    ras = _tiny_folder(tmp_path / "ras", {"orientation": "RAS"})
    assert _model_json(ras)["orientation"] == "RAS" and load_model(ras).orientation == "RAS"
    _set_orientation(ras, None)  # a model written before the field: trained on BraTS-stored arrays
    assert load_model(ras).orientation == "LPS"
    for bad in ("LPX", "RRS", "lps", ["L", "P", "S"], 3):
        _set_orientation(ras, bad)
        with pytest.raises(InputError, match="model.json.*orientation") as err:
            read_model_json(ras)
        assert err.value.path == str(ras / "model.json") and "\n" not in str(err.value)
    with pytest.raises(ValueError, match="L/R, P/A and S/I"):
        _tiny_folder(tmp_path / "bad", {"orientation": "LPP"})


def test_ensemble_of_different_orientations_is_refused(tmp_path):
    from gliocascade.errors import InputError
    from gliocascade.model_io import ensemble_orientation, load_model

    lps = load_model(_tiny_folder(tmp_path / "lps", {}))
    psr = load_model(_tiny_folder(tmp_path / "psr", {"orientation": "PSR"}))
    assert ensemble_orientation([lps, lps]) == "LPS"
    with pytest.raises(InputError) as err:
        ensemble_orientation([lps, psr])
    msg = str(err.value)
    assert str(tmp_path / "lps") in msg and str(tmp_path / "psr") in msg and "PSR" in msg and "LPS" in msg


def test_predict_uses_the_model_orientation_and_records_it(random_tiny_model, tmp_path, one_thread):
    """A model trained on PSR arrays sees a PSR array whatever the storage order; provenance says so."""
    import json
    import shutil

    from gliocascade.phantom import write_phantoms

    case_dir = write_phantoms(tmp_path / "phantom", n=1, seed=12, shape=(64, 64, 48))[0]
    cid = case_dir.name
    psr_model = tmp_path / "psr_model"
    shutil.copytree(random_tiny_model, psr_model)
    _set_orientation(psr_model, "PSR")
    suffixes = ("t1", "t1ce", "t2", "flair")
    lps_case = stored_as(case_dir, cid, "LPS", tmp_path / "cases", suffixes)
    psr_case = stored_as(case_dir, cid, "PSR", tmp_path / "cases", suffixes)
    outs = {name: predict_in(folder, model, tmp_path / name, probabilities=False)
            for name, folder, model in (("lps_case_lps_model", lps_case, random_tiny_model),
                                        ("lps_case_psr_model", lps_case, psr_model),
                                        ("psr_case_psr_model", psr_case, psr_model))}
    world = {k: world_arrays(p, None)[0] for k, p in outs.items()}
    assert_same_bytes(world["psr_case_psr_model"], world["lps_case_psr_model"], "PSR model")
    assert not np.array_equal(world["lps_case_psr_model"], world["lps_case_lps_model"])  # the field is used
    params = json.loads((outs["psr_case_psr_model"].parent / "provenance_predict.json").read_text())["parameters"]
    assert params["stored_orientation"] == "PSR" and params["model_orientation"] == "PSR"
    params = json.loads((outs["lps_case_lps_model"].parent / "provenance_predict.json").read_text())["parameters"]
    assert params["stored_orientation"] == "LPS" and params["model_orientation"] == "LPS"


# --------------------------------------------------------------------------- training

def test_load_volume_same_arrays_whatever_storage_order(tmp_path):
    import inspect

    from gliocascade.data import load_volume
    from gliocascade.io import discover_case
    from gliocascade.orientation import BRATS_ORIENTATION
    from gliocascade.phantom import write_phantoms

    assert inspect.signature(load_volume).parameters["orientation"].default == BRATS_ORIENTATION
    case_dir = write_phantoms(tmp_path / "phantom", n=1, seed=13, shape=(40, 36, 28))[0]
    cid = case_dir.name
    # A brain mask that differs from "non-zero in every modality", so the mask's reorientation counts.
    t1ce = nib.load(str(case_dir / f"{cid}_t1ce.nii.gz"))
    mask = (np.asarray(t1ce.dataobj) != 0).astype(np.uint8)
    mask[:, :, :10] = 0
    nib.save(nib.Nifti1Image(mask, t1ce.affine), str(case_dir / f"{cid}_brainmask.nii.gz"))
    volumes = {}
    for codes in ("LPS", "PSR", "IRA"):
        folder = stored_as(case_dir, cid, codes, tmp_path / "cases", ("t1", "t1ce", "t2", "flair", "seg", "brainmask"))
        case = discover_case(folder)
        case.brainmask = folder / f"{cid}_brainmask.nii.gz"
        volumes[codes] = load_volume(case)
    ref = volumes["LPS"]
    assert ref.regions[0].any() and ref.images.shape == (4, 40, 36, 28)
    for codes, vol in volumes.items():
        assert_same_bytes(vol.images, ref.images, f"images stored {codes}")
        assert_same_bytes(vol.regions, ref.regions, f"regions stored {codes}")
    # Training in another orientation gives that orientation's arrays.
    psr = load_volume(discover_case(tmp_path / "cases" / "LPS" / cid), orientation="PSR")
    assert psr.images.shape == (4, 36, 28, 40)


def test_train_records_its_orientation_on_the_card(tmp_path):
    from gliocascade.configs import load_config
    from gliocascade.data import cases_from_folder
    from gliocascade.model_io import load_model
    from gliocascade.phantom import write_phantoms
    from gliocascade.train import train

    write_phantoms(tmp_path / "data", n=2, seed=0, shape=(16, 16, 16))
    out = train(cases_from_folder(tmp_path / "data"), tmp_path / "model", load_config("tiny"), epochs=1,
                steps_per_epoch=1, device="cpu", progress=False)
    doc = _model_json(out)
    assert doc["orientation"] == "LPS" and "orientation" not in doc["data_card"]
    assert load_model(out).orientation == "LPS"
