"""Soft Dice loss of Eq. 2 against values worked out by hand."""
from __future__ import annotations

import pytest
import torch

from gliocascade.losses import EPS, cascade_loss, dice_loss, soft_dice


def test_soft_dice_hand_computed():
    # one region, four voxels: S = (1, .5, 0, 0), R = (1, 1, 0, 0)
    # sum S R = 1.5; sum S^2 = 1.25; sum R^2 = 2  ->  2 * 1.5 / (3.25 + eps)
    s = torch.tensor([1.0, 0.5, 0.0, 0.0]).reshape(1, 1, 4, 1, 1)
    r = torch.tensor([1.0, 1.0, 0.0, 0.0]).reshape(1, 1, 4, 1, 1)
    assert float(soft_dice(s, r)[0]) == pytest.approx(3.0 / (3.25 + EPS), abs=1e-7)
    assert float(soft_dice(s, r)[0]) == pytest.approx(0.9230740, abs=1e-6)


def test_squared_denominator_not_plain_sum():
    # S = (.5, .5), R = (1, 0): squared: 2*.5 / (.5 + 1) = 2/3; a plain-sum Dice would give 1/2
    s = torch.tensor([0.5, 0.5]).reshape(1, 1, 2, 1, 1)
    r = torch.tensor([1.0, 0.0]).reshape(1, 1, 2, 1, 1)
    assert float(soft_dice(s, r, eps=0.0)[0]) == pytest.approx(2 / 3)


def test_regions_summed_and_batch_pooled():
    # region 0 perfect (loss 0), region 1 disjoint (loss 1), region 2: S=.5 everywhere on 2 voxels, R one of them
    s = torch.zeros(2, 3, 1, 1, 1)
    r = torch.zeros(2, 3, 1, 1, 1)
    s[:, 0], r[:, 0] = 1, 1
    s[0, 1], r[1, 1] = 1, 1
    s[:, 2], r[0, 2] = 0.5, 1
    # region 2 over the batch: sum SR = .5, sum S^2 = .5, sum R^2 = 1 -> dice = 1/1.5
    # region 0: sum SR = 2, sum S^2 + sum R^2 = 4 -> dice = 4 / (4 + eps)
    expected = (1 - 4 / (4 + EPS)) + 1.0 + (1 - 1.0 / (1.5 + EPS))
    assert float(dice_loss(s, r)) == pytest.approx(expected, abs=1e-6)


def test_cascade_loss_sums_the_outputs_present():
    torch.manual_seed(0)
    r = (torch.rand(1, 3, 4, 4, 4) > 0.5).float()
    outs = {k: torch.rand(1, 3, 4, 4, 4) for k in ("stage1", "stage2", "stage2_aux")}
    total, parts = cascade_loss(outs, r)
    assert set(parts) == {"stage1", "stage2", "stage2_aux"}
    assert float(total) == pytest.approx(sum(float(dice_loss(v, r)) for v in outs.values()), rel=1e-6)
    total2, parts2 = cascade_loss({k: outs[k] for k in ("stage1", "stage2")}, r)
    assert float(total2) == pytest.approx(parts["stage1"] + parts["stage2"], rel=1e-6)
    assert "stage2_aux" not in parts2


def test_perfect_prediction_zero_loss_and_gradient_points_to_target():
    r = torch.zeros(1, 3, 4, 4, 4)
    r[:, :, :2] = 1
    assert float(dice_loss(r.clone(), r)) == pytest.approx(0.0, abs=1e-5)
    s = torch.full_like(r, 0.5, requires_grad=True)
    dice_loss(s, r).backward()
    assert bool((s.grad[r == 1] < 0).all()) and bool((s.grad[r == 0] > 0).all())
