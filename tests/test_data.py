"""Normalisation and augmentation: z-score over the brain, crops inside bounds, flips, intensity statistics."""
from __future__ import annotations

import numpy as np
import pytest

from gliocascade.data import Volume, augment, intensity_augment, random_crop, random_flip, zscore


def _brain(shape=(10, 12, 8)):
    rng = np.random.default_rng(0)
    img = rng.normal(100, 20, size=(4, *shape)).astype(np.float32) + np.arange(4)[:, None, None, None] * 50
    img[:, :2] = 0  # background slab
    return img


def test_zscore_over_nonzero_voxels():
    img = _brain()
    img[2, 5, 5, 5] = 0  # zero in one modality only: outside the brain
    z = zscore(img)
    brain = np.all(img != 0, axis=0)
    assert z.dtype == np.float32
    assert not brain[5, 5, 5]
    assert np.all(z[:, ~brain] == 0)
    for c in range(4):
        assert z[c][brain].mean() == pytest.approx(0, abs=1e-5)
        assert z[c][brain].std() == pytest.approx(1, abs=1e-4)
        ref = (img[c][brain] - img[c][brain].mean()) / img[c][brain].std()
        np.testing.assert_allclose(z[c][brain], ref, rtol=1e-4, atol=1e-5)


def test_zscore_over_given_mask():
    img = _brain()
    mask = np.zeros(img.shape[1:], bool)
    mask[4:8, 4:8, 2:6] = True
    z = zscore(img, mask.astype(np.uint8))
    assert np.all(z[:, ~mask] == 0)
    assert z[1][mask].mean() == pytest.approx(0, abs=1e-5) and z[1][mask].std() == pytest.approx(1, abs=1e-4)


def _indexed(shape):
    idx = np.arange(np.prod(shape), dtype=np.float32).reshape(shape) + 1
    return np.stack([idx, -idx, idx * 2, idx * 3]), (np.stack([idx, idx, idx]) % 7 == 0).astype(np.uint8)


def test_crop_is_a_window_inside_bounds():
    img, reg = _indexed((20, 18, 16))
    rng = np.random.default_rng(3)
    starts = set()
    for _ in range(30):
        ci, cr = random_crop(img, reg, (8, 8, 8), rng)
        assert ci.shape == (4, 8, 8, 8) and cr.shape == (3, 8, 8, 8)
        first = int(ci[0, 0, 0, 0]) - 1
        s = np.unravel_index(first, (20, 18, 16))
        assert all(a + 8 <= n for a, n in zip(s, (20, 18, 16)))
        np.testing.assert_array_equal(ci, img[:, s[0]:s[0] + 8, s[1]:s[1] + 8, s[2]:s[2] + 8])
        np.testing.assert_array_equal(cr, reg[:, s[0]:s[0] + 8, s[1]:s[1] + 8, s[2]:s[2] + 8])
        starts.add(tuple(int(v) for v in s))
    assert len(starts) > 10  # random, not fixed


def test_crop_larger_than_volume_pads():
    img, reg = _indexed((6, 10, 5))
    ci, cr = random_crop(img, reg, (8, 8, 8), np.random.default_rng(0))
    assert ci.shape == (4, 8, 8, 8) and cr.shape == (3, 8, 8, 8)
    assert np.count_nonzero(ci[0]) == 6 * 8 * 5  # every voxel of the short axes kept, padding is zero
    np.testing.assert_array_equal(cr[0], ((ci[0] % 7 == 0) & (ci[0] != 0)).astype(np.uint8))  # labels follow


def test_foreground_crop_contains_tumour():
    img = np.ones((4, 40, 40, 40), np.float32)
    reg = np.zeros((3, 40, 40, 40), np.uint8)
    reg[:, 35:38, 2:4, 30:32] = 1
    rng = np.random.default_rng(0)
    hits = [random_crop(img, reg, (8, 8, 8), rng, fg_prob=1.0)[1].any() for _ in range(10)]
    assert all(hits)


def test_flip_keeps_image_and_labels_together():
    img, reg = _indexed((6, 5, 4))
    reg = np.stack([img[0] % 3 == 0] * 3).astype(np.uint8)
    rng = np.random.default_rng(1)
    flipped_axes = set()
    for _ in range(20):
        fi, fr = random_flip(img, reg, rng)
        np.testing.assert_array_equal(fr[0], (fi[0] % 3 == 0).astype(np.uint8))
        for ax in (1, 2, 3):
            if not np.array_equal(fi, img) and np.array_equal(np.flip(fi, ax)[0, 0, 0, 0], img[0, 0, 0, 0]):
                flipped_axes.add(ax)
    assert flipped_axes  # flips happen


def test_flip_probability_half_per_axis():
    img = np.arange(8, dtype=np.float32).reshape(1, 2, 2, 2)
    rng = np.random.default_rng(5)
    counts = np.zeros(3)
    n = 400
    for _ in range(n):
        f, _ = random_flip(img, img.astype(np.uint8), rng)
        counts += [f[0, 0, 0, 0] in (4, 5, 6, 7), f[0, 0, 0, 0] in (2, 3, 6, 7), f[0, 0, 0, 0] % 2 == 1]
    assert np.all(np.abs(counts / n - 0.5) < 0.1)


def test_intensity_shift_and_scale_ranges():
    rng = np.random.default_rng(0)
    base = zscore(_brain((8, 8, 8)))
    brain = np.any(base != 0, axis=0)
    scales, shifts = [], []
    for _ in range(200):
        out = intensity_augment(base, rng)
        assert np.all(out[:, ~brain] == 0)
        for c in range(4):
            x, y = base[c][brain], out[c][brain]
            a, b = np.polyfit(x, y, 1)  # y = a x + b exactly
            scales.append(a)
            shifts.append(b / x.std())
    scales, shifts = np.array(scales), np.array(shifts)
    assert scales.min() >= 0.9 - 1e-4 and scales.max() <= 1.1 + 1e-4
    assert np.abs(shifts).max() <= 0.1 + 1e-4
    assert scales.max() - scales.min() > 0.15 and shifts.max() - shifts.min() > 0.15  # spread over the range
    assert abs(np.mean(scales) - 1) < 0.02 and abs(np.mean(shifts)) < 0.02


def test_augment_shapes_and_dtypes():
    img, reg = _indexed((20, 20, 20))
    i, r = augment(Volume("x", img, reg), (16, 16, 16), np.random.default_rng(0))
    assert i.shape == (4, 16, 16, 16) and i.dtype == np.float32 and r.dtype == np.uint8
    assert i.flags["C_CONTIGUOUS"] and r.flags["C_CONTIGUOUS"]
