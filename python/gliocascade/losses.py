"""The training loss of Jiang et al.: soft Dice (Eq. 2, squared denominators) per region, summed.

The network outputs the three overlapping regions (WT, TC, ET) as sigmoid maps; each region's
loss is 1 - soft Dice, the three are added, and the losses of stage 1, stage 2 and decoder 2 are
added again (Sec. 2.4).
"""
from __future__ import annotations

import torch

EPS = 1e-5
OUTPUTS = ("stage1", "stage2", "stage2_aux")


def soft_dice(pred: torch.Tensor, target: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Soft Dice per region (Eq. 2): 2 sum(S R) / (sum S^2 + sum R^2 + eps), summed over batch and space.

    ``pred`` and ``target`` are (N, R, ...); returns a tensor of R values.
    """
    dims = [0] + list(range(2, pred.ndim))
    target = target.to(pred.dtype)
    num = 2.0 * (pred * target).sum(dims)
    den = (pred * pred).sum(dims) + (target * target).sum(dims) + eps
    return num / den


def dice_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Sum over regions of (1 - soft Dice)."""
    return (1.0 - soft_dice(pred, target, eps)).sum()


def cascade_loss(outputs: dict[str, torch.Tensor], target: torch.Tensor,
                 eps: float = EPS) -> tuple[torch.Tensor, dict[str, float]]:
    """Total loss over the outputs present (stage1 + stage2 [+ stage2_aux]) and each part as a float."""
    parts = {k: dice_loss(outputs[k].float(), target, eps) for k in OUTPUTS if k in outputs}
    total = sum(parts.values())
    return total, {k: float(v.detach()) for k, v in parts.items()}
