"""`gliocascade preprocess`: bad input gives one line naming the file, exit 2, nothing written."""
from __future__ import annotations

import numpy as np
import nibabel as nib
import pytest
import SimpleITK as sitk

from gliocascade.errors import InputError
from gliocascade.geometry import bounding_box
from gliocascade.io import MODALITIES
from gliocascade.preprocess import read_input
from gliocascade.resample import brats_grid, field_of_view, to_brats
from gliocascade.sitk_arrays import to_array


def _write(path, array, affine=None):
    nib.save(nib.Nifti1Image(np.asarray(array), np.diag([0.9, 0.9, 5.5, 1.0]) if affine is None else affine), str(path))
    return path


@pytest.fixture
def valid_inputs(tmp_path):
    rng = np.random.default_rng(3)
    return {m: _write(tmp_path / f"in_{m}.nii.gz", rng.uniform(0, 100, (32, 32, 12)).astype(np.float32))
            for m in MODALITIES}


def _run(cli, inputs, out, *extra):
    args = ["preprocess", "--case-id", "X", "--out", out, *extra]
    for m in MODALITIES:
        args += [f"--{m}", inputs[m]]
    return cli(*args)


BAD = {
    "2D image": (lambda: np.ones((32, 32), np.float32), "2D"),
    "4D image": (lambda: np.ones((32, 32, 12, 3), np.float32), "4D"),
    "NaN": (lambda: np.where(np.arange(32 * 32 * 12).reshape(32, 32, 12) == 7, np.nan, 1.0).astype(np.float32),
            "NaN or infinite"),
    "Inf": (lambda: np.where(np.arange(32 * 32 * 12).reshape(32, 32, 12) == 7, np.inf, 1.0).astype(np.float32),
            "NaN or infinite"),
    "all zero": (lambda: np.zeros((32, 32, 12), np.float32), "all zero"),
    "one slice": (lambda: np.ones((32, 32, 1), np.float32), "2D"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_image_is_refused_with_one_line(cli, tmp_path, valid_inputs, name):
    make, words = BAD[name]
    bad = _write(tmp_path / "bad_t2.nii.gz", make())
    inputs = dict(valid_inputs, t2=bad)
    out = tmp_path / "out"
    res = _run(cli, inputs, out)
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {bad}:") and words in lines[0]
    assert not out.exists() or not any(out.iterdir())


def test_missing_file_and_unreadable_file(cli, tmp_path, valid_inputs):
    junk = tmp_path / "junk_t1.nii.gz"
    junk.write_bytes(b"not an image at all")
    for bad in (tmp_path / "absent.nii.gz", junk):
        res = _run(cli, dict(valid_inputs, t1=bad), tmp_path / "out")
        assert res.exit_code == 2 and f"error: {bad}:" in res.output
    assert not (tmp_path / "out").exists()


def test_missing_atlas_names_the_fix(cli, tmp_path, valid_inputs, monkeypatch):
    monkeypatch.setenv("GLIOCASCADE_ATLAS", str(tmp_path / "no_atlas"))
    out = tmp_path / "out"
    res = _run(cli, valid_inputs, out)
    assert res.exit_code == 2
    assert "fetch-atlas" in res.output and len(res.output.strip().splitlines()) == 1
    assert not out.exists()


def test_singleton_fourth_axis_is_accepted(tmp_path):
    """Atlases are often stored 240x240x155x1: that is a 3D image."""
    p = _write(tmp_path / "a.nii.gz", np.ones((8, 9, 10, 1), np.float32))
    assert read_input(p, "t1").GetSize() == (8, 9, 10)


def test_world_geometry_kept(tmp_path):
    """An oblique LAS header reaches SimpleITK as the same physical geometry (LPS)."""
    rot = np.array(sitk.Euler3DTransform((0, 0, 0), 0.07, -0.06, 0.1).GetMatrix()).reshape(3, 3)
    aff = np.eye(4)
    aff[:3, :3] = np.diag([-1.0, 1.0, 1.0]) @ rot @ np.diag([0.9, 0.9, 5.5])
    aff[:3, 3] = (100.0, -70.0, -40.0)
    p = _write(tmp_path / "o.nii.gz", np.ones((8, 9, 10), np.float32), aff)
    img = read_input(p, "t1")
    ras = aff @ np.array([3, 4, 5, 1.0])
    lps = img.TransformIndexToPhysicalPoint((3, 4, 5))
    assert np.allclose(lps, [-ras[0], -ras[1], ras[2]], atol=1e-4)


def test_brats_grid_matches_design_header():
    """The output grid: nibabel affine diag(-1,-1,1) + (0,239,0), 240x240x155."""
    grid = brats_grid()
    assert grid.GetSize() == (240, 240, 155)
    for ijk in [(0, 0, 0), (239, 0, 0), (10, 20, 30), (239, 239, 154)]:
        lps = grid.TransformIndexToPhysicalPoint(ijk)
        ras = np.array([[-1.0, 0, 0, 0], [0, -1.0, 0, 239.0], [0, 0, 1.0, 0], [0, 0, 0, 1]]) @ np.array([*ijk, 1.0])
        assert np.allclose(lps, [-ras[0], -ras[1], ras[2]])
    arr = np.zeros((240, 240, 155), np.float32)
    arr[5, 6, 7] = 1
    img = sitk.GetImageFromArray(arr.transpose(2, 1, 0))
    assert to_array(img)[5, 6, 7] == 1


def test_resampling_a_box_gives_the_same_voxels_as_the_whole_grid():
    """Resampling only the brain's box: the same voxels inside it (up to float rounding of the
    shifted grid origin), zero outside, the same field of view."""
    native = sitk.GetImageFromArray(np.random.default_rng(0).uniform(1, 100, (30, 200, 180)).astype(np.float32))
    native.SetSpacing((0.9, 0.9, 5.5))
    native.SetOrigin((20.0, -230.0, -10.0))
    pose = sitk.Euler3DTransform((120.0, -120.0, 77.0), 0.1, -0.05, 0.2, (3.0, -4.0, 2.0))
    mask = np.zeros((240, 240, 155), dtype=bool)
    mask[60:170, 50:200, 30:140] = True
    box = bounding_box(mask, 8)
    assert [(b.start, b.stop) for b in box] == [(52, 178), (42, 208), (22, 148)]
    whole, boxed = to_brats(native, pose), to_brats(native, pose, box=box)
    assert np.allclose(boxed[box], whole[box], rtol=0, atol=1e-3) and not boxed.any(where=~_inside(box))
    fov_whole, fov_boxed = field_of_view(native, pose), field_of_view(native, pose, box)
    assert np.array_equal(fov_boxed[box], fov_whole[box]) and fov_whole[box].any() and not fov_whole[box].all()
    assert bounding_box(np.zeros((4, 5, 6), dtype=bool), 2, whole_if_empty=True) == (slice(0, 4), slice(0, 5), slice(0, 6))


def _inside(box) -> np.ndarray:
    out = np.zeros((240, 240, 155), dtype=bool)
    out[box] = True
    return out


def test_unknown_skull_strip_method(tmp_path, valid_inputs):
    from gliocascade.preprocess import preprocess_case

    with pytest.raises(InputError, match="skull-stripping"):
        preprocess_case(valid_inputs, "X", tmp_path / "out", skull_strip="magic")


# --------------------------------------------------------------------------- the QC block

def _checks(t1_score: float):
    from pathlib import Path

    from gliocascade.preprocess import MIN_EDGE_CORR_ATLAS, MIN_EDGE_CORR_COREG, SimilarityCheck

    return [SimilarityCheck("atlas", "t1ce_to_atlas", "t1ce", MIN_EDGE_CORR_ATLAS, Path("x_t1ce.nii.gz"),
                            "the atlas T1", 0.2),
            SimilarityCheck("t1", "t1_to_t1ce", "t1", MIN_EDGE_CORR_COREG, Path("x_t1.nii.gz"), "x_t1ce.nii.gz",
                            t1_score)]


def test_qc_block_passes_refuses_or_records_the_override():
    """DESIGN's QC block: pass; a failed check refuses (case, modality, score) unless overridden."""
    from gliocascade.preprocess import qc_block
    from gliocascade.qc_flags import overridden_checks

    ok = qc_block(_checks(0.61), "X")
    assert ok["decision"] == "pass" and ok["reasons"] == []
    assert ok["checks"]["t1_to_t1ce"] == {"score": 0.61, "threshold": 0.4, "passed": True}
    assert overridden_checks({"preprocess": {"qc": ok}}) == []

    with pytest.raises(InputError) as refused:
        qc_block(_checks(0.21), "X")
    message = str(refused.value)
    assert message.startswith("x_t1.nii.gz: case X, t1: does not match") and "0.210 < 0.4" in message

    kept = qc_block(_checks(0.21), "X", allow_failure=True)
    assert kept["decision"] == "overridden"
    assert kept["checks"]["t1_to_t1ce"]["passed"] is False and kept["checks"]["t1ce_to_atlas"]["passed"] is True
    assert len(kept["reasons"]) == 1 and "case X, t1" in kept["reasons"][0]
    flags = overridden_checks({"preprocess": {"qc": kept}})
    assert len(flags) == 1 and flags[0].startswith("preprocess (t1_to_t1ce): case X, t1")


def _phantom_images(seed: int) -> dict[str, sitk.Image]:
    """A small phantom's modalities as SimpleITK images on one 2 mm grid (co-registered by construction)."""
    from gliocascade.phantom import make_phantom

    ph = make_phantom(seed, (64, 72, 56))
    out = {}
    for m, arr in ph.images.items():
        img = sitk.GetImageFromArray(np.ascontiguousarray(arr.astype(np.float32).transpose(2, 1, 0)))
        img.SetSpacing((2.0, 2.0, 2.0))
        out[m] = img
    return out


def test_the_mirror_check_tells_a_mirrored_modality_from_a_correct_one(seed: int = 11):
    """Pure function of the images: the correct FLAIR scores above the threshold, the same FLAIR with
    its voxels mirrored under an unchanged header below it."""
    from gliocascade import registration as reg
    from gliocascade.preprocess import MIN_MIRROR_MARGIN, edge_correlation, mirror_margin, mirrored

    images = _phantom_images(seed)
    fixed = images["t1ce"]
    brain = sitk.GetArrayFromImage(fixed) > 0
    params = reg.RegistrationParams()
    scores = {}
    for kind, moving in (("correct", images["flair"]), ("mirrored", mirrored(images["flair"]))):
        found = reg.register(fixed, moving, params=params).transform
        as_given = edge_correlation(fixed, moving, found, brain)
        scores[kind] = mirror_margin(fixed, moving, found, as_given, brain, np.array([1.0, 0.0, 0.0]), params)
    # measured 0.23 and -0.16: each clearly on its side of the threshold
    assert scores["correct"] > MIN_MIRROR_MARGIN + 0.08 and scores["mirrored"] < MIN_MIRROR_MARGIN - 0.08, scores


def test_optimality_gain_is_near_zero_at_the_truth_and_positive_off_it():
    """Pure function of images and a transform: one small step from a correct transform makes the
    edge correlation no better; from one rotated 8 degrees or shifted 8 mm, clearly better."""
    from gliocascade.preprocess import optimality_gain

    images = _phantom_images(5)
    fixed, moving = images["t1ce"], images["flair"]
    brain = sitk.GetArrayFromImage(fixed) > 0
    centre = fixed.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2.0 for n in fixed.GetSize()])
    truth = sitk.Euler3DTransform()
    rotated = sitk.VersorRigid3DTransform()
    rotated.SetCenter(centre)
    rotated.SetRotation((0.6, 0.0, 0.8), float(np.deg2rad(8.0)))
    shifted = sitk.TranslationTransform(3, (0.0, 8.0, 0.0))
    gains = {name: optimality_gain(fixed, moving, t, brain) for name, t in
             (("truth", truth), ("rot8", rotated), ("shift8", shifted))}
    assert gains["truth"] <= 0.005, gains
    assert gains["rot8"] > 0.02 and gains["shift8"] > 0.02, gains


def _off_and_correct_results(images, params):
    """Two co-registrations of a phantom's FLAIR onto its T1Gd (truth: identity), as the registration
    reports them: one stopped after a single step from 8 degrees off, one run to convergence."""
    from dataclasses import replace

    from gliocascade import registration as reg
    from gliocascade.preprocess import rigid_as_euler

    fixed, moving = images["t1ce"], images["flair"]
    centre = fixed.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2.0 for n in fixed.GetSize()])
    tilt = sitk.VersorRigid3DTransform()
    tilt.SetCenter(centre)
    tilt.SetRotation((0.6, 0.0, 0.8), float(np.deg2rad(8.0)))
    off = reg.register_from(fixed, moving, rigid_as_euler(tilt, centre), replace(params, iterations=1))
    correct = reg.register_from(fixed, moving, rigid_as_euler(sitk.Euler3DTransform(), centre), params)
    return off, correct


def _mean_error_mm(transform, brain_points) -> float:
    """Mean displacement of the brain's points (identity is the truth)."""
    return float(np.mean([np.linalg.norm(np.subtract(transform.TransformPoint(tuple(p)), p)) for p in brain_points]))


def test_a_registration_that_ended_off_its_optimum_is_restarted_from_its_best_neighbour():
    """An off-optimum result is run again from its best 3-degree/3-mm neighbour and kept when the
    registration's own metric prefers it: it lands near the truth and passes the optimum check. A
    result at its optimum is left as it is (no restart); a restart the metric does not prefer is
    recorded and not kept."""
    from dataclasses import replace

    from gliocascade import registration as reg
    from gliocascade.preprocess import MIN_OPTIMUM_MARGIN, optimality_gain, restart_off_optimum

    images = _phantom_images(5)
    fixed, moving = images["t1ce"], images["flair"]
    brain = sitk.GetArrayFromImage(fixed) > 0
    idx = np.argwhere(brain)[::50][:, ::-1]
    points = [fixed.TransformIndexToPhysicalPoint(tuple(int(i) for i in p)) for p in idx]
    params = reg.RegistrationParams()
    off, correct = _off_and_correct_results(images, params)
    assert -optimality_gain(fixed, moving, off.transform, brain) < MIN_OPTIMUM_MARGIN  # the check would refuse it
    assert _mean_error_mm(off.transform, points) > 3.0  # measured 3.9 mm

    kept, margin = restart_off_optimum(fixed, moving, off, brain, params)
    assert kept.extra["restart"]["kept"] and kept.metric < off.metric
    assert kept.extra["restart"]["margin_before"] < MIN_OPTIMUM_MARGIN <= margin
    assert _mean_error_mm(kept.transform, points) < 1.0
    assert isinstance(kept.transform, sitk.Euler3DTransform)

    same, at_optimum = restart_off_optimum(fixed, moving, correct, brain, params)
    assert same is correct and "restart" not in same.extra and at_optimum >= MIN_OPTIMUM_MARGIN

    prefers_the_first = replace(off, metric=-np.inf)
    unchanged, before = restart_off_optimum(fixed, moving, prefers_the_first, brain, params)
    assert unchanged.transform is off.transform and not unchanged.extra["restart"]["kept"]
    assert before < MIN_OPTIMUM_MARGIN


def test_a_restart_that_returns_to_the_same_optimum_is_kept_for_its_better_margin(monkeypatch):
    """Within 1 degree and 1 mm the registration's metric differs only by sampling noise, so a restart
    that comes back there is kept when it scores the better optimum margin, even where that metric
    (here made to prefer the first result outright) would not choose it."""
    from dataclasses import replace

    from gliocascade import preprocess
    from gliocascade import registration as reg

    images = _phantom_images(5)
    fixed, moving = images["t1ce"], images["flair"]
    brain = sitk.GetArrayFromImage(fixed) > 0
    params = reg.RegistrationParams()
    _, correct = _off_and_correct_results(images, params)
    nudged = sitk.Euler3DTransform(correct.transform)
    nudged.SetTranslation(tuple(np.add(nudged.GetTranslation(), (0.8, 0.0, 0.0))))
    first = replace(correct, transform=nudged, metric=-np.inf)
    at_optimum = -preprocess.optimality_gain(fixed, moving, correct.transform, brain)
    assert -preprocess.optimality_gain(fixed, moving, nudged, brain) < at_optimum - 0.01  # measured 0.004 vs 0.022
    monkeypatch.setattr(preprocess, "MIN_OPTIMUM_MARGIN", at_optimum - 0.002)  # so the nudged result is restarted
    kept, margin = preprocess.restart_off_optimum(fixed, moving, first, brain, params)
    record = kept.extra["restart"]
    assert record["same_optimum"] and record["kept"] and kept.transform is not nudged
    assert record["margin_after"] == margin > record["margin_before"]
    assert margin >= preprocess.MIN_OPTIMUM_MARGIN


def test_deep_brain_keeps_what_lies_the_depth_inside_the_outline_in_millimetres():
    """A ball of radius 30 mm on a 1 x 1 x 5 mm grid: its deep part (>= 10 mm inside) is the ball of
    radius 20 mm, measured in millimetres whatever the slice thickness (voxel counts would give 10 x 10 x 50)."""
    from gliocascade.preprocess import deep_brain

    image = sitk.Image(81, 81, 21, sitk.sitkFloat32)
    image.SetSpacing((1.0, 1.0, 5.0))
    z, y, x = np.meshgrid(np.arange(21) * 5.0, np.arange(81) * 1.0, np.arange(81) * 1.0, indexing="ij")
    r = np.sqrt((x - 40) ** 2 + (y - 40) ** 2 + (z - 50) ** 2)
    deep = deep_brain(r <= 30.0, image)
    assert deep.shape == r.shape and deep.any()
    # outside voxels lie 5 mm apart along z, so the edge of the deep part is sharp to half a slice
    assert r[deep].max() <= 22.5 and deep[r <= 19.0].all()
    assert not deep_brain(r <= 30.0, image, depth_mm=31.0).any()
