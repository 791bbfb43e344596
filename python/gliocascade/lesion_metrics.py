"""Lesion-wise metrics as the BraTS challenges rank them, built on panoptica.

The BraTS 2023+ leaderboards score each connected lesion: panoptica splits every region into
connected components, matches prediction to reference lesions (maximum bipartite matching on
Dice > 1e-6) and averages Dice, HD95 and NSD over the matched pairs; a per-task parser then turns
panoptica's numbers into the published columns. This module rebuilds that chain in code, so a
gliocascade metrics row lines up with a leaderboard's:

* ``gli`` (and the other glioma-style tasks): panoptica's lesion-wise means as they are
  (``NaN`` when neither map holds a lesion, ``inf`` HD95 when only one does);
* ``mets``: means over the reference lesions of at least ``vol_threshold`` voxels-mm^3 (20), each
  unmatched large lesion and each false-positive lesion counting Dice 0, NSD 0 and HD95 373 mm;
  ``NaN`` when the reference has no large lesion.

Label values are read through :data:`gliocascade.labels.CONVENTIONS` and mapped onto the official
task values (1 NETC/NCR, 2 SNFH/ED, 3 ET, 4 RC), so 2019 maps (ET 4) are scored correctly.
The voxel-wise columns of :mod:`gliocascade.metrics` are separate and keep the exact diagonal.
"""
from __future__ import annotations

import contextlib
import io
import logging
import warnings
from dataclasses import dataclass, field

import numpy as np

from .labels import CONVENTIONS, convert_labels
from .geometry import bounding_box

log = logging.getLogger(__name__)

# The official BraTS task maps are labelled as the 2024 row of the label table (1 NCR/NETC, 2 ED/SNFH,
# 3 ET, 4 RC); the evaluator's groups take their values from it.
OFFICIAL_CONVENTION = "2024"
OFFICIAL_VALUES = dict(CONVENTIONS[OFFICIAL_CONVENTION])
# The official parsers' penalty HD95 for a lesion with no counterpart (mm, a rounded diagonal).
PENALTY_HD95 = 373.0
# Matching: any overlap (Dice above this) makes a pair.
MATCHING_DICE = 0.000001
# Extra voxels kept around the union's bounding box: borders and components are those of the full image.
CROP_MARGIN = 2
LESION_METRICS = ("lesionwise_dsc_mean", "lesionwise_hd95_mean", "lesionwise_nsd_mean",
                  "all_instance_tp", "all_instance_fp", "all_instance_fn")


@dataclass(frozen=True)
class LesionTask:
    """One challenge task: its regions (name -> convention keys, merged) and how results are parsed."""

    regions: dict[str, tuple[str, ...]]
    parser: str  # "seg" or "mets"
    vol_threshold: float = 20.0
    merged: frozenset = field(default_factory=lambda: frozenset({"tc", "wt"}))


_GLIOMA = {"netc": ("NCR",), "snfh": ("ED",), "et": ("ET",), "rc": ("RC",),
           "tc": ("NCR", "ET"), "wt": ("NCR", "ED", "ET")}
TASKS = {
    "gli": LesionTask(_GLIOMA, "seg"),
    "mets": LesionTask({"et": ("ET",), "rc": ("RC",), "tc": ("NCR", "ET"), "wt": ("NCR", "ED", "ET")}, "mets"),
    "goat": LesionTask({"et": ("ET",), "tc": ("NCR", "ET"), "wt": ("NCR", "ED", "ET")}, "seg"),
}


def task_regions(task: str, *conventions: str) -> list[str]:
    """The task's regions whose labels exist in at least one of the conventions (RC only in 2024)."""
    keys = set().union(*(CONVENTIONS[str(c)].keys() for c in conventions))
    return [r for r, need in TASKS[task].regions.items() if set(need) <= keys]


def lesion_columns(task: str, *conventions: str) -> list[str]:
    """Column names of the lesion-wise metrics, in their stable order."""
    return [f"{m}_{r}" for r in task_regions(task, *conventions) for m in LESION_METRICS]


def to_official(labels: np.ndarray, convention: str) -> np.ndarray:
    """A validated map of ``convention`` relabelled with the official task values: those of the 2024
    row of the label table (a 2015 map's non-enhancing tumour joins the necrotic core there)."""
    return convert_labels(np.asarray(labels), convention, OFFICIAL_CONVENTION)


def build_evaluator(task: str, regions: list[str]):
    """The panoptica evaluator of the official configuration of ``task``, restricted to ``regions``."""
    from panoptica import ConnectedComponentsInstanceApproximator, InputType, MaxBipartiteMatching, Metric, \
        Panoptica_Evaluator
    from panoptica.utils.edge_case_handling import EdgeCaseHandler, EdgeCaseResult, MetricZeroTPEdgeCaseHandling
    from panoptica.utils.label_group import LabelGroup, LabelMergeGroup
    from panoptica.utils.segmentation_class import SegmentationClassGroups

    spec = TASKS[task]

    def zero_tp(result: EdgeCaseResult) -> MetricZeroTPEdgeCaseHandling:
        return MetricZeroTPEdgeCaseHandling(no_instances_result=EdgeCaseResult.NAN, empty_prediction_result=result,
                                            empty_reference_result=result, normal=result)

    groups = {}
    for name in regions:
        values = [OFFICIAL_VALUES[k] for k in spec.regions[name]]
        kind = LabelMergeGroup if name in spec.merged else LabelGroup
        groups[name] = kind(values, single_instance=False)
    # Overlapping groups (tc, wt) are intended; panoptica prints a notice about them on stdout.
    with contextlib.redirect_stdout(io.StringIO()) as notice:
        class_groups = SegmentationClassGroups(groups)
    if notice.getvalue().strip():
        log.debug("panoptica: %s", notice.getvalue().strip())
    edge = EdgeCaseHandler(listmetric_zeroTP_handling={
        Metric.DSC: zero_tp(EdgeCaseResult.ZERO), Metric.NSD: zero_tp(EdgeCaseResult.ZERO),
        Metric.HD95: zero_tp(EdgeCaseResult.INF)}, empty_list_std=EdgeCaseResult.NAN)
    metrics = [Metric.DSC, Metric.NSD, Metric.HD95]
    return Panoptica_Evaluator(
        expected_input=InputType.SEMANTIC,
        instance_approximator=ConnectedComponentsInstanceApproximator(),
        instance_matcher=MaxBipartiteMatching(matching_metric=Metric.DSC, matching_threshold=MATCHING_DICE),
        edge_case_handler=edge, segmentation_class_groups=class_groups,
        instance_metrics=metrics, global_metrics=metrics, decision_metric=None, decision_threshold=None,
        log_times=False, save_group_times=False, verbose=False)


def _value(x) -> float:
    return float("nan") if x is None else float(x)


def _seg_row(result: dict) -> dict[str, float]:
    """The glioma-style parser: panoptica's lesion-wise means and instance counts as they are."""
    return {"lesionwise_dsc_mean": _value(result.get("sq_dsc")),
            "lesionwise_hd95_mean": _value(result.get("sq_hd95")),
            "lesionwise_nsd_mean": _value(result.get("sq_nsd")),
            "all_instance_tp": _value(result.get("tp")), "all_instance_fp": _value(result.get("fp")),
            "all_instance_fn": _value(result.get("fn"))}


def _mets_row(result: dict, vol_threshold: float) -> dict[str, float]:
    """The metastases parser: means over large reference lesions, misses and false positives penalised."""
    row = _seg_row(result)
    dsc: list[float] = []
    nsd: list[float] = []
    hd95: list[float] = []
    large_present = False
    for lesion in result.get("reference_instances", []):
        if lesion.get("volume") is None or lesion["volume"] < vol_threshold:
            continue
        large_present = True
        if lesion.get("is_matched") == 1:
            dsc.append(lesion.get("sq_dsc"))
            nsd.append(lesion.get("sq_nsd"))
            hd95.append(lesion.get("sq_hd95"))
        else:
            dsc.append(0.0)
            nsd.append(0.0)
            hd95.append(PENALTY_HD95)
    n_fp = int(result.get("fp", 0) or 0)
    dsc += [0.0] * n_fp
    nsd += [0.0] * n_fp
    hd95 += [PENALTY_HD95] * n_fp
    if int(result.get("n_ref_instances", 0) or 0) == 0 or not large_present:
        nan = float("nan")
        row.update(lesionwise_dsc_mean=nan, lesionwise_hd95_mean=nan, lesionwise_nsd_mean=nan)
        return row
    finite = [v for v in hd95 if v is not None and not np.isinf(v)]
    row.update(lesionwise_dsc_mean=float(np.mean(dsc)),
               lesionwise_hd95_mean=float(np.mean(finite)) if finite else PENALTY_HD95,
               lesionwise_nsd_mean=float(np.mean(nsd)))
    return row


def lesion_wise_metrics(pred_labels: np.ndarray, ref_labels: np.ndarray, spacing: tuple[float, ...],
                        task: str = "gli", pred_convention: str = "2019",
                        ref_convention: str | None = None, official_spacing: bool = True) -> dict[str, float]:
    """Lesion-wise Dice, HD95, NSD and lesion counts per region, keyed ``<official column>_<region>``.

    Both maps are validated label maps of their conventions on one grid (``spacing`` in mm).
    Panoptica runs on the union's bounding box (plus a margin): components, matches and distances
    are those of the full image, at a fraction of the cost.

    ``official_spacing`` pairs the spacing with the axes as brats-evaluation 0.0.10 does: it reads
    files through SimpleITK, whose arrays are (z, y, x) while the spacing stays (x, y, z), so each
    distance is scaled by the reversed spacing. On isotropic grids (BraTS space) this changes
    nothing; on anisotropic ones it is what the leaderboards publish. False scales each axis by its
    own spacing.
    """
    if task not in TASKS:
        raise ValueError(f"unknown lesion task {task!r} (use {', '.join(TASKS)})")
    ref_convention = pred_convention if ref_convention is None else ref_convention
    pred = to_official(np.asarray(pred_labels), pred_convention)
    ref = to_official(np.asarray(ref_labels), ref_convention)
    if pred.shape != ref.shape:
        raise ValueError(f"label map shapes differ: {pred.shape} vs {ref.shape}")
    box = bounding_box((pred > 0) | (ref > 0), margin=CROP_MARGIN)
    if box is None:  # both empty: any small empty pair gives the same (no-instance) results
        box = tuple(slice(0, min(3, n)) for n in pred.shape)
    regions = task_regions(task, pred_convention, ref_convention)
    from panoptica import disable_citation_reminder

    disable_citation_reminder()  # panoptica prints a banner on first use; library code stays quiet
    evaluator = build_evaluator(task, regions)
    axes_spacing = tuple(float(s) for s in (spacing[::-1] if official_spacing else spacing))
    with warnings.catch_warnings():  # NSD's 0.5 mm tolerance is the official one; panoptica warns about it
        warnings.filterwarnings("ignore", message="The threshold is set to 0.5", category=UserWarning)
        results = evaluator.evaluate(np.ascontiguousarray(pred[box]), np.ascontiguousarray(ref[box]),
                                     voxelspacing=axes_spacing)
    spec = TASKS[task]
    row: dict[str, float] = {}
    for region in regions:
        data = results[region].to_dict(True)
        values = _mets_row(data, spec.vol_threshold) if spec.parser == "mets" else _seg_row(data)
        for metric in LESION_METRICS:
            row[f"{metric}_{region}"] = values[metric]
    return row
