"""QC flags of a cohort's cases: the few conditions that send a reader to a case page before trusting it.

Flags are computed from arrays and numbers only (no files), so each condition can be tested on
label maps made in a test. A case is flagged when a QC check was overridden, its prediction is
empty, its whole tumour exceeds 300 mL, it has more than 20 connected components of at least 10
voxels, its WT Dice or WT volume lies beyond 1.5 IQR of the cohort (cohorts of 8 or more), or a
step failed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from scipy import ndimage

MAX_WT_ML = 300.0
MAX_COMPONENTS = 20
MIN_COMPONENT_VOXELS = 10
MIN_COHORT_FOR_OUTLIERS = 8
IQR_FACTOR = 1.5
STRUCTURE_26 = np.ones((3, 3, 3), dtype=bool)


@dataclass(frozen=True)
class TumourFacts:
    """What the flags need to know about one label map."""

    wt_ml: float
    n_components: int        # 26-connected components of the whole tumour, any size
    n_large_components: int  # of them, those of at least MIN_COMPONENT_VOXELS voxels


def tumour_facts(labels: np.ndarray, voxel_ml: float) -> TumourFacts:
    """Whole-tumour volume and 26-connected component counts of a label map."""
    tumour = np.asarray(labels) > 0
    components, n = ndimage.label(tumour, structure=STRUCTURE_26)
    sizes = np.bincount(components.ravel())[1:] if n else np.zeros(0, dtype=int)
    return TumourFacts(float(tumour.sum()) * voxel_ml, int(n), int((sizes >= MIN_COMPONENT_VOXELS).sum()))


def case_flags(facts: TumourFacts | None, overridden: Sequence[str] = (), failure: str | None = None,
               reference_ok: bool | None = None) -> list[str]:
    """The flags of one case from its own facts: overridden QC checks, emptiness, size, fragmentation,
    failure, and an implausible reference (``reference_ok`` False: its metrics mean little)."""
    flags = [f"QC overridden: {o}" for o in overridden]
    if failure:
        flags.append(f"failed: {failure}")
    if reference_ok is False:
        flags.append("reference failed QC (qc_reference 0)")
    if facts is not None:
        if facts.wt_ml == 0:
            flags.append("empty prediction")
        if facts.wt_ml > MAX_WT_ML:
            flags.append(f"WT {facts.wt_ml:.1f} mL > {MAX_WT_ML:.0f} mL")
        if facts.n_large_components > MAX_COMPONENTS:
            flags.append(f"{facts.n_large_components} components of >= {MIN_COMPONENT_VOXELS} voxels "
                         f"(> {MAX_COMPONENTS})")
    return flags


def outliers(values: Mapping[str, float], what: str, min_cases: int = MIN_COHORT_FOR_OUTLIERS) -> dict[str, str]:
    """Case id -> flag for values beyond 1.5 IQR of the cohort's quartiles (none below ``min_cases`` values)."""
    known = {k: float(v) for k, v in values.items() if v is not None and not math.isnan(float(v))}
    if len(known) < min_cases:
        return {}
    q1, q3 = np.percentile(list(known.values()), [25, 75])
    lo, hi = q1 - IQR_FACTOR * (q3 - q1), q3 + IQR_FACTOR * (q3 - q1)
    return {k: f"{what} outlier ({v:.4g} outside {lo:.4g} to {hi:.4g})" for k, v in known.items()
            if v < lo or v > hi}


def cohort_flags(case_flag_lists: Mapping[str, list[str]], wt_dice: Mapping[str, float],
                 wt_ml: Mapping[str, float]) -> dict[str, list[str]]:
    """Every case's own flags plus the cohort outlier flags on WT Dice and WT volume."""
    merged = {k: list(v) for k, v in case_flag_lists.items()}
    for extra in (outliers(wt_dice, "WT Dice"), outliers(wt_ml, "WT volume (mL)")):
        for case_id, flag in extra.items():
            merged.setdefault(case_id, []).append(flag)
    return merged


def overridden_checks(provenance: Mapping[str, Mapping]) -> list[str]:
    """The QC blocks (DESIGN's provenance QC block) whose decision is ``overridden``, as one line each."""
    lines = []
    for step, record in provenance.items():
        qc = record.get("qc") if isinstance(record, Mapping) else None
        if isinstance(qc, Mapping) and qc.get("decision") == "overridden":
            failed = [name for name, c in (qc.get("checks") or {}).items()
                      if isinstance(c, Mapping) and c.get("passed") is False]
            reasons = "; ".join(str(r) for r in qc.get("reasons") or [])
            lines.append(f"{step}" + (f" ({', '.join(failed)})" if failed else "") + (f": {reasons}" if reasons else ""))
    return lines
