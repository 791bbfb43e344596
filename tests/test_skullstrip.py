"""Skull-stripping: refinement of the registered atlas mask, plausibility, plug-in errors."""
from __future__ import annotations

import numpy as np
import pytest

from gliocascade.errors import InputError
from gliocascade.skullstrip import _refine, check_plausible, largest_component, plugin_mask, refine_atlas_mask


def _ball_mask(shape, centre, radius):
    grid = np.indices(shape).astype(float)
    return ((grid - np.asarray(centre, float)[:, None, None, None]) ** 2).sum(0) <= radius ** 2


def test_refine_drops_dark_rim_and_cuts_to_field_of_view():
    shape = (60, 60, 60)
    brain = _ball_mask(shape, (30, 30, 30), 15)
    atlas = _ball_mask(shape, (30, 30, 30), 18)          # atlas mask 3 voxels too large
    image = np.where(brain, 500.0, 20.0).astype(np.float32)  # dark bone/air around the brain
    fov = np.ones(shape, dtype=bool)
    fov[:, :, 40:] = False                                  # the exam stops at slice 40
    refined = refine_atlas_mask(atlas, {"t1ce": image, "t2": image * 2}, fov)
    assert not refined[:, :, 40:].any()
    truth = brain & fov
    dice = lambda a, b: 2 * (a & b).sum() / (a.sum() + b.sum())
    assert dice(refined, truth) > dice(atlas & fov, truth)
    assert dice(refined, truth) > 0.95


def test_refine_keeps_rim_bright_in_one_modality():
    """CSF is dark in T1 but bright in T2: the rim is kept unless every modality is dark."""
    shape = (40, 40, 40)
    atlas = _ball_mask(shape, (20, 20, 20), 14)
    t1 = np.where(_ball_mask(shape, (20, 20, 20), 11), 500.0, 20.0).astype(np.float32)
    t2 = np.where(atlas, 900.0, 20.0).astype(np.float32)
    refined = refine_atlas_mask(atlas, {"t1": t1, "t2": t2}, np.ones(shape, dtype=bool))
    assert refined.sum() >= 0.97 * atlas.sum()


def test_refine_inside_the_box_equals_the_whole_grid():
    """The refinement works in the mask's bounding box: same voxels as on the whole grid, including
    a hole to fill, a stray island to drop and a mask that touches the grid's edge."""
    shape = (70, 64, 50)
    rng = np.random.default_rng(3)
    atlas = _ball_mask(shape, (35, 30, 25), 17) | _ball_mask(shape, (35, 60, 25), 6)  # touches the y edge
    atlas[35, 30, 20:30] = False                                                     # a hole
    atlas[5:8, 5:8, 5:8] = True                                                      # an island
    image = np.where(_ball_mask(shape, (35, 30, 25), 15), 500.0, 20.0) + rng.normal(0, 30, shape)
    fov = np.ones(shape, dtype=bool)
    fov[:, :, 44:] = False
    images = {"t1ce": image.astype(np.float32), "t2": (2 * image).astype(np.float32)}
    boxed = refine_atlas_mask(atlas, images, fov)
    whole = _refine(atlas & fov, images, fov, 4, 0.15)
    assert boxed.shape == shape and boxed.any()
    assert np.array_equal(boxed, whole)


def test_largest_component():
    m = np.zeros((20, 20, 20), dtype=bool)
    m[2:10, 2:10, 2:10] = True
    m[15:17, 15:17, 15:17] = True
    out = largest_component(m)
    assert out.sum() == 8 ** 3 and not out[16, 16, 16]


def test_implausible_volume_refused():
    check_plausible(np.ones((120, 120, 100), dtype=bool), "x.nii.gz")   # 1440 ml
    with pytest.raises(InputError, match="implausible"):
        check_plausible(np.ones((50, 50, 50), dtype=bool), "x.nii.gz")  # 125 ml


def test_plugins_without_weights_give_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HD_BET_PARAMS", str(tmp_path / "none"))
    monkeypatch.setenv("SYNTHSTRIP_MODEL", str(tmp_path / "none.pt"))
    img = np.zeros((240, 240, 155), dtype=np.float32)
    with pytest.raises(InputError, match="HD-BET is not installed"):
        plugin_mask("hd-bet", img)
    with pytest.raises(InputError, match="SynthStrip is not installed"):
        plugin_mask("synthstrip", img)


# A stand-in for each plug-in program: records its arguments, writes a mask of the voxels above 100
# where the real program would, or fails like a crashing program when FAKE_PLUGIN_FAIL is set.
_FAKE_PLUGIN = '''#!{python}
import json, os, sys
import nibabel as nib
import numpy as np
args = sys.argv[1:]
open(os.environ["FAKE_PLUGIN_LOG"], "w").write(json.dumps(args))
if os.environ.get("FAKE_PLUGIN_FAIL"):
    sys.exit("RuntimeError: weights could not be loaded")
img = nib.load(args[args.index("-i") + 1])
mask = (np.asanyarray(img.dataobj) > 100).astype(np.uint8)
if "-m" in args:   # mri_synthstrip: -m MASK
    out = args[args.index("-m") + 1]
else:              # hd-bet: -o BRAIN writes BRAIN_mask.nii.gz beside it
    out = args[args.index("-o") + 1].replace(".nii.gz", "_mask.nii.gz")
nib.save(nib.Nifti1Image(mask, img.affine), out)
'''


@pytest.fixture
def fake_plugins(tmp_path, monkeypatch):
    import sys

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("hd-bet", "mri_synthstrip"):
        exe = bin_dir / name
        exe.write_text(_FAKE_PLUGIN.replace("{python}", sys.executable))
        exe.chmod(0o755)
    params = tmp_path / "hd-bet_params"
    params.mkdir()
    (params / "0.model").write_bytes(b"x")
    model = tmp_path / "synthstrip.1.pt"
    model.write_bytes(b"x")
    monkeypatch.setenv("PATH", f"{bin_dir}:{__import__('os').environ['PATH']}")
    monkeypatch.setenv("HD_BET_PARAMS", str(params))
    monkeypatch.setenv("SYNTHSTRIP_MODEL", str(model))
    monkeypatch.setenv("FAKE_PLUGIN_LOG", str(tmp_path / "args.json"))
    return tmp_path


@pytest.mark.parametrize("method", ["hd-bet", "synthstrip"])
def test_plugin_mask_is_the_programs_output(fake_plugins, method):
    """The plug-in gets the BraTS-space T1Gd on CPU and its mask file is what comes back."""
    import json

    img = np.zeros((240, 240, 155), dtype=np.float32)
    img[_ball_mask(img.shape, (120, 120, 77), 30)] = 400.0
    mask = plugin_mask(method, img)
    assert mask.shape == img.shape and mask.dtype == bool
    assert np.array_equal(mask, img > 100)
    args = json.loads((fake_plugins / "args.json").read_text())
    if method == "hd-bet":
        assert args[args.index("-device") + 1] == "cpu" and "-o" in args
    else:
        assert args[args.index("--model") + 1] == str(fake_plugins / "synthstrip.1.pt")


def test_failing_plugin_reports_its_last_error_line(fake_plugins, monkeypatch):
    monkeypatch.setenv("FAKE_PLUGIN_FAIL", "1")
    with pytest.raises(InputError, match="HD-BET failed: RuntimeError: weights could not be loaded"):
        plugin_mask("hd-bet", np.zeros((240, 240, 155), dtype=np.float32))
