"""Phantoms: deterministic by seed, varied across seeds, nested labels, BraTS header, MRI-like contrasts."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from gliocascade.io import BRATS_SHAPE, brats_affine
from gliocascade.labels import labels_to_regions
from gliocascade.phantom import make_phantom

SHAPE = (48, 48, 40)


def _files(folder):
    return sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file())


def test_same_seed_gives_identical_bytes(cli, tmp_path):
    for name in ("a", "b"):
        res = cli("phantom", "--out", tmp_path / name, "--n", "2", "--seed", "7", "--shape", *map(str, SHAPE))
        assert res.exit_code == 0, res.output
    files = _files(tmp_path / "a")
    assert len(files) == 10 and files == _files(tmp_path / "b")
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f


def test_seeds_vary_position_size_and_shape():
    phantoms = [make_phantom(s, SHAPE) for s in range(4)]
    centroids = [np.argwhere(p.labels > 0).mean(axis=0) for p in phantoms]
    volumes = [int(np.count_nonzero(p.labels)) for p in phantoms]
    for i in range(4):
        for j in range(i + 1, 4):
            assert np.linalg.norm(centroids[i] - centroids[j]) > 1.0 or abs(volumes[i] - volumes[j]) > 50
            assert not np.array_equal(phantoms[i].labels, phantoms[j].labels)
    assert max(volumes) > 1.3 * min(volumes)
    assert not np.array_equal(phantoms[0].images["t1"], phantoms[1].images["t1"])


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_labels_are_nested_like_a_glioma(seed):
    """ET ⊂ TC ⊂ WT, all three present; the enhancing rim surrounds the necrotic core."""
    labels = make_phantom(seed, SHAPE).labels
    assert set(np.unique(labels)) == {0, 1, 2, 4}
    wt, tc, et = labels_to_regions(labels)
    assert np.all(tc <= wt) and np.all(et <= tc)
    assert et.sum() > 0 and (tc & ~et).sum() > 0 and (wt & ~tc).sum() > 0
    # Core voxels touch only core or rim; oedema lies outside the rim (so ET voxels rarely touch background).
    core = labels == 1
    touching = ndimage.binary_dilation(core) & ~core
    assert np.isin(labels[touching], (1, 4)).mean() > 0.9
    rim_edge = ndimage.binary_dilation(et) & ~tc
    assert (labels[rim_edge] == 2).mean() > 0.5


def test_brats_header_on_disk(cli, tmp_path):
    res = cli("phantom", "--out", tmp_path, "--n", "1", "--seed", "3", "--shape", *map(str, SHAPE))
    assert res.exit_code == 0, res.output
    for mod in ("t1", "t1ce", "t2", "flair", "seg"):
        img = nib.load(str(tmp_path / "phantom003" / f"phantom003_{mod}.nii.gz"))
        assert img.shape == SHAPE
        assert np.array_equal(img.affine, brats_affine())
        assert nib.aff2axcodes(img.affine) == ("L", "P", "S")
        assert int(img.header["qform_code"]) == 1 and int(img.header["sform_code"]) == 1
        assert np.allclose(img.get_qform(), brats_affine()) and np.allclose(img.get_sform(), brats_affine())
        assert img.header.get_zooms() == (1.0, 1.0, 1.0)
    seg = nib.load(str(tmp_path / "phantom003" / "phantom003_seg.nii.gz"))
    assert seg.get_data_dtype() == np.uint8


def test_default_shape_is_the_brats_grid(cli, tmp_path, monkeypatch):
    """Without --shape the command asks for 240x240x155 (recorded, then built small to stay fast)."""
    import gliocascade.phantom as ph

    assert BRATS_SHAPE == (240, 240, 155)
    asked = []
    real = ph.make_phantom

    def record(seed, shape, with_skull=False, case_id=None):
        asked.append(tuple(shape))
        return real(seed, (24, 24, 20), with_skull, case_id)

    monkeypatch.setattr(ph, "make_phantom", record)
    assert cli("phantom", "--out", tmp_path, "--n", "1").exit_code == 0
    assert asked == [BRATS_SHAPE]


def test_modalities_have_mri_like_contrasts():
    p = make_phantom(1, SHAPE)
    lab = p.labels
    brain = p.images["t1"] > 0
    wm_like = brain & (lab == 0)

    def mean(mod, mask):
        return float(p.images[mod][mask].mean())

    rim = lab == 4
    # Gadolinium: the rim enhances on T1Gd, not on T1.
    assert mean("t1ce", rim) > 1.5 * mean("t1", rim)
    # Oedema: bright on T2 and FLAIR relative to normal tissue, dark-ish on T1.
    oedema = lab == 2
    assert mean("t2", oedema) > 1.2 * mean("t2", wm_like)
    assert mean("flair", oedema) > 1.2 * mean("flair", wm_like)
    assert mean("t1", oedema) < mean("t1", wm_like)
    # The four images differ (not one image scaled).
    flat = np.stack([p.images[m][brain] for m in ("t1", "t1ce", "t2", "flair")])
    corr = np.corrcoef(flat)
    assert corr[0, 2] < 0.5  # T1 and T2 contrasts oppose


def test_noise_and_bias_field_are_present():
    p = make_phantom(2, SHAPE)
    img, lab = p.images["t1"], p.labels
    normal = (img > 0) & (lab == 0)
    # Within one tissue intensities spread (noise), and the left and right halves differ (bias).
    assert img[normal].std() > 0.03 * img[normal].mean()
    half = SHAPE[0] // 2
    left = img[:half][normal[:half]].mean()
    right = img[half:][normal[half:]].mean()
    assert abs(left - right) > 0.01 * img[normal].mean()


def test_skull_stripped_by_default_and_skull_on_request():
    bare = make_phantom(4, SHAPE)
    skull = make_phantom(4, SHAPE, with_skull=True)
    assert np.array_equal(bare.labels, skull.labels)
    inside = bare.images["t1"] > 0
    assert (skull.images["t1"] > 0).sum() > 1.2 * inside.sum()
    # The scalp is outside the brain and bright on T1.
    extra = (skull.images["t1"] > 0) & ~inside
    assert skull.images["t1"][extra].max() > np.percentile(bare.images["t1"][inside], 90)


def test_keep_existing_writes_only_missing_cases(tmp_path):
    """An interrupted demo resumes: finished cases (seg present) stay, unfinished ones are written."""
    from gliocascade.phantom import write_phantoms

    shape = (24, 24, 16)
    first = write_phantoms(tmp_path, n=2, seed=5, shape=shape, prefix="p", digits=4)
    assert [f.name for f in first] == ["p0005", "p0006"]
    (first[1] / "p0006_seg.nii.gz").unlink()  # case 2 was cut short before its last file
    stamp = (first[0] / "p0005_t1.nii.gz").stat().st_mtime_ns
    again = write_phantoms(tmp_path, n=2, seed=5, shape=shape, prefix="p", digits=4, keep_existing=True)
    assert again == first
    assert (first[0] / "p0005_t1.nii.gz").stat().st_mtime_ns == stamp
    assert (first[1] / "p0006_seg.nii.gz").is_file()
    write_phantoms(tmp_path, n=1, seed=5, shape=shape, prefix="p", digits=4)  # default: rewrite
    assert (first[0] / "p0005_t1.nii.gz").stat().st_mtime_ns != stamp
