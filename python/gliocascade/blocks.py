"""The building blocks of Tables 1 and 2 of Jiang et al. (BraTS 2019): one class per table row type.

Each ``forward`` reads like its row of the table, so the networks in ``networks.py`` can be
checked against the paper line by line.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


class InitConv(nn.Module):
    """InitConv: Conv3 (in -> width) then Dropout (p = 0.2 in the paper)."""

    def __init__(self, in_channels: int, width: int, dropout: float):
        super().__init__()
        self.conv = nn.Conv3d(in_channels, width, 3, padding=1)
        self.dropout = nn.Dropout3d(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.conv(x))


class ResBlock(nn.Module):
    """EnBlock/DeBlock: pre-activation residual block GN, ReLU, Conv3, GN, ReLU, Conv3, + identity.

    With ``checkpointing`` set (and gradients on), activations inside the block are recomputed in
    the backward pass instead of stored: the paper's way to fit 128^3 crops in 12 GB.
    """

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, channels)
        self.conv1 = nn.Conv3d(channels, channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, channels)
        self.conv2 = nn.Conv3d(channels, channels, 3, padding=1)
        self.checkpointing = False

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        inplace = not torch.is_grad_enabled()  # no autograd: reuse buffers (same values, less memory traffic)
        y = self.conv1(F.relu(self.norm1(x), inplace=inplace))
        return self.conv2(F.relu(self.norm2(y), inplace=inplace))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.checkpointing and torch.is_grad_enabled() and x.requires_grad:
            return x + checkpoint(self._residual, x, use_reentrant=False)
        if not torch.is_grad_enabled():
            return self._residual(x).add_(x)
        return x + self._residual(x)


def res_blocks(channels: int, groups: int, repeat: int) -> nn.Sequential:
    """``repeat`` residual blocks in a row (the table's Repeat column)."""
    return nn.Sequential(*[ResBlock(channels, groups) for _ in range(repeat)])


def _add_skip(y: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    """``y + skip``; in place on the fresh ``y`` when no autograd graph is being built."""
    return y + skip if torch.is_grad_enabled() else y.add_(skip)


class Down(nn.Module):
    """EnDown: Conv3 stride 2, doubling the channels and halving each spatial size."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv3d(in_channels, out_channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Up(nn.Module):
    """DeUp: Conv1 halving the channels, ConvTranspose 2x2x2 stride 2, + the encoder skip."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.reduce = nn.Conv3d(in_channels, out_channels, 1)
        self.up = nn.ConvTranspose3d(out_channels, out_channels, 2, stride=2)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return _add_skip(self.up(self.reduce(x)), skip)


class UpInterp(nn.Module):
    """DeUp.1 (decoder 2): Conv1 halving the channels, trilinear upsampling x2, + the encoder skip."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.reduce = nn.Conv3d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        y = F.interpolate(self.reduce(x), scale_factor=2, mode="trilinear", align_corners=False)
        return _add_skip(y, skip)


class EndConv(nn.Module):
    """EndConv + Sigmoid: Conv1 to the three region maps (WT, TC, ET), then a sigmoid."""

    def __init__(self, in_channels: int, n_regions: int):
        super().__init__()
        self.conv = nn.Conv3d(in_channels, n_regions, 1)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # float32 sigmoid also under bf16 autocast (a no-op in fp32): probabilities near 0.5 decide labels
        return self.sigmoid(self.conv(x).float())
