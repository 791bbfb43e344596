"""The whole-brain inference engine: crop to the brain, pad to the network's multiple, flip TTA, uncrop.

The paper segments the whole brain at once (no sliding window) and averages the probabilities of
8 snapshots, each fed a different axis flip. This module does exactly that for any module that
returns the cascade's dict (``"stage2"``: (N, 3, D, H, W) sigmoid probabilities), so that it can
be tested with small stand-in networks. Prediction and training's validation both go through
:func:`brain_probabilities` (validation with tta 1), so a validation Dice measures the windowing
that is deployed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from .geometry import bounding_box

# The axis-flip combinations of the spatial axes of an (N, C, D, H, W) tensor, in TTA order:
# none, each axis alone, each pair, all three. ``--tta K`` runs the first K.
FLIPS: tuple[tuple[int, ...], ...] = ((), (2,), (3,), (4,), (2, 3), (2, 4), (3, 4), (2, 3, 4))
TTA_CHOICES = (1, 2, 4, 8)

Runner = Callable[[nn.Module, torch.Tensor], torch.Tensor]


def stage2_probabilities(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The plain eager forward: stage-2 (decoder 1) probabilities as float32."""
    return net(x)["stage2"].float()


# --------------------------------------------------------------------------- geometry

@dataclass(frozen=True)
class Window:
    """Where the network input sits in the image: the brain box and the zero padding around it."""

    box: tuple[slice, slice, slice]
    pads: tuple[tuple[int, int], tuple[int, int], tuple[int, int]]
    full_shape: tuple[int, int, int]

    @property
    def padded_shape(self) -> tuple[int, int, int]:
        return tuple(s.stop - s.start + a + b for s, (a, b) in zip(self.box, self.pads))


def make_window(mask: np.ndarray, divisor: int) -> Window | None:
    """Crop to the brain box, then pad each axis symmetrically up to a multiple of ``divisor``."""
    box = bounding_box(mask)
    if box is None:
        return None
    pads = []
    for s in box:
        size = s.stop - s.start
        extra = (-size) % int(divisor)
        pads.append((extra // 2, extra - extra // 2))
    return Window(box, tuple(pads), tuple(int(v) for v in mask.shape))


def crop_pad(volume: np.ndarray, window: Window) -> np.ndarray:
    """(C, X, Y, Z) -> (C, *window.padded_shape): the brain box, zero-padded."""
    cropped = volume[(slice(None), *window.box)]
    return np.pad(cropped, [(0, 0), *window.pads], mode="constant")


def uncrop(padded: np.ndarray, window: Window) -> np.ndarray:
    """Inverse of :func:`crop_pad`: (C, padded) -> (C, full shape), zeros outside the box."""
    inner = tuple(slice(a, n - b) for (a, b), n in zip(window.pads, padded.shape[1:]))
    out = np.zeros((padded.shape[0], *window.full_shape), dtype=padded.dtype)
    out[(slice(None), *window.box)] = padded[(slice(None), *inner)]
    return out


# --------------------------------------------------------------------------- TTA and ensembles

def tta_passes(n_networks: int, tta: int) -> list[tuple[int, tuple[int, ...]]]:
    """(network index, flip axes) of each pass: pass i uses snapshot i mod S with flip i."""
    if tta not in TTA_CHOICES:
        raise ValueError(f"tta must be one of {TTA_CHOICES}, got {tta}")
    if n_networks < 1:
        raise ValueError("a model needs at least one network")
    return [(i % n_networks, FLIPS[i]) for i in range(tta)]


def ensemble_probabilities(models: Sequence[Sequence[nn.Module]], x: torch.Tensor, tta: int,
                           runner: Runner = stage2_probabilities,
                           progress: Callable[[int], None] | None = None) -> torch.Tensor:
    """Mean stage-2 probabilities over every model folder's ``tta`` flip passes.

    ``models`` holds, per model folder, its networks (snapshots in order). Each pass flips the
    input, runs the network, and flips the output back before it is added to the mean.
    """
    total: torch.Tensor | None = None
    count = 0
    with torch.inference_mode():
        for nets in models:
            for index, axes in tta_passes(len(nets), tta):
                xi = torch.flip(x, axes) if axes else x
                p = runner(nets[index], xi)
                p = torch.flip(p, axes) if axes else p
                total = p.float().clone() if total is None else total.add_(p.float())
                count += 1
                if progress is not None:
                    progress(1)
    assert total is not None
    return total / count


def brain_probabilities(models: Sequence[Sequence[nn.Module]], images: np.ndarray, brain: np.ndarray, divisor: int,
                        tta: int, runner: Runner = stage2_probabilities, device: torch.device | str = "cpu",
                        progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, Window] | None:
    """(3, X, Y, Z) mean stage-2 probabilities of z-scored ``images`` (C, X, Y, Z), computed on the
    box of ``brain`` padded to ``divisor`` and zero outside that box, with the window used; None
    when ``brain`` is empty (there is nothing to segment)."""
    window = make_window(brain, divisor)
    if window is None:
        return None
    x = torch.from_numpy(np.ascontiguousarray(crop_pad(images, window)))[None].to(device)
    probs = ensemble_probabilities(models, x, tta, runner, progress)
    return uncrop(probs[0].cpu().numpy(), window), window
