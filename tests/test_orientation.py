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
