"""Registration backends: known rigid transforms recovered on a phantom with skull; similarity measures."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from gliocascade import registration as reg
from gliocascade.phantom import make_phantom
from gliocascade.resample import as_affine, compose, resample
from gliocascade.sitk_arrays import from_array, to_array

SHAPE = (96, 96, 64)


def _phantom_image(seed: int, mod: str = "t1ce") -> tuple[sitk.Image, np.ndarray]:
    ph = make_phantom(seed, SHAPE, with_skull=True)
    ref = sitk.Image(list(SHAPE), sitk.sitkFloat32)
    ref.SetOrigin((-48.0, -48.0, -32.0))
    img = from_array(ph.images[mod].astype(np.float32), ref)
    return img, ph.images[mod] > 0


def _native_grid(src: sitk.Image) -> sitk.Image:
    """A scanner-like grid: oblique axes, anisotropic voxels, another origin."""
    grid = sitk.Image([80, 88, 30], sitk.sitkFloat32)
    grid.SetSpacing((1.2, 1.1, 2.5))
    rot = sitk.Euler3DTransform((0, 0, 0), 0.05, -0.04, 0.1)
    grid.SetDirection(rot.GetMatrix())
    grid.SetOrigin((-47.0, -50.0, -36.0))
    return grid


def _mean_error_mm(est: sitk.Transform, truth: sitk.Transform, pts: np.ndarray) -> float:
    a = reg.transform_points(est, pts)
    b = reg.transform_points(truth, pts)
    return float(np.linalg.norm(a - b, axis=1).mean())


@pytest.mark.parametrize("seed, angles, shift", [
    (11, (0.10, -0.06, 0.14), (6.0, -4.0, 3.0)),
    (12, (-0.12, 0.08, -0.05), (-5.0, 7.0, -2.5)),
])
def test_known_rigid_transform_recovered_within_1mm(seed, angles, shift):
    """Rotate/translate a phantom with skull into a 'native' grid; registration must undo it."""
    atlas, brain = _phantom_image(seed)
    centre = (0.0, 0.0, 0.0)
    truth = sitk.Euler3DTransform(centre, *angles, shift)   # native point -> phantom point
    native = resample(atlas, _native_grid(atlas), truth)
    result = reg.register(native, atlas)                    # fixed native, moving phantom
    idx = np.argwhere(brain)[:: 97]
    pts = np.array([atlas.TransformIndexToPhysicalPoint([int(i) for i in p]) for p in idx])
    # compare on brain points of the native space: map phantom brain points back with the truth
    native_pts = reg.transform_points(truth.GetInverse(), pts)
    err = _mean_error_mm(result.transform, truth, native_pts)
    assert err <= 1.0, f"mean error {err:.2f} mm"
    # the identity (doing nothing) would be far off, so the check has teeth
    assert _mean_error_mm(sitk.Euler3DTransform(), truth, native_pts) > 5.0


def test_multimodal_coregistration_recovers_shift():
    """T2 onto T1Gd of the same phantom (different contrasts) with a known shift and rotation."""
    t1ce, brain = _phantom_image(21, "t1ce")
    t2, _ = _phantom_image(21, "t2")
    truth = sitk.Euler3DTransform((0, 0, 0), 0.07, 0.0, -0.09, (3.0, -2.0, 4.0))
    moved_t2 = resample(t2, _native_grid(t2), truth.GetInverse())  # t2 in a shifted grid
    result = reg.register(t1ce, moved_t2)                           # t1ce point -> moved t2 point
    expected = truth                                                # moved(truth(q)) = t2(q)
    idx = np.argwhere(brain)[:: 97]
    pts = np.array([t1ce.TransformIndexToPhysicalPoint([int(i) for i in p]) for p in idx])
    assert _mean_error_mm(result.transform, expected, pts) <= 1.0


def test_registration_is_repeatable():
    """Same inputs -> the same transform parameters, bit for bit (seeded sampling, fixed threads)."""
    atlas, _ = _phantom_image(5)
    truth = sitk.Euler3DTransform((0, 0, 0), 0.05, 0.02, -0.03, (2.0, 1.0, -1.0))
    native = resample(atlas, _native_grid(atlas), truth)
    a = reg.register(native, atlas).transform.GetParameters()
    b = reg.register(native, atlas).transform.GetParameters()
    assert a == b


def test_both_metric_samplings_recover_the_transform_and_differ():
    """``sampling`` is honoured: the stratified default and independent random sampling draw other
    points (other transforms), and both recover the truth; an unknown strategy is refused."""
    atlas, brain = _phantom_image(6)
    truth = sitk.Euler3DTransform((0, 0, 0), 0.06, -0.03, 0.04, (3.0, -2.0, 1.5))
    native = resample(atlas, _native_grid(atlas), truth)
    pts = reg.transform_points(truth.GetInverse(), np.array(
        [atlas.TransformIndexToPhysicalPoint([int(i) for i in p]) for p in np.argwhere(brain)[::97]]))
    found = {s: reg.register(native, atlas, params=reg.RegistrationParams(sampling=s)).transform
             for s in reg.SAMPLING_STRATEGIES}
    for transform in found.values():
        assert _mean_error_mm(transform, truth, pts) <= 1.0
    assert found["regular"].GetParameters() != found["random"].GetParameters()
    with pytest.raises(ValueError, match="unknown metric sampling"):
        reg.RegistrationParams(sampling="grid")


def test_compose_order():
    """compose(a, b) applies b first."""
    a = sitk.TranslationTransform(3, (1.0, 0.0, 0.0))
    b = sitk.ScaleTransform(3, (2.0, 2.0, 2.0))
    assert compose(a, b).TransformPoint((1.0, 1.0, 1.0)) == pytest.approx((3.0, 2.0, 2.0))


def test_as_affine_equals_the_composition_it_replaces():
    """The written BraTS -> native map is one matrix; it must move every point as the chain did."""
    rigid = sitk.Euler3DTransform((10.0, -20.0, 5.0), 0.1, -0.2, 0.3, (4.0, -7.0, 2.5))
    affine = sitk.AffineTransform(3)
    affine.SetMatrix((1.05, 0.02, 0.0, -0.01, 0.97, 0.03, 0.0, 0.04, 1.1))
    affine.SetTranslation((-3.0, 1.0, 8.0))
    affine.SetCenter((100.0, -120.0, 60.0))
    chain = compose(rigid.GetInverse(), affine)
    single = as_affine(chain)
    assert isinstance(single, sitk.AffineTransform)
    points = np.random.default_rng(0).uniform(-150, 150, size=(50, 3))
    for pt in points:
        np.testing.assert_allclose(single.TransformPoint(tuple(pt)), chain.TransformPoint(tuple(pt)), atol=1e-9)
    back = single.GetInverse()  # invertible like the chain
    np.testing.assert_allclose(back.TransformPoint(single.TransformPoint((1.0, 2.0, 3.0))), (1.0, 2.0, 3.0),
                               atol=1e-9)


def test_nmi_and_ncc():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(20, 20, 20))
    mask = np.ones(a.shape, dtype=bool)
    assert reg.normalized_cross_correlation(a, 3 * a + 1, mask) == pytest.approx(1.0)
    assert reg.normalized_cross_correlation(a, -a, mask) == pytest.approx(-1.0)
    same = reg.normalized_mutual_information(a, a, mask)
    unrelated = reg.normalized_mutual_information(a, rng.normal(size=a.shape), mask)
    assert same == pytest.approx(2.0)
    assert 1.0 <= unrelated < 1.1


def test_ants_backend_returns_itk_transform():
    """antspyx registration read back as an ITK transform (fixed -> moving), same convention."""
    pytest.importorskip("ants")
    atlas, brain = _phantom_image(7)
    truth = sitk.Euler3DTransform((0, 0, 0), 0.0, 0.0, 0.08, (4.0, -3.0, 0.0))
    native = resample(atlas, _native_grid(atlas), truth)
    result = reg.register(native, atlas, backend="ants")
    idx = np.argwhere(brain)[:: 97]
    pts = reg.transform_points(truth.GetInverse(),
                               np.array([atlas.TransformIndexToPhysicalPoint([int(i) for i in p]) for p in idx]))
    assert _mean_error_mm(result.transform, truth, pts) <= 1.5


def test_to_array_round_trip():
    ref = sitk.Image([4, 5, 6], sitk.sitkFloat32)
    arr = np.arange(120, dtype=np.float32).reshape(4, 5, 6)
    img = from_array(arr, ref)
    assert img.GetPixel(1, 2, 3) == arr[1, 2, 3]
    assert np.array_equal(to_array(img), arr)


def test_affine_option_recovers_a_scaling():
    """--affine: a 6 % larger head (plus a shift) is matched within 1 mm where rigid cannot."""
    atlas, brain = _phantom_image(31)
    truth = sitk.AffineTransform(3)
    truth.SetMatrix((1.06, 0.0, 0.0, 0.0, 1.06, 0.0, 0.0, 0.0, 1.06))
    truth.SetTranslation((2.0, -1.5, 1.0))
    native = resample(atlas, _native_grid(atlas), truth)
    idx = np.argwhere(brain)[:: 97]
    pts = reg.transform_points(truth.GetInverse(),
                               np.array([atlas.TransformIndexToPhysicalPoint([int(i) for i in p]) for p in idx]))
    affine = reg.register(native, atlas, affine=True)
    assert _mean_error_mm(affine.transform, truth, pts) <= 1.0


def test_n4_copy_keeps_geometry_and_flattens_bias():
    from gliocascade.preprocess import n4_corrected

    shape = (64, 64, 32)
    grid = np.indices(shape).astype(np.float32)
    ball = ((grid[0] - 32) ** 2 + (grid[1] - 32) ** 2 + ((grid[2] - 16) * 2) ** 2) < 28 ** 2
    bias = 0.7 + 0.6 * grid[0] / 63.0                     # a strong left-right ramp
    arr = np.where(ball, 500.0 * bias, 0.0).astype(np.float32)
    img = from_array(arr, sitk.Image(list(shape), sitk.sitkFloat32))
    out = n4_corrected(img)
    assert out.GetSize() == img.GetSize() and out.GetOrigin() == img.GetOrigin()
    before, after = arr[ball], to_array(out)[ball]
    assert after.std() / after.mean() < 0.5 * before.std() / before.mean()


def test_registration_copy_averages_the_voxels_it_covers():
    """Each copy voxel is the mean of its 2x2 block, not one picked voxel: pixel-scale noise (here
    a +-1 checkerboard) averages out instead of being kept whole and aliased."""
    from gliocascade.preprocess import registration_copy

    checker = (np.indices((4, 64, 64)).sum(axis=0) % 2) * 2.0 - 1.0  # z, y, x
    img = sitk.GetImageFromArray((100.0 + checker).astype(np.float32))
    img.SetSpacing((0.75, 0.75, 5.0))  # shrunk 2x in plane
    small = sitk.GetArrayFromImage(registration_copy(img))
    assert small.shape == (4, 32, 32)
    assert np.allclose(small, 100.0)


def test_registration_copy_shrinks_every_fine_axis():
    from gliocascade.preprocess import registration_copy

    img = sitk.Image([256, 224, 26], sitk.sitkFloat32)
    img.SetSpacing((0.9, 0.9, 5.5))
    small = registration_copy(img)
    assert small.GetSize() == (128, 112, 26)
    assert np.allclose(small.GetSpacing(), (1.8, 1.8, 5.5))
    iso = sitk.Image([60, 60, 40], sitk.sitkFloat32)
    iso.SetSpacing((2.0, 2.0, 2.0))
    assert registration_copy(iso).GetSize() == (60, 60, 40)
    # a coronal exam stored with its slice axis second: its fine third axis is shrunk too
    coronal = sitk.Image([512, 40, 512], sitk.sitkFloat32)
    coronal.SetSpacing((0.47, 5.0, 0.47))
    assert registration_copy(coronal).GetSize() == (170, 40, 170)


def _tilted_case(seed: int, angle_deg: float):
    """The phantom tilted by ``angle_deg`` about an oblique axis and shifted, on a wider native grid."""
    atlas, brain = _phantom_image(seed)
    axis = np.array([1.0, 0.6, 0.3]) / np.linalg.norm([1.0, 0.6, 0.3])
    truth = sitk.VersorRigid3DTransform()
    truth.SetRotation(tuple(axis), float(np.radians(angle_deg)))
    truth.SetTranslation((8.0, -6.0, 5.0))  # native point -> phantom point
    grid = sitk.Image([130, 130, 48], sitk.sitkFloat32)
    grid.SetSpacing((1.2, 1.2, 2.5))
    grid.SetOrigin((-78.0, -78.0, -60.0))
    native = resample(atlas, grid, truth)
    idx = np.argwhere(brain)[:: 97]
    pts = np.array([atlas.TransformIndexToPhysicalPoint([int(i) for i in p]) for p in idx])
    return native, atlas, truth, reg.transform_points(truth.GetInverse(), pts)


def test_robust_start_recovers_a_50_degree_tilt_that_the_centre_of_mass_start_misses():
    """On this small, smooth phantom the centre-of-mass start alone recovers tilts up to about 40
    degrees since the optimiser's step decays more slowly (relaxation 0.8; at 0.5 it missed 25); the
    candidate starts still reach 50 degrees, where it ends 5.7 mm off."""
    native, atlas, truth, pts = _tilted_case(13, 50.0)
    robust = reg.register(native, atlas)
    assert robust.extra["start"] != "centre of mass" and robust.extra["candidates"] >= 27
    assert _mean_error_mm(robust.transform, truth, pts) <= 1.5  # 0.96 mm measured
    plain = reg.register(native, atlas, params=reg.RegistrationParams(init="moments"))
    assert _mean_error_mm(plain.transform, truth, pts) > 3.0, "the control: one start is not enough here"


def test_robust_start_is_deterministic():
    native, atlas, _, _ = _tilted_case(14, 20.0)
    a, b = reg.register(native, atlas), reg.register(native, atlas)
    assert a.transform.GetParameters() == b.transform.GetParameters() and a.extra == b.extra


def test_coregistration_reaches_the_optimum_on_a_generated_exam(data_dir, tmp_path):
    """Co-registration of a held-out corpus exam lands within 0.6 mm of its exact truth for every
    modality. With the step relaxed by 0.5 per reversal (the earlier default) the T1 stopped 1.0 mm
    off, short of the optimum of its own metric; this catches a return to a too-hasty optimiser."""
    from gliocascade import native_corpus as nc
    from gliocascade.preprocess import registration_copy

    source = "brats_space/TCGA-FG-6692"
    images, stripped = nc.load_source(data_dir, source)
    exam = nc.make_exam(nc.exam_spec(13, source), images, tmp_path, 4.0, skull_stripped=stripped)
    fixed = registration_copy(sitk.ReadImage(str(exam.paths["t1ce"]), sitk.sitkFloat32))
    brain = nc.physical_points(sitk.ReadImage(str(exam.paths["t1ce"])) > 0)
    for mod in ("t1", "t2", "flair"):
        moving = registration_copy(sitk.ReadImage(str(exam.paths[mod]), sitk.sitkFloat32))
        found = reg.register(fixed, moving)
        mean, _ = nc.target_registration_error(found.transform, exam.coreg_truth(mod), brain, max_points=2000)
        assert mean <= 0.6, f"{exam.exam_id} {mod}: {mean:.2f} mm from the exact truth"
