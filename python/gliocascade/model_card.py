"""The model card of a model folder, read without torch, and the warnings it implies for a case.

A model trained on synthetic phantoms segments a real brain badly, and an ET threshold that was
never tuned means small enhancing regions are kept as predicted: a person deciding whether to
trust a cohort's results must be told both, in one line each, where the results are made.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import nibabel as nib

from .io import MODALITIES, read_json_object

# NIfTI ``descrip`` of every image `gliocascade phantom` writes (DESIGN's shared records).
PHANTOM_MARKER = "gliocascade phantom"


def is_phantom(path: str | Path) -> bool:
    """True when the NIfTI header's description is the phantom marker (reads the header only)."""
    try:
        descrip = nib.load(str(path)).header["descrip"]
    except Exception:  # an unreadable file is refused elsewhere, with its own message
        return False
    return bytes(descrip.tobytes()).rstrip(b"\0").decode("ascii", "replace") == PHANTOM_MARKER


def read_card(folder: str | Path) -> dict[str, Any]:
    """The card fields of ``folder/model.json`` (DESIGN's model card), with absent ones as None."""
    doc = read_json_object(Path(folder) / "model.json", "model.json")
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
            "--modality-dropout to segment without it)")


def optional_modalities(cards: list[dict[str, Any]], images: dict[str, Any], case_id: str) -> list[str]:
    """The modalities this case may lack for these models; a missing required one is an InputError
    naming the file a case folder would hold (one rule for `run`'s input check and for predict)."""
    from .errors import InputError

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
