"""The model card (``model.json``): its one reader and writer, without torch, and the warnings it
implies for a case.

``model.json`` lives apart from the weights (as nnU-Net's plans apart from its checkpoints): it
holds the config, label convention, orientation, split, data card, ET threshold and the sha256 of
every weight file, so it can be read, shown and updated (tune-threshold) where torch is absent.

A model trained on synthetic phantoms segments a real brain badly, and an ET threshold that was
never tuned means small enhancing regions are kept as predicted: a person deciding whether to
trust a cohort's results must be told both, in one line each, where the results are made.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nibabel as nib

from . import __version__
from .errors import InputError
from .io import MODALITIES, atomic_path, read_json_object
from .orientation import BRATS_ORIENTATION, codes_text
from .provenance import sha256_file

# NIfTI ``descrip`` of every image `gliocascade phantom` writes (DESIGN's shared records).
PHANTOM_MARKER = "gliocascade phantom"
MODEL_JSON = "model.json"
FORMAT = "gliocascade-model"


# --------------------------------------------------------------------------- reading and writing

def card_orientation(doc: dict[str, Any], path: str | Path | None = None) -> str:
    """The checked ``orientation`` of a model.json document; absent means BraTS-stored arrays (LPS),
    which is what every model written before the field existed was trained on."""
    value = doc.get("orientation")
    if value is None:
        return BRATS_ORIENTATION
    if not isinstance(value, str):
        raise InputError(path, f"model.json: orientation must be a string of three axis codes, not {value!r}")
    try:
        return codes_text(value)
    except ValueError as exc:
        raise InputError(path, f"model.json: {exc}") from None


def read_model_json(folder: str | Path, check: bool = True) -> dict[str, Any]:
    """The parsed ``folder/model.json``. ``check`` refuses what weights cannot be loaded from
    (format, config, hashes, orientation, weight paths); without it only the JSON must be an
    object (cards shown in reports, which may be older or hand-made)."""
    folder = Path(folder)
    path = folder / MODEL_JSON
    if not folder.is_dir():
        raise InputError(folder, "model folder not found")
    if not path.is_file():
        raise InputError(path, "not a model folder: model.json missing")
    doc = read_json_object(path, "model.json")
    if not check:
        return doc
    if doc.get("format") != FORMAT or "config" not in doc or "sha256" not in doc:
        raise InputError(path, "not a gliocascade model.json (format, config or sha256 missing)")
    if not isinstance(doc["config"], dict) or not isinstance(doc["sha256"], dict):
        raise InputError(path, "model.json: config and sha256 must be objects")
    card_orientation(doc, path)  # refuse a malformed orientation before any weights are read
    names = doc.get("snapshots") or []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise InputError(path, "model.json: snapshots must be a list of file names")
    for rel in [*names, doc.get("checkpoint") or ""]:
        if rel and (Path(rel).is_absolute() or ".." in Path(rel).parts):
            raise InputError(path, f"model.json: weight file {rel!r} must lie inside the model folder")
    return doc


def card_sha256(folder: str | Path) -> str:
    """The sha256 of ``folder/model.json``: provenance records it, and reports find a model's card
    by it when the folder has moved (staged copies)."""
    return sha256_file(Path(folder) / MODEL_JSON)


def _write_doc(folder: Path, doc: dict[str, Any]) -> Path:
    """The one place model.json is written: atomically, so a reader never sees half a card."""
    with atomic_path(folder / MODEL_JSON) as tmp:
        tmp.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")
    return folder / MODEL_JSON


def write_model_json(folder: str | Path, config: dict[str, Any], card: dict[str, Any],
                     checkpoint: str | None, snapshots: list[str], known_sha256: dict[str, str] | None = None) -> Path:
    """(Re)write model.json with the sha256 of every weight file named (``known_sha256``: hashes
    the caller computed when it wrote the files, so they are not read again).

    The card's ``orientation`` (the axis codes of the training arrays; default LPS, the BraTS
    storage order) goes to the top level, beside the label convention.
    """
    folder = Path(folder)
    card = dict(card)
    orientation = card.pop("orientation", None)
    doc: dict[str, Any] = {"format": FORMAT, "format_version": 1, "gliocascade_version": __version__,
                           "config": config, "label_convention": str(card.pop("label_convention", "2019")),
                           "orientation": codes_text(BRATS_ORIENTATION if orientation is None else orientation),
                           "split": card.pop("split", None)}
    for key in ("modalities_used", "modalities_required", "modality_dropout"):  # DESIGN's model card
        if key in card:
            doc[key] = card.pop(key)
    if card.get("et_threshold") is not None:
        doc["et_threshold"] = int(card.pop("et_threshold"))
    card.pop("et_threshold", None)
    doc["data_card"] = card
    files = ([checkpoint] if checkpoint else []) + list(snapshots)
    doc["checkpoint"] = checkpoint
    doc["snapshots"] = list(snapshots)
    doc["sha256"] = {rel: (known_sha256 or {}).get(rel) or sha256_file(folder / rel) for rel in files}
    return _write_doc(folder, doc)


def update_model_json(folder: str | Path, fields: dict[str, Any]) -> Path:
    """Set top-level ``fields`` of a checked model.json, every other field (the weight hashes
    among them) left as it was: the weights did not change, so neither do their hashes."""
    doc = read_model_json(folder)
    doc.update(fields)
    return _write_doc(Path(folder), doc)


def et_threshold_of(folder: str | Path) -> int | None:
    """The ``et_threshold`` of a model folder (None: never tuned); anything but a voxel count is refused."""
    value = read_model_json(folder).get("et_threshold")
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
        raise InputError(Path(folder) / MODEL_JSON, f"et_threshold {value!r} is not a voxel count >= 0")
    return value


# --------------------------------------------------------------------------- the card and its warnings

def is_phantom(path: str | Path) -> bool:
    """True when the NIfTI header's description is the phantom marker (reads the header only)."""
    try:
        descrip = nib.load(str(path)).header["descrip"]
    except Exception:  # an unreadable file is refused elsewhere, with its own message
        return False
    return bytes(descrip.tobytes()).rstrip(b"\0").decode("ascii", "replace") == PHANTOM_MARKER


def read_card(folder: str | Path) -> dict[str, Any]:
    """The card fields of ``folder/model.json`` (DESIGN's model card), with absent ones as None."""
    doc = read_model_json(folder, check=False)
    data = doc.get("data_card") or {}
    return {"folder": str(folder), "config": (doc.get("config") or {}).get("name"),
            "source": data.get("source"), "n_cases": data.get("n_cases"), "synthetic": data.get("synthetic"),
            "label_convention": doc.get("label_convention"), "orientation": doc.get("orientation", "LPS"),
            "epochs": data.get("epochs"), "n_val": data.get("n_val"), "val_dice": data.get("val_dice"),
            # models trained before precision was recorded ran fp32 on CPU, bf16 on CUDA: unknown here
            "precision": data.get("precision"), "et_threshold": doc.get("et_threshold"),
            # cards written before these fields: trained on, and needing, all four modalities
            "modalities_used": list(doc.get("modalities_used") or MODALITIES),
            "modalities_required": list(doc["modalities_required"] if "modalities_required" in doc else MODALITIES),
            "modality_dropout": float(doc.get("modality_dropout") or 0.0)}


def modality_rules(cards: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """(required, used) modalities of an ensemble: a case may lack a modality no model requires;
    a modality no model uses is zero-filled even when present, as in those models' training."""
    required = [m for m in MODALITIES if any(m in c["modalities_required"] for c in cards)]
    used = [m for m in MODALITIES if any(m in c["modalities_used"] for c in cards)]
    return required, used


def missing_modalities_error(cards: list[dict[str, Any]], images: dict[str, Any], case_id: str) -> str | None:
    """One line when the case lacks a modality some model requires (None when it can be segmented)."""
    missing = [m for m in modality_rules(cards)[0] if images.get(m) is None]
    if not missing:
        return None
    needing = next(c for c in cards if set(missing) & set(c["modalities_required"]))
    return (f"case {case_id}: modality {', '.join(missing)} missing, and model {needing['folder']} requires it "
            f"(model.json modalities_required: {', '.join(needing['modalities_required'])}; train with "
            "modality dropout to segment without it)")


def optional_modalities(cards: list[dict[str, Any]], images: dict[str, Any], case_id: str) -> list[str]:
    """The modalities this case may lack for these models; a missing required one is an InputError
    naming the file a case folder would hold (one rule for `run`'s input check and for predict)."""
    refusal = missing_modalities_error(cards, images, case_id)
    required = modality_rules(cards)[0]
    if refusal:
        missing = next(m for m in required if images.get(m) is None)
        present = [Path(p) for p in images.values() if p is not None]
        raise InputError(present[0].parent / f"{case_id}_{missing}.nii.gz" if present else None, refusal)
    return [m for m in MODALITIES if m not in required]


def _yes_no(value: Any) -> str:
    return "unknown" if value is None else ("yes" if value else "no")


def card_lines(card: dict[str, Any]) -> list[str]:
    """The card as the lines `gliocascade model-card` prints."""
    dice = card.get("val_dice") or {}
    if dice and any(v is not None for v in dice.values()):
        val = ", ".join(f"{r} {v:.3f}" if v is not None else f"{r} -" for r, v in dice.items())
    else:
        val = "none (no validation cases)"
    threshold = card.get("et_threshold")
    return [f"model: {card['folder']}", f"config: {card.get('config')}",
            f"training data: {card.get('source') or 'unknown'}", f"cases: {card.get('n_cases') or 'unknown'}",
            f"synthetic: {_yes_no(card.get('synthetic'))}", f"label convention: {card.get('label_convention')}",
            f"orientation: {card.get('orientation')}", f"epochs: {card.get('epochs')}",
            f"trained in: {card.get('precision') or 'unknown'}",
            f"modalities used: {', '.join(card.get('modalities_used') or MODALITIES)}",
            f"modalities required: {', '.join(card.get('modalities_required') or []) or 'none (any one suffices)'}",
            f"modality dropout: {card.get('modality_dropout') or 0.0}",
            f"validation Dice: {val}",
            f"ET threshold: {'not tuned' if threshold is None else f'{threshold} voxels'}"]


def case_warnings(cards: list[dict[str, Any]], case_images: list[Path]) -> list[str]:
    """One-line warnings for applying these models to this case (empty when there is nothing to say)."""
    warnings = []
    real = not all(is_phantom(p) for p in case_images)
    for card in cards:
        if card.get("synthetic") and real:
            warnings.append(f"model {card['folder']} was trained on synthetic phantoms only "
                            "(model.json data_card synthetic: true); this case is not a phantom")
    warnings += threshold_warnings(cards)
    return warnings


def threshold_warnings(cards: list[dict[str, Any]]) -> list[str]:
    """A warning per model whose ET threshold was never tuned."""
    return [f"model {c['folder']}: ET threshold not tuned (no et_threshold in model.json): "
            "small enhancing regions are kept as predicted" for c in cards if c.get("et_threshold") is None]
