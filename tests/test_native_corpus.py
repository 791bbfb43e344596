"""The native-exam corpus: deterministic, hard by construction, right storage orders, exact truth,
zero background for stripped sources, measurable bias and noise, and the TRE helper."""
from __future__ import annotations

import json
import math
from dataclasses import replace

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from gliocascade import native_corpus as nc
from gliocascade.io import MODALITIES
from gliocascade.phantom import make_phantom

PHANTOM_SHAPE = (120, 120, 78)  # at 2 mm: the BraTS field of view
COARSEN = 4.0


def _phantom_source(seed: int, with_skull: bool) -> dict[str, sitk.Image]:
    """A phantom on a 2 mm BraTS-sized grid, its voxel noise smoothed away (the corpus adds its own),
    background kept exactly zero."""
    ph = make_phantom(seed, shape=PHANTOM_SHAPE, with_skull=with_skull)
    images = {}
    for mod, arr in ph.images.items():
        img = sitk.GetImageFromArray(np.ascontiguousarray(arr.transpose(2, 1, 0)).astype(np.float32))
        img.SetSpacing((2.0, 2.0, 2.0))
        img.SetOrigin((0.0, -239.0, 0.0))
        smooth = sitk.SmoothingRecursiveGaussian(img, 2.0)
        images[mod] = sitk.Mask(smooth, sitk.Cast(img != 0, sitk.sitkUInt8))
    return images


@pytest.fixture(scope="module")
def stripped_source() -> dict[str, sitk.Image]:
    return _phantom_source(3, with_skull=False)


@pytest.fixture(scope="module")
def skull_source() -> dict[str, sitk.Image]:
    return _phantom_source(4, with_skull=True)


def _clean(spec: nc.ExamSpec) -> nc.ExamSpec:
    return replace(spec, noise=0.0, bias=0.0)


def _with_grids(spec: nc.ExamSpec, kind: str, orders=("PSR", "LAS", "RAS", "LPS")) -> nc.ExamSpec:
    return replace(spec, grids={m: nc.native_grid(kind, o, tilt_deg=14.0) for m, o in zip(MODALITIES, orders)})


def _read(path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def _euler_by_hand(pose: nc.Pose, centre) -> tuple[np.ndarray, np.ndarray]:
    """(R, t) of x -> R (x - c) + c + t with ITK's Euler3D order R = Rz Rx Ry, written out here."""
    ax, ay, az = (math.radians(a) for a in pose.angles_deg)
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    r = rz @ rx @ ry
    c = np.asarray(centre)
    return r, c + np.asarray(pose.shift_mm) - r @ c


# ---------------------------------------------------------------------------------------------
# Grids and storage orders

def test_catalogue_covers_a_whole_head_and_slices_follow_thickness():
    cat = nc.grid_catalogue()
    assert len(cat) == len(nc.GRID_KINDS) * 4
    thicknesses = set()
    for g in cat:
        ext = g.extent_mm
        if g.slice_axis is None:  # 3D: the two largest extents are the "in-plane" ones
            in_plane, across = sorted(ext)[1:], min(ext)
        else:
            in_plane, across = [ext[a] for a in range(3) if a != g.slice_axis], ext[g.slice_axis]
        assert all(225.0 <= e <= 260.0 for e in in_plane), g.name
        assert across >= 150.0, g.name
        if g.slice_axis is not None:
            assert g.size[g.slice_axis] == round(across / g.slice_thickness)
        thicknesses.add(g.slice_thickness)
        assert f"{g.slice_thickness:g} mm" in g.name and g.name.endswith(g.order)
    assert {5.0, 5.5, 2.5, 1.0} <= thicknesses


def test_coarsen_keeps_field_of_view_and_slices():
    g = nc.native_grid("axial_512_5mm", "PSR")
    c = g.coarsened(4.0)
    assert c.size == (128, 40, 128) and np.allclose(c.extent_mm, g.extent_mm)
    assert c.slice_thickness == 5.0 and c.direction == g.direction
    s = nc.native_grid("sagittal_3d_1mm", "LPS").coarsened(4.0)
    assert s.size == (48, 64, 64)  # a 3D grid shrinks along every axis


def _ras_affine(g: nc.GridSpec) -> np.ndarray:
    aff = np.eye(4)
    aff[:3, :3] = np.diag([-1.0, -1.0, 1.0]) @ np.array(g.direction).reshape(3, 3) @ np.diag(g.spacing)
    return aff


def test_storage_orders_are_what_the_names_say():
    for g in nc.grid_catalogue():
        assert "".join(nib.aff2axcodes(_ras_affine(g))) == g.order == g.name.split()[-1]
    psr = np.array(nc.native_grid("axial_256_2.5mm", "PSR").direction).reshape(3, 3)
    assert np.allclose(psr, [[0, 0, -1], [1, 0, 0], [0, 1, 0]])  # columns: posterior, superior, right
    # In PSR an axial grid has its thick axis second (pointing superior).
    assert nc.native_grid("axial_256_2.5mm", "PSR").slice_axis == 1


def test_oblique_grid_is_tilted_by_its_angle():
    for tilt in (10.0, 17.5, 20.0):
        g = nc.native_grid("oblique_320_3mm", "LAS", tilt_deg=tilt)
        normal = np.array(g.direction).reshape(3, 3)[:, g.slice_axis]
        assert math.degrees(math.acos(abs(normal[2]))) == pytest.approx(tilt, abs=1e-6)
        assert f"{tilt:.1f} deg" in g.name


# ---------------------------------------------------------------------------------------------
# Specifications: deterministic, bounded, hard by construction

def test_exam_spec_deterministic_and_bounded():
    assert nc.exam_spec(5, "x") == nc.exam_spec(5, "x")
    assert nc.exam_spec(5, "x").poses != nc.exam_spec(6, "x").poses
    for spec in nc.corpus_specs(range(48), ["a"]):
        for m in MODALITIES:
            assert spec.poses[m].rotation_deg <= nc.MAX_ROTATION_DEG + 1e-4
            assert spec.poses[m].shift_norm_mm <= nc.MAX_SHIFT_MM + 1e-4
            assert max(abs(a) for a in spec.poses[m].angles_deg) <= nc.MAX_ROTATION_DEG + 1e-4
        assert 0.02 <= spec.noise <= 0.05 and 0.15 <= spec.bias <= 0.20


def _hardness(specs):
    t1ce = [(s.poses["t1ce"], s.grids["t1ce"]) for s in specs]
    return {"rotation": sum(p.rotation_deg >= 20.0 for p, _ in t1ce),
            "shift": sum(p.shift_norm_mm >= 30.0 for p, _ in t1ce),
            "thick": sum(5.0 <= g.slice_thickness <= 6.0 for _, g in t1ce),
            **{o: sum(g.order == o for _, g in t1ce) for o in nc.STORAGE_ORDERS}}


def test_corpus_is_hard_overall_and_in_each_half():
    whole = _hardness(nc.corpus_specs(range(24), nc.SOURCE_NAMES))
    assert whole["rotation"] >= 6 and whole["shift"] >= 6 and whole["thick"] >= 6
    assert all(whole[o] >= 3 for o in nc.STORAGE_ORDERS)
    for half in (range(0, 12), range(12, 24)):
        h = _hardness(nc.corpus_specs(half, nc.SOURCE_NAMES))
        assert h["rotation"] >= 3 and h["shift"] >= 3 and h["thick"] >= 3, (half, h)
        assert all(h[o] >= 2 for o in nc.STORAGE_ORDERS), (half, h)
    # Some exams combine the hard properties.
    specs = nc.corpus_specs(range(24), nc.SOURCE_NAMES)
    assert any(s.poses["t1ce"].rotation_deg >= 20 and s.poses["t1ce"].shift_norm_mm >= 30
               and s.grids["t1ce"].slice_thickness >= 5 for s in specs)


def test_sources_round_robin_and_pose_table_is_json():
    specs = nc.corpus_specs(range(12, 18), ["a", "b", "c"])
    assert [s.source for s in specs] == ["a", "b", "c", "a", "b", "c"]
    assert [s.exam_id for s in specs] == [f"corpus{i:03d}" for i in range(12, 18)]
    table = json.loads(json.dumps(nc.pose_table(specs)))
    assert len(table) == 6 and table[0]["seed"] == 12 and table[0]["source"] == "a"
    row = table[2]["modalities"]["t1ce"]
    assert row["grid"] == specs[2].grids["t1ce"].name
    assert row["slice_thickness_mm"] == pytest.approx(specs[2].grids["t1ce"].slice_thickness)
    assert row["rotation_deg"] == pytest.approx(specs[2].poses["t1ce"].rotation_deg, abs=1e-3)
    assert row["shift_mm"] == pytest.approx(list(specs[2].poses["t1ce"].shift_mm), abs=1e-3)


# ---------------------------------------------------------------------------------------------
# Generated exams

def test_same_seed_same_bytes_other_seed_other_bytes(stripped_source, tmp_path):
    spec = nc.exam_spec(9, "phantom")
    a = nc.make_exam(spec, stripped_source, tmp_path / "a", coarsen=8.0, skull_stripped=True)
    b = nc.make_exam(spec, stripped_source, tmp_path / "b", coarsen=8.0, skull_stripped=True)
    c = nc.make_exam(replace(nc.exam_spec(10, "phantom"), seed=9), stripped_source, tmp_path / "c",
                     coarsen=8.0, skull_stripped=True)
    assert sorted(p.name for p in a.paths.values()) == [f"corpus009_{m}.nii.gz" for m in sorted(MODALITIES)]
    for m in MODALITIES:
        assert a.paths[m].read_bytes() == b.paths[m].read_bytes(), m
        assert a.paths[m].read_bytes() != c.paths[m].read_bytes(), m


def test_written_files_have_the_grid_and_storage_order(stripped_source, tmp_path):
    spec = nc.exam_spec(2, "phantom")
    ex = nc.make_exam(spec, stripped_source, tmp_path, coarsen=COARSEN, skull_stripped=True)
    for m in MODALITIES:
        img = nib.load(str(ex.paths[m]))
        assert "".join(nib.aff2axcodes(img.affine)) == spec.grids[m].order
        assert img.shape == ex.grids[m].size
        assert np.allclose(img.header.get_zooms()[:3], ex.grids[m].spacing, atol=1e-4)
        # The head lands near the middle of the field of view (the grid follows the head).
        centre_vox = (np.array(ex.grids[m].size) - 1) / 2.0
        centre_world = np.array(sitk.ReadImage(str(ex.paths[m])).TransformContinuousIndexToPhysicalPoint(centre_vox))
        posed = np.array(ex.source_to_native(m).TransformPoint(ex.centre))
        assert np.linalg.norm(centre_world - posed) <= math.sqrt(3) * nc.MAX_FOV_OFFSET_MM + 1e-6


def test_voxel_values_are_the_source_through_the_truth(stripped_source, tmp_path):
    spec = _clean(nc.exam_spec(6, "phantom"))
    ex = nc.make_exam(spec, stripped_source, tmp_path, coarsen=COARSEN, skull_stripped=True)
    rng = np.random.default_rng(0)
    for m in MODALITIES:
        img = sitk.ReadImage(str(ex.paths[m]))
        arr = sitk.GetArrayFromImage(img)
        idx = np.argwhere(arr > 0)
        checked = 0
        for k, j, i in idx[rng.choice(len(idx), 40, replace=False)]:
            p = img.TransformIndexToPhysicalPoint((int(i), int(j), int(k)))
            want = stripped_source[m].EvaluateAtPhysicalPoint(ex.native_to_source[m].TransformPoint(p), sitk.sitkLinear)
            assert arr[k, j, i] == pytest.approx(want, rel=1e-4, abs=1e-3)
            checked += 1
        assert checked == 40


def _roundtrip_correlation(ex: nc.CorpusExam, source: dict[str, sitk.Image], m: str, skull_stripped: bool,
                           error: sitk.Transform | None = None) -> float:
    """Resample native m back onto the source grid with the inverse truth; correlate with the source
    over the eroded foreground inside the native field of view."""
    back_t = ex.source_to_native(m) if error is None else sitk.CompositeTransform([ex.source_to_native(m), error])
    native = sitk.ReadImage(str(ex.paths[m]))
    back = sitk.GetArrayFromImage(sitk.Resample(native, source[m], back_t, sitk.sitkLinear, -1.0, sitk.sitkFloat32))
    cover = sitk.GetArrayFromImage(sitk.Resample(native * 0 + 1, source[m], back_t, sitk.sitkNearestNeighbor, 0.0))
    fg = sitk.BinaryErode(sitk.GetImageFromArray(nc.foreground(source[m], skull_stripped).astype(np.uint8)), [3, 3, 3])
    inside = (sitk.GetArrayFromImage(fg) > 0) & (cover > 0) & (back >= 0)
    assert inside.sum() > 1000
    return _corr(back[inside], sitk.GetArrayFromImage(source[m])[inside])


def test_truth_round_trip_matches_source(stripped_source, tmp_path):
    spec = _with_grids(_clean(nc.exam_spec(0, "phantom")), "axial_256_2.5mm")
    ex = nc.make_exam(spec, stripped_source, tmp_path, coarsen=2.0, skull_stripped=True)
    shift = sitk.TranslationTransform(3, (3.0, 0.0, 0.0))
    for m in MODALITIES:
        good = _roundtrip_correlation(ex, stripped_source, m, True)
        bad = _roundtrip_correlation(ex, stripped_source, m, True, error=shift)
        assert good > 0.95 and good > bad + 0.02, (m, good, bad)


def test_coreg_truth_is_the_hand_composition(stripped_source, tmp_path):
    spec = _clean(nc.exam_spec(3, "phantom"))
    ex = nc.make_exam(spec, stripped_source, tmp_path, coarsen=8.0, skull_stripped=True)
    assert ex.coreg_exact
    r_f, t_f = _euler_by_hand(spec.poses["t1ce"], ex.centre)
    for m in MODALITIES:
        r_m, t_m = _euler_by_hand(spec.poses[m], ex.centre)
        for p in ([100.0, -120.0, 70.0], [80.0, -60.0, 20.0], [140.0, -150.0, 110.0]):
            source_point = r_f.T @ (np.asarray(p) - t_f)        # native t1ce -> source
            want = r_m @ source_point + t_m                     # source -> native m
            assert np.allclose(ex.coreg_truth(m).TransformPoint(p), want, atol=1e-6), m
            assert np.allclose(ex.native_to_source["t1ce"].TransformPoint(p), source_point, atol=1e-6)
    r0 = sitk.Euler3DTransform((120.0, -120.0, 77.0), 0.05, -0.03, 0.08, (4.0, -2.0, 6.0))
    x = (90.0, -100.0, 60.0)
    assert np.allclose(ex.atlas_truth(r0).TransformPoint(x), r_f @ np.asarray(r0.TransformPoint(x)) + t_f, atol=1e-6)


def test_coreg_and_atlas_truth_align_images(stripped_source, tmp_path):
    spec = _with_grids(_clean(nc.exam_spec(7, "phantom")), "axial_256_2.5mm", ("LAS", "PSR", "RAS", "LPS"))
    ex = nc.make_exam(spec, stripped_source, tmp_path, coarsen=2.0, skull_stripped=True)
    fixed = sitk.ReadImage(str(ex.paths["t1ce"]))
    for m in ("t1", "t2", "flair"):
        moving = sitk.ReadImage(str(ex.paths[m]))
        want = sitk.GetArrayFromImage(
            sitk.Resample(stripped_source[m], fixed, ex.native_to_source["t1ce"], sitk.sitkLinear))
        got = sitk.GetArrayFromImage(sitk.Resample(moving, fixed, ex.coreg_truth(m), sitk.sitkLinear))
        wrong_order = sitk.CompositeTransform([ex.native_to_source["t1ce"], ex.source_to_native(m)])
        wrong = sitk.GetArrayFromImage(sitk.Resample(moving, fixed, wrong_order, sitk.sitkLinear))
        roi = want > 0.25 * want.max()
        assert _corr(got[roi], want[roi]) > 0.95 > _corr(wrong[roi], want[roi]), m
    # Atlas truth: an "atlas view" of the source through R0 is recovered from the native T1Gd.
    r0 = sitk.Euler3DTransform(ex.centre, 0.08, 0.0, -0.05, (5.0, 3.0, -2.0))
    grid = stripped_source["t1ce"]
    atlas_view = sitk.GetArrayFromImage(sitk.Resample(grid, grid, r0, sitk.sitkLinear))
    got = sitk.GetArrayFromImage(sitk.Resample(fixed, grid, ex.atlas_truth(r0), sitk.sitkLinear))
    eroded = sitk.BinaryErode(sitk.GetImageFromArray((atlas_view > 0).astype(np.uint8)), [2] * 3)
    roi = sitk.GetArrayFromImage(eroded) > 0
    assert _corr(got[roi], atlas_view[roi]) > 0.95


def test_stripped_background_stays_exactly_zero(stripped_source, tmp_path):
    spec = nc.exam_spec(4, "phantom")
    noisy = nc.make_exam(spec, stripped_source, tmp_path / "noisy", coarsen=COARSEN, skull_stripped=True)
    clean = nc.make_exam(_clean(spec), stripped_source, tmp_path / "clean", coarsen=COARSEN, skull_stripped=True)
    for m in MODALITIES:
        a, b = _read(noisy.paths[m]), _read(clean.paths[m])
        assert np.array_equal(a == 0, b == 0), m
        assert 0.5 < (a == 0).mean() < 0.98 and not np.array_equal(a, b)


def test_skull_source_gets_noise_everywhere(skull_source, tmp_path):
    ex = nc.make_exam(nc.exam_spec(5, "phantom-skull"), skull_source, tmp_path, coarsen=COARSEN, skull_stripped=False)
    for m in MODALITIES:
        assert (_read(ex.paths[m]) == 0).mean() < 1e-3, m


def test_bias_field_and_noise_are_measurable(stripped_source, tmp_path):
    spec = replace(nc.exam_spec(8, "phantom"), noise=0.04, bias=0.2)
    spec = _with_grids(spec, "axial_256_2.5mm")
    variants = {"clean": _clean(spec), "bias": replace(spec, noise=0.0), "noise": replace(spec, bias=0.0)}
    exams = {k: nc.make_exam(v, stripped_source, tmp_path / k, coarsen=COARSEN, skull_stripped=True)
             for k, v in variants.items()}
    for m in MODALITIES:
        clean, biased, noisy = (_read(exams[k].paths[m]) for k in ("clean", "bias", "noise"))
        roi = clean > 0.5 * np.median(clean[clean > 0])
        ratio = biased[roi] / clean[roi]
        assert 0.5 <= ratio.min() and ratio.max() <= 1.5
        assert np.percentile(ratio, 99) - np.percentile(ratio, 1) > 0.1, m   # a real field...
        full = np.ones_like(clean)
        full[roi] = ratio
        steps = np.abs(np.diff(full, axis=2))[roi[:, :, 1:] & roi[:, :, :-1]]
        assert np.median(steps) < 0.01, m                                     # ...and a smooth one
        src = sitk.GetArrayViewFromImage(stripped_source[m])
        sigma = 0.04 * float(np.median(src[src != 0]))
        assert np.std(noisy[roi] - clean[roi]) == pytest.approx(sigma, rel=0.15), m


# ---------------------------------------------------------------------------------------------
# Target registration error

def test_tre_zero_for_identical_and_known_for_shift_and_rotation():
    pts = np.random.default_rng(1).uniform(-80, 80, size=(20000, 3))
    ident = sitk.Euler3DTransform((5.0, 2.0, 1.0), 0.1, 0.2, 0.3, (1.0, 2.0, 3.0))
    assert nc.target_registration_error(ident, sitk.Euler3DTransform(ident), pts) == (0.0, 0.0)
    identity = sitk.Transform(3, sitk.sitkIdentity)
    mean, mx = nc.target_registration_error(sitk.TranslationTransform(3, (0.0, 3.0, 0.0)), identity, pts)
    assert mean == pytest.approx(3.0, abs=1e-9) and mx == pytest.approx(3.0, abs=1e-9)
    # A rotation by theta about z moves points at radius r in the xy plane by 2 r sin(theta / 2).
    phi = np.linspace(0, 2 * np.pi, 360, endpoint=False)
    circle = np.stack([50 * np.cos(phi), 50 * np.sin(phi), np.zeros_like(phi)], 1)
    rot = sitk.VersorTransform((0.0, 0.0, 1.0), math.radians(10))
    mean, mx = nc.target_registration_error(rot, sitk.Transform(3, sitk.sitkIdentity), circle)
    assert mean == pytest.approx(2 * 50 * math.sin(math.radians(5)), abs=1e-9)
    assert mx == pytest.approx(mean, abs=1e-9)


def test_tre_subsamples_deterministically():
    pts = np.random.default_rng(3).uniform(-80, 80, size=(50000, 3))
    a = sitk.Euler3DTransform((0.0, 0.0, 0.0), 0.02, 0.0, 0.0)
    b = sitk.Transform(3, sitk.sitkIdentity)
    first = nc.target_registration_error(a, b, pts, max_points=1000)
    assert first == nc.target_registration_error(a, b, pts, max_points=1000)
    assert first != nc.target_registration_error(a, b, pts[:1000] * 0.5, max_points=1000)


def test_physical_points_of_a_mask():
    mask = sitk.Image(10, 10, 10, sitk.sitkUInt8)
    mask.SetSpacing((2.0, 2.0, 3.0))
    mask.SetOrigin((10.0, -5.0, 0.0))
    mask.SetDirection(nc.order_direction("RAS").flatten().tolist())
    mask[3, 4, 5] = 1
    mask[0, 0, 0] = 1
    pts = nc.physical_points(mask)
    assert pts.shape == (2, 3)
    want = {tuple(np.round(mask.TransformIndexToPhysicalPoint(i), 6)) for i in ((3, 4, 5), (0, 0, 0))}
    assert {tuple(np.round(p, 6)) for p in pts} == want


# ---------------------------------------------------------------------------------------------
# Real sources

@pytest.fixture(scope="module")
def real_sources(data_dir):
    return nc.load_sources(data_dir)


def test_real_sources_load_with_their_skull_status(real_sources):
    assert set(real_sources) == set(nc.SOURCE_NAMES)
    for name, (images, stripped) in real_sources.items():
        assert set(images) == set(MODALITIES)
        assert stripped == name.startswith("brats_space/")
        zero = (sitk.GetArrayViewFromImage(images["t1ce"]) == 0).mean()
        assert (zero > 0.7) if stripped else (zero < 0.2), name
    brats = real_sources["brats_space/BraTS-GLI-00001-000"][0]
    assert len({(im.GetSize(), im.GetOrigin()) for im in brats.values()}) == 1
    raw = real_sources["native/TCGA-FG-6692"][0]
    assert len({im.GetSize() for im in raw.values()}) > 1


def test_real_raw_exam_coreg_truth_is_relative_to_source_alignment(real_sources, tmp_path):
    images, stripped = real_sources["native/TCGA-FG-6692"]
    ex = nc.make_exam(nc.exam_spec(14, "native/TCGA-FG-6692"), images, tmp_path, coarsen=COARSEN,
                      skull_stripped=stripped)
    assert not ex.coreg_exact and not ex.skull_stripped
    with pytest.raises(ValueError, match="relative to the source alignment"):
        ex.coreg_truth("t2")
    p = (10.0, -20.0, 30.0)
    via = ex.source_to_native("t2").TransformPoint(ex.native_to_source["t1ce"].TransformPoint(p))
    assert np.allclose(ex.coreg_truth("t2", relative_to_source_alignment=True).TransformPoint(p), via)
    for m in MODALITIES:
        assert (_read(ex.paths[m]) == 0).mean() < 1e-3  # with skull: noise in the air too


def test_real_stripped_exam_truth_and_zero_background(real_sources, tmp_path):
    name = "brats_space/BraTS-GLI-00001-000"
    images, stripped = real_sources[name]
    spec = _with_grids(nc.exam_spec(13, name), "axial_256_2.5mm", ("RAS", "PSR", "LAS", "LPS"))
    clean = nc.make_exam(_clean(spec), images, tmp_path / "clean", coarsen=2.0, skull_stripped=stripped)
    assert clean.coreg_exact
    for m in MODALITIES:
        assert _roundtrip_correlation(clean, images, m, stripped) > 0.95, m
    noisy = nc.make_exam(spec, images, tmp_path / "noisy", coarsen=COARSEN * 2, skull_stripped=stripped)
    coarse_clean = nc.make_exam(_clean(spec), images, tmp_path / "cc", coarsen=COARSEN * 2, skull_stripped=stripped)
    for m in MODALITIES:
        a, b = _read(noisy.paths[m]), _read(coarse_clean.paths[m])
        assert np.array_equal(a == 0, b == 0) and (a == 0).mean() > 0.5 and not np.array_equal(a, b)
