"""Model folders: ``model.json`` + ``checkpoint.pt`` + ``snapshots/NNN.pt``, loaded without unpickling.

Everything inference needs (config, label convention, data split, data card, weight hashes,
optional ET threshold) lives in ``model.json``, read and written by ``model_card`` (torch-free);
weights are read with
``torch.load(weights_only=True)`` and checked against their sha256 first, so a model folder from
elsewhere can never execute code or silently load the wrong weights.
"""
from __future__ import annotations

import json
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from .configs import finish_config, network_keys
from .errors import InputError
from .io import atomic_path
from .model_card import MODEL_JSON, card_orientation, read_model_json, write_model_json
from .provenance import sha256_file

CHECKPOINT = "checkpoint.pt"
SNAPSHOT_DIR = "snapshots"


@dataclass
class LoadedModel:
    """A model folder ready for inference: its model.json, config and eval-mode networks."""

    card: dict[str, Any]
    config: dict[str, Any]
    networks: list[nn.Module]
    folder: Path

    @property
    def orientation(self) -> str:
        """Axis codes of the arrays the networks were trained on (cases are brought to them first)."""
        return card_orientation(self.card, Path(self.folder) / MODEL_JSON)


def ensemble_orientation(models: Sequence[LoadedModel]) -> str:
    """The one orientation of an ensemble. Models trained in different orientations are refused
    (each would need its own reoriented input); the error names both model folders."""
    first = models[0]
    for other in models[1:]:
        if other.orientation != first.orientation:
            raise InputError(Path(other.folder) / MODEL_JSON,
                             f"orientation {other.orientation} differs from {first.orientation} of "
                             f"{Path(first.folder) / MODEL_JSON}; an ensemble needs one orientation")
    return first.orientation


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; asking for CUDA where there is none is an input error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(None, "device cuda requested, but no CUDA device is available (choose cpu or auto)")
    return dev


def _tensor_state(state: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """Wrap a bare state dict as ``{"model": ...}`` and stamp the network config as plain JSON text."""
    out = dict(state) if "model" in state else {"model": dict(state)}
    out["network_config"] = json.dumps(network_keys(config), sort_keys=True)
    return out


def save_weights(path: str | Path, state: dict[str, Any], config: dict[str, Any]) -> Path:
    """Write a weights file atomically (tensors and plain values only) and return its path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(_tensor_state(state, config), tmp)
    return path


def _first_line(exc: Exception) -> str:
    """The first line of a library error, never PyTorch's advice to load with weights_only off."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    first = re.sub(r"\x1b\[[0-9;]*m", "", lines[0]) if lines else type(exc).__name__
    return "see the file's origin" if "weights_only" in first or "trust" in first.lower() else first


def _pickled_text(exc: Exception) -> str:
    """Why a weights-only load refused a file, naming the Python object it would have created."""
    found = re.search(r"GLOBAL ([\w.]+)", str(exc))
    what = f" ({found.group(1)})" if found else ""
    return (f"refused: the file holds pickled Python objects{what}, not only tensors; it was not unpickled, "
            "and a gliocascade checkpoint never needs it")


def load_weights(path: str | Path, config: dict[str, Any] | None = None,
                 map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a weights file with ``weights_only=True``; refuse pickled objects, corruption, other configs."""
    path = Path(path)
    if path.is_dir():
        raise InputError(path, "is a folder, not a weights file")
    if not path.is_file():
        raise InputError(path, "weights file not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise InputError(path, _pickled_text(exc)) from None
    except Exception as exc:  # zip/stream errors of truncated or corrupt files
        raise InputError(path, f"corrupt or unreadable checkpoint ({type(exc).__name__}: {_first_line(exc)})") from None
    if not isinstance(state, dict) or "model" not in state or "network_config" not in state:
        raise InputError(path, "not a gliocascade checkpoint (no model weights or network config)")
    if config is not None:
        want = network_keys(config)
        try:
            have = json.loads(state["network_config"])
        except (TypeError, ValueError):
            raise InputError(path, "checkpoint's network config is unreadable") from None
        if have != want:
            diff = sorted(k for k in want if have.get(k) != want[k])
            raise InputError(path, f"checkpoint was made for another config (differs in {', '.join(diff)})")
    return state


def write_model_folder(folder: str | Path, config: dict[str, Any], checkpoint_state: dict[str, Any],
                       snapshot_states: list[dict[str, Any]], card: dict[str, Any]) -> Path:
    """Write a complete model folder; states are dicts with a ``model`` state dict (or bare state dicts)."""
    folder = Path(folder)
    (folder / SNAPSHOT_DIR).mkdir(parents=True, exist_ok=True)
    save_weights(folder / CHECKPOINT, checkpoint_state, config)
    snaps = []
    for i, st in enumerate(snapshot_states):
        rel = f"{SNAPSHOT_DIR}/{i:03d}.pt"
        save_weights(folder / rel, st, config)
        snaps.append(rel)
    write_model_json(folder, config, card, CHECKPOINT, snaps)
    return folder


def verified_weights(folder: str | Path, doc: dict[str, Any], rel: str, also: tuple[str, ...] = ()) -> Path:
    """The path of weight file ``rel`` once its sha256 matches model.json (or one of ``also``);
    nothing is read by torch before this check, so a changed file is never loaded."""
    folder = Path(folder)
    path = folder / rel
    want = doc["sha256"].get(rel)
    if want is None and not also:
        raise InputError(folder / MODEL_JSON, f"no sha256 recorded for {rel}")
    if path.is_dir():
        raise InputError(path, "is a folder, not a weights file (model.json lists it as one)")
    if not path.is_file():
        raise InputError(path, "weights file listed in model.json is missing")
    if sha256_file(path) not in {want, *also}:
        raise InputError(path, "sha256 does not match model.json (file changed or corrupt)")
    return path


def load_model(folder: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a model folder: hashes checked, weights-only loading, snapshots in order (else the checkpoint)."""
    from .networks import build_cascade

    folder = Path(folder)
    doc = read_model_json(folder)
    config = finish_config(dict(doc["config"]), folder / MODEL_JSON)
    dev = resolve_device(device)
    names = list(doc.get("snapshots") or []) or ([doc["checkpoint"]] if doc.get("checkpoint") else [])
    if not names:
        raise InputError(folder / MODEL_JSON, "model.json names no weight files")
    networks = []
    for rel in names:
        path = verified_weights(folder, doc, rel)
        state = load_weights(path, config, map_location="cpu")
        net = build_cascade(config)
        try:
            net.load_state_dict(state["model"], strict=True)
        except RuntimeError as exc:
            raise InputError(path, f"weights do not fit the config ({str(exc).splitlines()[0]})") from None
        networks.append(net.to(dev).eval())
    return LoadedModel(card=doc, config=config, networks=networks, folder=folder)
