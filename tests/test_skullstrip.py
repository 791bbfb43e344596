"""Skull-stripping: refinement of the registered atlas mask, plausibility, plug-in errors."""
from __future__ import annotations

import numpy as np
import pytest

from gliocascade.errors import InputError
from gliocascade.skullstrip import check_plausible, largest_component, plugin_mask, refine_atlas_mask


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
