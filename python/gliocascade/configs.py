"""Model and training configurations: `paper` (Tables 1 and 2, Sec. 3), `tiny` (CPU tests) and `small`.

One dict drives the networks, the data pipeline and the training schedule, so a model folder's
``model.json`` is enough to rebuild exactly the network that was trained.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from .errors import InputError
from .io import read_json_object

PAPER: dict[str, Any] = {
    "name": "paper",
    "in_channels": 4,              # T1, T1Gd, T2, FLAIR
    "n_regions": 3,                # WT, TC, ET
    "widths1": [16, 32, 64, 128],  # Table 1: stage-1 channels per level
    "widths2": [32, 64, 128, 256],  # Table 2: stage 2 doubles the initial width
    "blocks": [1, 2, 2, 4],        # residual blocks per encoder level (EnBlock1..4)
    "groups": 8,                   # GroupNorm groups
    "dropout": 0.2,                # after InitConv
    "crop": [128, 128, 128],
    "epochs": 405,
    "warmup_epochs": 5,
    "lr": 1e-4,
    "weight_decay": 1e-5,
    "poly_power": 0.9,
    "batch_size": 1,
    "snapshots": 8,                # last epochs kept for the snapshot ensemble
    "checkpointing": True,         # the paper needs it to fit 12 GB
    "fg_crop_prob": 0.0,           # the paper crops uniformly at random
    "presence_flags": False,       # one extra input channel per modality saying it is present (networks.Cascade)
}

# Small enough to learn the phantoms on one CPU core in a few minutes. Differences from the paper:
# three levels of 8/16/32 channels in both stages, 4 GN groups, no dropout, 32^3 crops (half of
# them centred on tumour), batch 2 (PyTorch's batch-1 3D convolutions on CPU take a slow path;
# batch 2 in channels-last costs about the same per step and sees twice the data), 50 epochs and a 20x larger
# learning rate (2e-3), which the short schedule needs.
TINY: dict[str, Any] = {
    **PAPER,
    "name": "tiny",
    "widths1": [8, 16, 32],
    "widths2": [8, 16, 32],
    "blocks": [1, 1, 1],
    "groups": 4,
    "dropout": 0.0,
    "crop": [32, 32, 32],
    "epochs": 50,
    "warmup_epochs": 2,
    "lr": 2e-3,
    "batch_size": 2,
    "checkpointing": False,
    "fg_crop_prob": 0.5,           # half the crops centred on tumour: small crops of small tumours
}

# Real data on 2 CPU cores (benchmarks/real_learning.py: expert cases at 2 mm): four levels of
# 8/16/32/64 channels in both stages (a 48^3 crop at 2 mm sees 96 mm, a whole tumour with its
# surroundings), 4 GN groups, no dropout, batch 2, half the crops centred on tumour, tiny's rate.
SMALL: dict[str, Any] = {
    **TINY,
    "name": "small",
    "widths1": [8, 16, 32, 64],
    "widths2": [8, 16, 32, 64],
    "blocks": [1, 1, 1, 1],
    "crop": [48, 48, 48],
}

BUILTIN = {"paper": PAPER, "tiny": TINY, "small": SMALL}


def finish_config(cfg: dict[str, Any], where: str | Path | None) -> dict[str, Any]:
    """Check consistency and add the derived ``levels`` and ``divisor``."""
    required = ("in_channels", "n_regions", "widths1", "widths2", "blocks", "groups")
    missing = [k for k in required if k not in cfg]
    if missing:
        raise InputError(where, f"config lacks key(s) {', '.join(missing)}")
    for key, value in PAPER.items():  # training settings default to the paper's
        cfg.setdefault(key, copy.deepcopy(value))
    for key in [k for k, v in PAPER.items() if isinstance(v, bool)]:  # "false" in JSON would read as true
        if not isinstance(cfg[key], bool):
            raise InputError(where, f"{key} must be true or false, not {cfg[key]!r}")
    w1, w2, blocks = cfg["widths1"], cfg["widths2"], cfg["blocks"]
    if not (len(w1) == len(w2) == len(blocks)) or len(blocks) < 2:
        raise InputError(where, "widths1, widths2 and blocks must have the same length (>= 2)")
    for w in (*w1, *w2):
        if int(w) % int(cfg["groups"]) != 0:
            raise InputError(where, f"width {w} is not a multiple of groups={cfg['groups']}")
    if len(cfg["crop"]) != 3:
        raise InputError(where, "crop must have three sizes")
    cfg["levels"] = len(blocks)
    cfg["divisor"] = 2 ** (len(blocks) - 1)
    if any(int(c) % cfg["divisor"] for c in cfg["crop"]):
        raise InputError(where, f"crop {cfg['crop']} is not a multiple of {cfg['divisor']}")
    return cfg


def load_config(name_or_path: str | Path) -> dict[str, Any]:
    """A fresh config dict for ``paper``, ``tiny``, ``small`` or a JSON file.

    A JSON file may hold a full config, or ``{"base": "tiny", ...}`` overriding a built-in one.
    """
    key = str(name_or_path)
    if key in BUILTIN:
        return finish_config(copy.deepcopy(BUILTIN[key]), None)
    path = Path(key)
    if not path.is_file():
        raise InputError(path, "config is neither 'paper', 'tiny', 'small' nor an existing JSON file")
    data = read_json_object(path, "JSON config")
    base = data.pop("base", None)
    if base is not None:
        if base not in BUILTIN:
            raise InputError(path, f"unknown base config {base!r} (use paper, tiny or small)")
        data = {**copy.deepcopy(BUILTIN[base]), "name": path.stem, **data}
    data.pop("levels", None)
    data.pop("divisor", None)
    return finish_config(data, path)


def network_keys(cfg: dict[str, Any]) -> dict[str, Any]:
    """The part of a config that fixes the weights' shapes (compared when loading weights).

    ``presence_flags`` is named only when on, so checkpoints written before the key existed still match.
    """
    keys = {k: cfg[k] for k in ("in_channels", "n_regions", "widths1", "widths2", "blocks", "groups")}
    if cfg.get("presence_flags"):
        keys["presence_flags"] = True
    return keys
