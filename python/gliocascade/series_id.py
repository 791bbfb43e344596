"""Which MRI series of a study is T1, T1Gd, T2 or FLAIR, decided from DICOM tags, with reasons.

Series descriptions are free text typed on the scanner console and differ between sites, so a
description keyword alone is not trusted when the acquisition physics (TR/TE/TI) contradicts it;
every decision carries a human-readable reason so a wrong pick can be spotted in ``series.csv``
and overridden with ``--t1/--t1ce/--t2/--flair``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable

from .layout import MODALITIES

OTHER = "other"


def _rx(pattern: str) -> re.Pattern:
    """A keyword pattern that matches only as a token (letters/digits around it end the match)."""
    return re.compile(rf"(?<![a-z0-9])(?:{pattern})(?![a-z0-9])")


# FLAIR is tested before T2 (descriptions often say "T2 FLAIR"); "T1 FLAIR" is a T1-weighted sequence.
EXCLUDE = _rx(r"localizer|localiser|loc|scout|survey|aahead|dwi|dti|diff\w*|adc|trace\w*|"
              r"perf\w*|dsc|dce|swi|swan|bold|fmri|rest|asl|pcasl|mra|tof|angio\w*|spectro\w*|svs|csi|"
              r"t2\*|t2star|t2_star|hemo|fieldmap|field_map|b0|calibration|cal|mip|sub|subtraction|pd|pdw")
FLAIR = _rx(r"flair|t2f|dark[-_ ]?fluid|darkfluid|tirm|fluid[-_ ]?attenuated")
T1 = re.compile(r"(?<![a-z0-9])(?:t1(?![0-9])|mprage|mp[-_ ]?rage|spgr|fspgr|bravo|tfl|vibe|ffe(?![a-z0-9]))")
T2 = re.compile(r"(?<![a-z0-9])(?:t2(?![0-9])|propeller)")
POST = _rx(r"post|postcontrast|post[-_ ]?contrast|c\+|\+c|gad|gd|gado|contrast|ce|t1c|t1ce|t1gd|t1\+c|"
           r"kontrast|km|mdc|enhanced|\+gd|t1post|t1_?post|t1c\+")
PRE = _rx(r"pre|precontrast|pre[-_ ]?contrast|native|nativ|nc|w/o|without|no[-_ ]?contrast")
NO_AGENT = {"", "none", "no", "n/a", "na", "0", "-"}


@dataclass
class Identification:
    """The modality chosen for one series and the evidence, in words."""

    modality: str
    reason: str


def _num(value: Any) -> float | None:
    try:
        if value is None or value == "":
            return None
        return float(value)
    except (TypeError, ValueError):
        return None


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return "\\".join(str(v) for v in value)
    return str(value)


def physics_class(tr: float | None, te: float | None, ti: float | None) -> tuple[str | None, str]:
    """Contrast weighting implied by TR/TE/TI in ms (None when they do not say)."""
    if tr is None or te is None:
        return None, "TR/TE missing"
    desc = f"TR={tr:g} TE={te:g}" + (f" TI={ti:g}" if ti is not None else "") + " ms"
    if ti is not None and ti >= 1500 and te >= 60:
        return "flair", f"{desc}: long TI with long TE (fluid-attenuated inversion recovery)"
    if te >= 60 and tr >= 1500 and (ti is None or ti < 300):
        return "t2", f"{desc}: long TR and long TE (T2-weighted)"
    if te <= 30 and tr <= 1000:
        return "t1", f"{desc}: short TR and short TE (T1-weighted)"
    if te <= 10 and ti is not None and 400 <= ti <= 1500:
        return "t1", f"{desc}: inversion-prepared gradient echo (MPRAGE-type T1)"
    return None, f"{desc}: weighting unclear"


def identify(tags: dict[str, Any]) -> Identification:
    """Identify one series from its DICOM tags (keyword -> value, as pydicom names them)."""
    desc = _text(tags.get("SeriesDescription"))
    proto = _text(tags.get("ProtocolName"))
    text = f"{desc} {proto}".lower()
    seqname = _text(tags.get("SequenceName")).lower()
    scanning = _text(tags.get("ScanningSequence")).upper()
    image_type = _text(tags.get("ImageType")).upper().split("\\")
    acq = _text(tags.get("MRAcquisitionType")).upper() or "?"
    agent = _text(tags.get("ContrastBolusAgent")).strip()
    tr, te, ti = (_num(tags.get(k)) for k in ("RepetitionTime", "EchoTime", "InversionTime"))
    named = f"SeriesDescription {desc!r}" + (f", ProtocolName {proto!r}" if proto and proto != desc else "")

    modality_tag = _text(tags.get("Modality")).upper()
    if modality_tag and modality_tag != "MR":
        return Identification(OTHER, f"Modality {modality_tag} (not MR)")
    if "LOCALIZER" in image_type:
        return Identification(OTHER, "ImageType LOCALIZER")
    if "DERIVED" in image_type:
        return Identification(OTHER, f"ImageType {'/'.join(image_type)} (derived, not acquired)")
    excluded = EXCLUDE.search(text)
    if excluded:
        return Identification(OTHER, f"{named} names {excluded.group(0)!r} (not a structural series)")
    if "EP" in scanning.split("\\") or seqname.lstrip("*").startswith("ep"):
        return Identification(OTHER, f"ScanningSequence {scanning or '?'} / SequenceName {seqname or '?'}: "
                                     "echo-planar (diffusion, perfusion or fMRI)")

    keyword = None
    for name, rx in (("flair", FLAIR), ("t1", T1), ("t2", T2)):
        m = rx.search(text)
        if m:
            keyword, kw_hit = name, m.group(0)
            break
    if keyword == "flair" and T1.search(text):  # T1-FLAIR: T1-weighted inversion recovery
        keyword, kw_hit = "t1", f"{T1.search(text).group(0)} {kw_hit}"
    if keyword is None and "IR" in scanning.split("\\") and ti is not None and ti >= 1500:
        keyword, kw_hit = "flair", "ScanningSequence IR"
    physics, physics_reason = physics_class(tr, te, ti)
    if keyword is not None:
        compatible = physics in (None, keyword) or (keyword == "flair" and physics == "t2" and ti is None)
        if not compatible:
            return Identification(OTHER, f"{named} says {keyword} ({kw_hit!r}) but {physics_reason}: "
                                         "conflicting, not used (name it with an override)")
        base = keyword
        reasons = [f"{named} -> {keyword} ({kw_hit!r})", physics_reason]
    elif physics is not None:
        base = physics
        reasons = [f"{named} names no modality", physics_reason, f"ScanningSequence {scanning or '?'}"]
    else:
        return Identification(OTHER, f"{named} names no modality; {physics_reason}")
    reasons.append(f"{acq} acquisition")

    if base == "t1":
        pre, post = PRE.search(text), POST.search(text)
        has_agent = agent.lower() not in NO_AGENT
        if pre:
            reasons.append(f"description says {pre.group(0)!r}: without contrast")
            base = "t1"
        elif has_agent or post:
            if has_agent:
                reasons.append(f"ContrastBolusAgent {agent!r}")
            if post:
                reasons.append(f"description says {post.group(0)!r}")
            base = "t1ce"
            reasons.append("=> contrast-enhanced T1")
        else:
            reasons.append("no ContrastBolusAgent and no post-contrast keyword")
    return Identification(base, "; ".join(r for r in reasons if r))


@dataclass
class Candidate:
    """A series that may fill a modality slot: its label (for messages), id, 3D flag."""

    key: str
    label: str
    modality: str
    is_3d: bool


def choose(candidates: Iterable[Candidate]) -> tuple[dict[str, Candidate], dict[str, str]]:
    """One series per modality: ({modality: chosen}, {modality: problem}) for missing/ambiguous ones.

    Several candidates are resolved only when exactly one is a 3D acquisition (the usual volumetric
    protocol beside thick-slice 2D views); anything else is ambiguous and needs an override.
    """
    by_mod: dict[str, list[Candidate]] = {m: [] for m in MODALITIES}
    for c in candidates:
        if c.modality in by_mod:
            by_mod[c.modality].append(c)
    chosen: dict[str, Candidate] = {}
    problems: dict[str, str] = {}
    for mod, cands in by_mod.items():
        if len(cands) == 1:
            chosen[mod] = cands[0]
            continue
        if not cands:
            problems[mod] = f"no series identified as {mod}"
            continue
        three_d = [c for c in cands if c.is_3d]
        if len(three_d) == 1:
            chosen[mod] = three_d[0]
            continue
        problems[mod] = (f"ambiguous {mod}: {len(cands)} series qualify ("
                         + ", ".join(c.label for c in cands) + ")")
    return chosen, problems
