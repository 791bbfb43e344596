"""Case I/O: NIfTI geometry kept, atomic writes, clear errors on bad files, BraTS case discovery."""
from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

from gliocascade.errors import InputError
from gliocascade.io import (atomic_path, brats_affine, case_id_from_files, check_same_grid, discover_case,
                            discover_cases, load_nifti, read_image, read_labels, same_grid, write_image,
                            write_labels)


def _oblique_affine() -> np.ndarray:
    theta = np.deg2rad(12.0)
    rot = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
    aff = np.eye(4)
    aff[:3, :3] = rot @ np.diag([0.9, 0.9, 5.5])
    aff[:3, 3] = [-110.0, -95.5, -60.25]
    return aff


def test_write_then_read_keeps_geometry_and_values(tmp_path):
    arr = np.random.default_rng(0).normal(size=(7, 6, 5)).astype(np.float32)
    aff = _oblique_affine()
    path = write_image(tmp_path / "x.nii.gz", arr, aff)
    back, back_aff = read_image(path)
    assert np.array_equal(back, arr)
    assert np.allclose(back_aff, aff, atol=1e-5)
    img = nib.load(str(path))
    assert int(img.header["qform_code"]) == 1 and int(img.header["sform_code"]) == 1
    assert np.allclose(img.get_qform(), aff, atol=1e-5) and np.allclose(img.get_sform(), aff, atol=1e-5)
    assert img.header.get_xyzt_units()[0] == "mm"


def test_labels_are_written_as_uint8(tmp_path):
    labels = np.array([0, 1, 2, 4] * 6, dtype=np.int64).reshape(2, 3, 4)
    write_labels(tmp_path / "s.nii.gz", labels, brats_affine())
    assert nib.load(str(tmp_path / "s.nii.gz")).get_data_dtype() == np.uint8
    back, aff = read_labels(tmp_path / "s.nii.gz")
    assert np.array_equal(back, labels) and np.array_equal(aff, brats_affine())


def test_atomic_path_leaves_nothing_when_the_block_fails(tmp_path):
    target = tmp_path / "sub" / "out.nii.gz"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert not target.exists() and list(target.parent.iterdir()) == []
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp != target
        tmp.write_bytes(b"whole")
    assert target.read_bytes() == b"whole" and list(target.parent.iterdir()) == [target]


def test_an_existing_output_survives_a_failed_rewrite(tmp_path):
    target = tmp_path / "x.nii.gz"
    write_image(target, np.ones((3, 3, 3), np.float32), np.eye(4))
    before = target.read_bytes()
    with pytest.raises(ValueError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise ValueError
    assert target.read_bytes() == before


@pytest.mark.parametrize("kind,problem", [
    ("missing", "file not found"),
    ("folder", "found a folder"),
    ("text", "not a readable NIfTI"),
    ("truncated", "truncated or corrupt"),
    ("2d", "expected a 3D image"),
])
def test_load_errors_name_the_file_and_the_problem(tmp_path, kind, problem):
    path = tmp_path / "img.nii.gz"
    if kind == "folder":
        path.mkdir()
    elif kind == "text":
        path.write_text("hello")
    elif kind == "truncated":
        write_image(path, np.zeros((20, 20, 20), np.float32), np.eye(4))
        raw = gzip.decompress(path.read_bytes())
        path.write_bytes(gzip.compress(raw[: len(raw) - 1000]))
    elif kind == "2d":
        nib.save(nib.Nifti1Image(np.zeros((4, 4), np.float32), np.eye(4)), str(path))
    with pytest.raises(InputError) as info:
        load_nifti(path)
    assert info.value.path == str(path)
    assert problem in info.value.problem
    assert "\n" not in str(info.value)


def test_singleton_fourth_axis_is_squeezed(tmp_path):
    nib.save(nib.Nifti1Image(np.ones((4, 5, 6, 1), np.float32), np.eye(4)), str(tmp_path / "a.nii"))
    assert load_nifti(tmp_path / "a.nii").shape == (4, 5, 6)
    nib.save(nib.Nifti1Image(np.ones((4, 5, 6, 2), np.float32), np.eye(4)), str(tmp_path / "b.nii"))
    with pytest.raises(InputError, match="4D"):
        load_nifti(tmp_path / "b.nii")


def test_read_image_refuses_nan(tmp_path):
    arr = np.zeros((3, 3, 3), np.float32)
    arr[1, 1, 1] = np.inf
    write_image(tmp_path / "x.nii.gz", arr, np.eye(4))
    with pytest.raises(InputError, match="NaN or infinite"):
        read_image(tmp_path / "x.nii.gz")
    assert np.isinf(read_image(tmp_path / "x.nii.gz", finite=False)[0]).any()


def test_grid_check_tolerance_and_message():
    a = np.zeros((4, 4, 4))
    aff = brats_affine()
    near, far = aff.copy(), aff.copy()
    near[1, 3] += 9e-4
    far[1, 3] += 2e-3
    assert same_grid(aff, a.shape, near, a.shape)
    assert not same_grid(aff, a.shape, far, a.shape)
    assert not same_grid(aff, a.shape, aff, (4, 4, 5))
    check_same_grid("ref.nii.gz", (a, aff), "other.nii.gz", (a, near))
    with pytest.raises(InputError, match=r"^other.nii.gz: grid .* differs from ref.nii.gz"):
        check_same_grid("ref.nii.gz", (a, aff), "other.nii.gz", (a, far))


def _touch_case(folder, cid, names):
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        write_image(folder / f"{cid}{n}.nii.gz", np.zeros((2, 2, 2), np.float32), brats_affine())


def test_discover_2019_case_with_id_from_the_files_not_the_folder(tmp_path):
    _touch_case(tmp_path / "whatever", "BraTS19_X_1", ["_t1", "_t1ce", "_t2", "_flair", "_seg"])
    case = discover_case(tmp_path / "whatever")
    assert case.case_id == "BraTS19_X_1"
    assert {k: v.name for k, v in case.images.items()} == {
        "t1": "BraTS19_X_1_t1.nii.gz", "t1ce": "BraTS19_X_1_t1ce.nii.gz",
        "t2": "BraTS19_X_1_t2.nii.gz", "flair": "BraTS19_X_1_flair.nii.gz"}
    assert case.seg.name == "BraTS19_X_1_seg.nii.gz" and case.label_convention == "2019"


def test_discover_2023_names_imply_et_3(tmp_path):
    _touch_case(tmp_path / "c", "BraTS-GLI-00001-000", ["-t1n", "-t1c", "-t2w", "-t2f", "-seg"])
    case = discover_case(tmp_path / "c")
    assert case.case_id == "BraTS-GLI-00001-000"
    assert case.images["t1ce"].name.endswith("-t1c.nii.gz") and case.images["flair"].name.endswith("-t2f.nii.gz")
    assert case.label_convention == "2023" and case.seg.name.endswith("-seg.nii.gz")


def test_discover_names_a_missing_modality(tmp_path):
    _touch_case(tmp_path / "c", "p1", ["_t1", "_t1ce", "_flair"])
    with pytest.raises(InputError, match="modality t2 missing for case p1"):
        discover_case(tmp_path / "c")
    assert set(discover_case(tmp_path / "c", require_all=False).images) == {"t1", "t1ce", "flair"}
    with pytest.raises(InputError, match="no T1Gd"):
        case_id_from_files(tmp_path)


def test_discover_cases_skips_folders_that_are_not_cases(tmp_path):
    _touch_case(tmp_path / "b", "p2", ["_t1", "_t1ce", "_t2", "_flair"])
    _touch_case(tmp_path / "a", "p1", ["_t1", "_t1ce", "_t2", "_flair"])
    (tmp_path / "report").mkdir()
    assert [c.case_id for c in discover_cases(tmp_path)] == ["p1", "p2"]
    with pytest.raises(InputError, match="no case folders"):
        discover_cases(tmp_path / "report")


def test_discover_cases_names_an_incomplete_case(tmp_path):
    """A case folder missing a modality is an error naming it, never silently dropped."""
    _touch_case(tmp_path / "a", "p1", ["_t1", "_t1ce", "_t2", "_flair"])
    _touch_case(tmp_path / "b", "p2", ["_t1", "_t1ce", "_flair"])
    with pytest.raises(InputError, match=r"p2_t2.*modality t2 missing"):
        discover_cases(tmp_path)


def test_real_brats_2023_case_is_discovered(data_dir):
    folder = data_dir / "brats_space" / "BraTS-GLI-00001-000"
    case = discover_case(folder)
    assert case.case_id == "BraTS-GLI-00001-000" and case.label_convention == "2023"
    img = load_nifti(case.images["t1ce"])
    assert img.shape == (240, 240, 155)
    assert nib.aff2axcodes(img.affine) == ("L", "P", "S")


def test_csv_records_with_a_wrong_header_or_no_file_are_one_line_errors(tmp_path):
    from gliocascade.errors import InputError
    from gliocascade.io import read_csv_rows

    good = tmp_path / "good.csv"
    good.write_text("case_id,step,message\nA,predict,bad\n")
    assert read_csv_rows(good, ("case_id", "step", "message"), "failures file") == [
        {"case_id": "A", "step": "predict", "message": "bad"}]
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("case,step\nA,predict\n")
    with pytest.raises(InputError, match="a failures file needs the columns case_id,step,message") as err:
        read_csv_rows(wrong, ("case_id", "step", "message"), "failures file")
    assert "wrong.csv" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(InputError, match="unreadable case-files list"):
        read_csv_rows(tmp_path / "missing.csv", ("case_id", "role", "path"), "case-files list")
