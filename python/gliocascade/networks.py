"""The two-stage cascaded U-Net of Jiang et al. (BraTS 2019 winner), assembled from ``blocks.py``.

Attribute names follow the rows of Tables 1 and 2 (``en_block1``, ``en_down1``, ..., ``de_up3``,
``de_block3``, ..., ``end_conv``; decoder 2 rows carry the same names under ``decoder2``), so the
layer summary reads like the tables. Widths and depths come from the config (``configs.py``).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .blocks import Down, EndConv, InitConv, ResBlock, Up, UpInterp, res_blocks


class Encoder(nn.Module):
    """InitConv, then per level EnBlock (Repeat times) and EnDown; returns every level's output."""

    def __init__(self, in_channels: int, widths: list[int], blocks: list[int], groups: int, dropout: float):
        super().__init__()
        self.levels = len(widths)
        self.init_conv = InitConv(in_channels, widths[0], dropout)
        for i, (w, n) in enumerate(zip(widths, blocks), start=1):
            setattr(self, f"en_block{i}", res_blocks(w, groups, n))
            if i < self.levels:
                setattr(self, f"en_down{i}", Down(w, widths[i]))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        skips = []
        x = self.init_conv(x)
        for i in range(1, self.levels + 1):
            x = getattr(self, f"en_block{i}")(x)
            skips.append(x)
            if i < self.levels:
                x = getattr(self, f"en_down{i}")(x)
        return skips


class Decoder(nn.Module):
    """Per level, deepest first: DeUp (upsample + skip) and one DeBlock; then EndConv + Sigmoid."""

    def __init__(self, widths: list[int], groups: int, n_regions: int, interpolate: bool = False):
        super().__init__()
        self.levels = len(widths)
        up = UpInterp if interpolate else Up
        for i in range(self.levels - 1, 0, -1):
            setattr(self, f"de_up{i}", up(widths[i], widths[i - 1]))
            setattr(self, f"de_block{i}", ResBlock(widths[i - 1], groups))
        self.end_conv = EndConv(widths[0], n_regions)

    def forward(self, skips: list[torch.Tensor]) -> torch.Tensor:
        x = skips[-1]
        for i in range(self.levels - 1, 0, -1):
            x = getattr(self, f"de_up{i}")(x, skips[i - 1])
            x = getattr(self, f"de_block{i}")(x)
        return self.end_conv(x)


class UNet(nn.Module):
    """One stage: encoder + decoder 1 (ConvTranspose); with ``decoder2`` also the trilinear decoder."""

    def __init__(self, in_channels: int, widths: list[int], blocks: list[int], groups: int,
                 dropout: float, n_regions: int, decoder2: bool = False):
        super().__init__()
        self.encoder = Encoder(in_channels, widths, blocks, groups, dropout)
        self.decoder = Decoder(widths, groups, n_regions)
        self.decoder2 = Decoder(widths, groups, n_regions, interpolate=True) if decoder2 else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        skips = self.encoder(x)
        aux = self.decoder2(skips) if (self.decoder2 is not None and self.training) else None
        return self.decoder(skips), aux


class Cascade(nn.Module):
    """Stage 1 on the 4 images; stage 2 on the images plus stage 1's 3 maps (7 channels).

    With the config key ``presence_flags`` both stages also see one presence map per modality
    (:func:`presence_maps`; 8 and 11 input channels), off by default.

    Trained end to end (stage 1's maps are not detached). ``forward`` returns sigmoid
    probabilities ``stage1`` and ``stage2`` (N, 3, D, H, W; WT, TC, ET) and, in training mode
    only, ``stage2_aux`` from decoder 2.
    """

    def __init__(self, config: dict[str, Any]):
        super().__init__()
        c = config
        self.divisor = 2 ** (len(c["blocks"]) - 1)
        self.presence_flags = bool(c.get("presence_flags", False))
        inputs = c["in_channels"] * (2 if self.presence_flags else 1)
        self.stage1 = UNet(inputs, c["widths1"], c["blocks"], c["groups"], c["dropout"], c["n_regions"])
        self.stage2 = UNet(inputs + c["n_regions"], c["widths2"], c["blocks"], c["groups"],
                           c["dropout"], c["n_regions"], decoder2=True)
        self.set_checkpointing(bool(c.get("checkpointing", False)))

    def set_checkpointing(self, on: bool) -> None:
        """Recompute residual-block activations in the backward pass (saves memory, costs time)."""
        for m in self.modules():
            if isinstance(m, ResBlock):
                m.checkpointing = on

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if any(s % self.divisor for s in x.shape[2:]):
            raise ValueError(f"spatial size {tuple(x.shape[2:])} is not a multiple of {self.divisor}")
        if self.presence_flags:
            x = torch.cat([x, presence_maps(x)], dim=1)
        p1, _ = self.stage1(x)
        p2, aux = self.stage2(torch.cat([x, p1], dim=1))
        out = {"stage1": p1, "stage2": p2}
        if aux is not None:
            out["stage2_aux"] = aux
        return out


def presence_maps(x: torch.Tensor) -> torch.Tensor:
    """One constant map per input channel: 1 where the modality is present, 0 where it is absent.

    An absent modality is all zeros after z-scoring (data.load_volume, modality dropout), so presence
    is read from the input itself and training, dropout and inference need no extra field (a training
    crop wholly outside the brain reads as "all absent", where there is nothing to segment anyway).
    ``ones_like`` keeps the input's memory layout, so channels-last stays on the CPU fast path.
    """
    present = (x.detach().abs().amax(dim=(2, 3, 4)) > 0).to(x.dtype)
    return torch.ones_like(x) * present[:, :, None, None, None]


def build_cascade(config: dict[str, Any]) -> Cascade:
    """The cascade for a config from ``configs.load_config``."""
    return Cascade(config)


# --------------------------------------------------------------------------- summary

def count_parameters(module: nn.Module | None) -> int:
    """Exact number of parameters of a module (0 for None)."""
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def parameter_counts(model: Cascade) -> dict[str, int]:
    """Stage 1, stage 2 at inference (without decoder 2), stage 2 with decoder 2, and the total."""
    s2_all = count_parameters(model.stage2)
    s2_inf = s2_all - count_parameters(model.stage2.decoder2)
    s1 = count_parameters(model.stage1)
    return {"stage1": s1, "stage2_inference": s2_inf, "stage2_training": s2_all, "total_training": s1 + s2_all}


def _row_modules(model: Cascade) -> list[tuple[str, nn.Module]]:
    """(row name, module) in table order for both stages (decoder 2 rows suffixed ``.1``)."""
    rows = []
    for stage in ("stage1", "stage2"):
        unet: UNet = getattr(model, stage)
        enc = unet.encoder
        rows.append((f"{stage}.InitConv", enc.init_conv))
        for i in range(1, enc.levels + 1):
            rows.append((f"{stage}.EnBlock{i}", getattr(enc, f"en_block{i}")))
            if i < enc.levels:
                rows.append((f"{stage}.EnDown{i}", getattr(enc, f"en_down{i}")))
        for dec, suffix in ((unet.decoder, ""), (unet.decoder2, ".1")):
            if dec is None:
                continue
            for i in range(dec.levels - 1, 0, -1):
                rows.append((f"{stage}.DeUp{i}{suffix}", getattr(dec, f"de_up{i}")))
                rows.append((f"{stage}.DeBlock{i}{suffix}", getattr(dec, f"de_block{i}")))
            rows.append((f"{stage}.EndConv{suffix}", dec.end_conv.conv))
            rows.append((f"{stage}.Sigmoid{suffix}", dec.end_conv.sigmoid))
    return rows


def layer_sizes(config: dict[str, Any], size: tuple[int, int, int] = (128, 128, 128),
                training: bool = True) -> list[tuple[str, tuple[int, ...]]]:
    """Output size (C, D, H, W) of every table row for one 4-channel input, computed on the meta device.

    Rows that do not run (decoder 2 at inference) are absent from the result.
    """
    with torch.device("meta"):
        model = build_cascade(config)
        x = torch.empty(1, config["in_channels"], *size)
    model.train(training)
    model.set_checkpointing(False)
    seen: dict[str, tuple[int, ...]] = {}
    hooks = []
    rows = _row_modules(model)
    for name, mod in rows:
        def hook(_m, _inp, out, name=name):
            seen[name] = tuple(out.shape[1:])
        hooks.append(mod.register_forward_hook(hook))
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return [(name, seen[name]) for name, _ in rows if name in seen]
