"""`gliocascade train`: end-to-end training of the cascade with the paper's schedule and resumable checkpoints.

Each epoch ends with an atomic checkpoint (model, optimiser, schedule and every RNG state, as
tensors and plain values only), so a killed run resumed with ``--resume`` finishes with exactly the
weights an uninterrupted run would have. The last epochs are kept as snapshots for the snapshot
ensemble at inference, and ``model.json`` is rewritten after every epoch so the folder is always usable.
"""
from __future__ import annotations

import csv
import json
import logging
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from .cpu_speed import reuse_freed_memory
from .data import Volume, augment, drop_modalities, load_volume
from .errors import InputError
from .inference import brain_probabilities
from .io import MODALITIES, Case, anchor_modality, atomic_path
from .losses import cascade_loss
from .metrics import dice
from .model_card import MODEL_JSON, is_phantom, read_model_json, write_model_json
from .model_io import CHECKPOINT, SNAPSHOT_DIR, load_weights, resolve_device, save_weights, verified_weights
from .precision import autocast, resolve_precision
from .provenance import sha256_file
from .networks import build_cascade
from .orientation import BRATS_ORIENTATION

log = logging.getLogger(__name__)
LOG_COLUMNS = ["epoch", "lr", "loss", "loss_stage1", "loss_stage2", "loss_stage2_aux",
               "val_dice_WT", "val_dice_TC", "val_dice_ET", "seconds"]


# --------------------------------------------------------------------------- schedule and split

def learning_rate(epoch: int, epochs: int, base_lr: float, warmup: int, power: float = 0.9) -> float:
    """LR of 0-based ``epoch``: linear warm-up over ``warmup`` epochs, then Eq. 3, lr0 (1 - e/N)^0.9."""
    if epoch < warmup:
        return base_lr * (epoch + 1) / warmup
    return base_lr * (1.0 - epoch / epochs) ** power


def make_split(case_ids: list[str], fold: int | None, folds: int, seed: int) -> dict[str, Any]:
    """Seeded k-fold split of the case ids; with ``fold`` None every case trains and none validates."""
    ids = sorted(case_ids)
    if fold is None:
        return {"fold": None, "folds": None, "seed": seed, "train": ids, "val": []}
    if fold >= folds:
        raise InputError(None, f"--fold {fold} must be below --folds {folds}")
    if folds > len(ids):
        raise InputError(None, f"--folds {folds} needs at least {folds} cases, got {len(ids)}")
    order = np.random.default_rng(seed).permutation(len(ids))
    parts = np.array_split(order, folds)
    val = sorted(ids[i] for i in parts[fold])
    return {"fold": fold, "folds": folds, "seed": seed, "train": [i for i in ids if i not in val], "val": val}


# --------------------------------------------------------------------------- RNG state as plain values

def rng_state(np_rng: np.random.Generator) -> dict[str, Any]:
    """Every RNG state as tensors/strings, loadable with ``torch.load(weights_only=True)``."""
    py = random.getstate()
    return {"torch": torch.get_rng_state(),
            "numpy": json.dumps(np_rng.bit_generator.state),
            "python_version": int(py[0]), "python": torch.tensor(py[1], dtype=torch.int64),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def restore_rng(state: dict[str, Any], np_rng: np.random.Generator) -> None:
    """Inverse of :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    np_rng.bit_generator.state = json.loads(state["numpy"])
    random.setstate((state["python_version"], tuple(int(v) for v in state["python"].tolist()), None))
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --------------------------------------------------------------------------- evaluation

def predict_regions(model: torch.nn.Module | list[torch.nn.Module], images: np.ndarray, divisor: int,
                    device: torch.device | str = "cpu", tta: int = 1) -> np.ndarray:
    """Stage-2 probabilities (3, X, Y, Z) of a whole z-scored volume, as the deployed predictor
    computes them with ``tta`` passes over the snapshot networks given (one network: tta 1, as
    validation uses it): on the brain box padded to the divisor, 0 outside the brain (the voxels
    z-scoring left non-zero)."""
    networks = model if isinstance(model, list) else [model]
    for net in networks:
        net.eval()
    brain = np.any(np.asarray(images) != 0, axis=0)
    found = brain_probabilities([networks], images, brain, divisor, tta=tta, device=device)
    if found is None:  # no brain: nothing is predicted
        return np.zeros((3, *brain.shape), dtype=np.float32)
    return found[0] * brain[None]


def validation_dice(model: torch.nn.Module, volumes: list[Volume], divisor: int,
                    device: torch.device | str = "cpu") -> list[float]:
    """Mean hard Dice (threshold 0.5) per region over whole validation volumes (NaN without any)."""
    if not volumes:
        return [float("nan")] * 3
    # metrics.dice is the reported metric: a region empty in both scores 1 (BraTS convention).
    scores = []
    for v in volumes:
        pred = predict_regions(model, v.images, divisor, device) > 0.5
        scores.append([dice(p, r) for p, r in zip(pred, v.regions)])
    return [float(x) for x in np.mean(scores, axis=0)]


def _validation_text(val: list[float]) -> str:
    """The validation part of an epoch line: Dice per region, or why there is none (never 'nan')."""
    if all(np.isnan(v) for v in val):
        return "(no validation cases)"
    return "val Dice " + " ".join(f"{r} {v:.3f}" for r, v in zip(("WT", "TC", "ET"), val))


# --------------------------------------------------------------------------- training

def modality_card(volumes: list, dropout: float) -> dict[str, Any]:
    """The card's modality fields: used = present in some training case; required = present in
    every one, when nothing taught the model to do without them (no dropout)."""
    used = [m for i, m in enumerate(MODALITIES) if any(i in v.present for v in volumes)]
    everywhere = [m for i, m in enumerate(MODALITIES) if all(i in v.present for v in volumes)]
    return {"modalities_used": used, "modalities_required": [] if dropout > 0 else everywhere,
            "modality_dropout": float(dropout)}


def _write_log(path: Path, rows: list[dict[str, Any]]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=LOG_COLUMNS)
        w.writeheader()
        w.writerows(rows)


def _read_log(path: Path, upto: int) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return [r for r in csv.DictReader(fh) if int(r["epoch"]) <= upto]


def train(cases: list[Case], out: Path, config: dict[str, Any], epochs: int | None = None,
          fold: int | None = None, folds: int = 5, seed: int = 0, resume: bool = False,
          device: str = "auto", precision: str = "auto", checkpointing: bool | None = None,
          steps_per_epoch: int | None = None, source: str = "", progress: bool = True,
          modality_dropout: float = 0.0) -> Path:
    """Train the cascade on ``cases`` into the model folder ``out``; returns ``out``.

    Every case is read and checked before the first step, so bad input fails fast. With
    ``modality_dropout`` P each sample drops each present modality with probability P (never all).
    ``precision``
    ``bf16`` runs forward and backward under bf16 autocast with float32 master weights, optimiser
    and loss; a resumed run keeps the checkpoint's precision (bit-exact resume holds per precision).
    """
    out = Path(out)
    cfg = dict(config)
    dev = resolve_device(device)
    ckpt_path = out / CHECKPOINT
    state = None
    if resume:
        if not ckpt_path.is_file():
            raise InputError(ckpt_path, "nothing to resume: no checkpoint")
        state = load_weights(verified_checkpoint(out), cfg)
        epochs = int(epochs or state["epochs"])
        seed = int(state["seed"])
        precision = _resumed_precision(state, precision, ckpt_path)
    elif ckpt_path.exists():
        raise InputError(ckpt_path, "a checkpoint exists already (use --resume, or another --out)")
    epochs = int(epochs or cfg["epochs"])
    cfg["epochs"] = epochs
    split = make_split([c.case_id for c in cases], fold, folds, seed)
    if state is not None and json.loads(state["split"]) != split:
        raise InputError(ckpt_path, "checkpoint was trained on another split (cases, fold or seed differ)")
    by_id = {c.case_id: c for c in cases}
    volumes = {cid: load_volume(by_id[cid]) for cid in split["train"] + split["val"]}
    train_vols = [volumes[c] for c in split["train"]]
    val_vols = [volumes[c] for c in split["val"]]
    if not train_vols:
        raise InputError(None, "no training cases")

    torch.manual_seed(seed)
    random.seed(seed)
    np_rng = np.random.default_rng(seed)
    model = build_cascade(cfg)
    model.set_checkpointing(bool(cfg["checkpointing"] if checkpointing is None else checkpointing))
    channels_last = dev.type == "cpu"  # oneDNN's fast 3D kernels on CPU, even at batch 1
    if channels_last:
        reuse_freed_memory()  # no page faults on each step's fresh activations: ~2x per step on CPU
    model = model.to(dev, memory_format=torch.channels_last_3d if channels_last else torch.contiguous_format)
    chosen = resolve_precision(precision, dev)
    log.info("train: %s arithmetic (%s)", chosen.name, chosen.reason)
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    start = 0
    log_rows: list[dict[str, Any]] = []
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        restore_rng(state["rng"], np_rng)
        start = int(state["epoch"])
        log_rows = _read_log(out / "train_log.csv", start)
    out.mkdir(parents=True, exist_ok=True)
    (out / SNAPSHOT_DIR).mkdir(exist_ok=True)
    hashes: dict[str, str] = {}  # sha256 of the weight files this run wrote, for model.json
    with atomic_path(out / "split.json") as tmp:
        tmp.write_text(json.dumps(split, indent=2) + "\n")

    steps = int(steps_per_epoch or max(1, int(np.ceil(len(train_vols) / cfg["batch_size"]))))
    bs = int(cfg["batch_size"])
    keep = int(cfg["snapshots"])
    if not 0.0 <= modality_dropout < 1.0:
        raise InputError(None, f"--modality-dropout {modality_dropout} must lie in [0, 1)")
    card = {"label_convention": sorted({by_id[c].label_convention for c in split["train"]})[0],
            **modality_card(train_vols, modality_dropout),
            "orientation": BRATS_ORIENTATION,  # load_volume's default: the arrays trained on
            "split": split,
            "source": source, "n_train": len(train_vols), "n_val": len(val_vols),
            "n_cases": len(train_vols) + len(val_vols),
            # true only when every case carries the phantom marker: the model has never seen a real brain
            "synthetic": all(is_phantom(by_id[c].images[anchor_modality(by_id[c].images)])
                             for c in split["train"] + split["val"]),
            "label_conventions": {c: by_id[c].label_convention for c in split["train"] + split["val"]},
            "epochs": epochs, "seed": seed, "steps_per_epoch": steps, "device": str(dev),
            **chosen.record(), "torch": torch.__version__}
    for epoch in range(start, epochs):
        t0 = time.time()
        lr = learning_rate(epoch, epochs, cfg["lr"], cfg["warmup_epochs"], cfg["poly_power"])
        for g in opt.param_groups:
            g["lr"] = lr
        model.train()
        sums: dict[str, float] = {}
        bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{epochs}", leave=False, disable=not progress or None)
        for _ in bar:
            picks = np_rng.integers(0, len(train_vols), size=bs)
            batch = [augment(train_vols[i], cfg["crop"], np_rng, float(cfg["fg_crop_prob"])) for i in picks]
            batch = [(drop_modalities(b[0], np_rng, modality_dropout), b[1]) for b in batch]
            x = torch.from_numpy(np.stack([b[0] for b in batch])).to(dev)
            y = torch.from_numpy(np.stack([b[1] for b in batch])).to(dev)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last_3d)
            with autocast(chosen, dev):
                outputs = model(x)
            loss, parts = cascade_loss(outputs, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            for k, v in {"loss": float(loss.detach()), **parts}.items():
                sums[k] = sums.get(k, 0.0) + v
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
        val = validation_dice(model, val_vols, cfg["divisor"], dev)
        row = {"epoch": epoch + 1, "lr": lr, "loss": sums["loss"] / steps,
               "loss_stage1": sums["stage1"] / steps, "loss_stage2": sums["stage2"] / steps,
               "loss_stage2_aux": sums.get("stage2_aux", 0.0) / steps,
               "val_dice_WT": val[0], "val_dice_TC": val[1], "val_dice_ET": val[2],
               "seconds": round(time.time() - t0, 3)}
        log_rows.append(row)
        log.info("epoch %d/%d loss %.4f %s", epoch + 1, epochs, row["loss"], _validation_text(val))
        weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        if epoch + 1 > epochs - keep:
            snap = save_weights(out / SNAPSHOT_DIR / f"{epoch + 1:03d}.pt", {"model": weights, "epoch": epoch + 1}, cfg)
            hashes[f"{SNAPSHOT_DIR}/{snap.name}"] = sha256_file(snap)
        checkpoint = {"model": weights, "optimizer": opt.state_dict(), "epoch": epoch + 1, "epochs": epochs,
                      "seed": seed, "scheduler": {"epoch": epoch + 1, "lr": lr, "warmup_epochs": cfg["warmup_epochs"],
                                                  "power": cfg["poly_power"], "base_lr": cfg["lr"]},
                      "rng": rng_state(np_rng), "split": json.dumps(split), "precision": chosen.name}
        _write_log(out / "train_log.csv", log_rows)
        snaps = sorted(p.name for p in (out / SNAPSHOT_DIR).glob("*.pt")
                       if epochs - keep < int(p.stem) <= epoch + 1)
        card["val_dice"] = {r: (None if np.isnan(v) else v) for r, v in zip(("WT", "TC", "ET"), val)}  # strict JSON
        _put_checkpoint(out, checkpoint, cfg, card, [f"{SNAPSHOT_DIR}/{n}" for n in snaps], hashes)
    return out


def _resumed_precision(state: dict[str, Any], requested: str, ckpt_path: Path) -> str:
    """The checkpoint's precision (checkpoints from before precision was recorded ran fp32 on CPU);
    another explicit one is refused: resuming in other arithmetic would not continue the same run."""
    trained = str(state.get("precision", "fp32"))
    if requested not in ("auto", trained):
        raise InputError(ckpt_path, f"checkpoint was trained in {trained}; resume with --precision {trained} "
                                    "(or auto)")
    return trained


PENDING_CHECKPOINT = ".checkpoint.pending.pt"
PENDING_KEY = "checkpoint_pending_sha256"


def _put_checkpoint(out: Path, checkpoint: dict[str, Any], cfg: dict[str, Any], card: dict[str, Any],
                    snaps: list[str], hashes: dict[str, str]) -> None:
    """Put the epoch's checkpoint in place so that model.json always holds the sha256 of the
    checkpoint there, even when training is killed between two writes (resume checks it).

    The new checkpoint is written beside, model.json records its hash as pending, the file is
    renamed into place, and model.json records it as the checkpoint.
    """
    pending = save_weights(out / PENDING_CHECKPOINT, checkpoint, cfg)
    digest = sha256_file(pending)
    current = CHECKPOINT if (out / CHECKPOINT).is_file() else None
    write_model_json(out, cfg, {**card, PENDING_KEY: digest}, current, snaps, hashes)
    pending.replace(out / CHECKPOINT)
    hashes[CHECKPOINT] = digest
    write_model_json(out, cfg, card, CHECKPOINT, snaps, hashes)


def verified_checkpoint(out: Path) -> Path:
    """OUT/checkpoint.pt once its sha256 matches model.json (the recorded or the pending one);
    a checkpoint is never loaded on trust, and never unpickled."""
    if not (out / MODEL_JSON).is_file():
        raise InputError(out / MODEL_JSON, "cannot verify the checkpoint: model.json (which holds its sha256) "
                                           "is missing")
    doc = read_model_json(out)
    pending = (doc.get("data_card") or {}).get(PENDING_KEY)
    return verified_weights(out, doc, CHECKPOINT, also=(pending,) if isinstance(pending, str) else ())
