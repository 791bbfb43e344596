"""Time `evaluate` on a 240x240x155 phantom pair against surface-distance (DeepMind) and MedPy.

All three run in the same process on the same arrays, interleaved and repeated (best time kept),
so the ratios hold on a busy machine even when absolute seconds do not. Values are compared with
MedPy, the reference of the official brats-evaluation: Dice and HD95 must agree to 1e-6.
surface-distance defines HD95 on surface elements (surfels), so its values differ by design; they
are recorded for information.

Usage: python benchmarks/metrics_bench.py [--seed 0] [--repeats 3] [--out benchmarks/results/metrics.json]
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from gliocascade.io import write_labels
from gliocascade.labels import REGIONS, labels_to_regions
from gliocascade.metrics import evaluate_arrays, evaluate_case, spacing_from_affine
from gliocascade.phantom import make_phantom


def make_pair(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(reference, prediction, affine): a BraTS-size phantom and a plausible imperfect prediction."""
    ph = make_phantom(seed)
    ref = ph.labels
    pred = np.roll(ref, (2, -1, 1), axis=(0, 1, 2))
    cross = ndimage.generate_binary_structure(3, 1)
    pred[ndimage.binary_dilation(pred == 4, cross) & (pred == 1)] = 4    # thicker enhancing rim
    pred[ndimage.binary_erosion(pred > 0, cross, iterations=2) != (pred > 0)] = 0  # thinner oedema
    return ref, pred, ph.affine


def ours(pred: np.ndarray, ref: np.ndarray, spacing) -> dict:
    row = evaluate_arrays(pred, ref, spacing)
    return {r: (row[f"dice_{r}"], row[f"hd95_{r}"]) for r in REGIONS}


def surface_distance_pkg(pred: np.ndarray, ref: np.ndarray, spacing) -> dict:
    import surface_distance as sd

    out = {}
    p_reg, r_reg = labels_to_regions(pred), labels_to_regions(ref)
    for i, r in enumerate(REGIONS):
        dists = sd.compute_surface_distances(r_reg[i], p_reg[i], spacing)
        out[r] = (sd.compute_dice_coefficient(r_reg[i], p_reg[i]), sd.compute_robust_hausdorff(dists, 95))
    return out


def medpy_pkg(pred: np.ndarray, ref: np.ndarray, spacing) -> dict:
    from medpy.metric.binary import dc, hd95

    out = {}
    p_reg, r_reg = labels_to_regions(pred), labels_to_regions(ref)
    for i, r in enumerate(REGIONS):
        out[r] = (dc(p_reg[i], r_reg[i]), hd95(p_reg[i], r_reg[i], voxelspacing=spacing))
    return out


def timed(fn, *args) -> tuple[float, dict]:
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "metrics.json")
    args = ap.parse_args()

    ref, pred, affine = make_pair(args.seed)
    spacing = spacing_from_affine(affine)
    times: dict[str, list[float]] = {"gliocascade_arrays": [], "gliocascade_evaluate_files": [],
                                     "surface_distance": [], "medpy": []}
    with tempfile.TemporaryDirectory() as tmp:
        write_labels(Path(tmp) / "ref.nii.gz", ref, affine)
        write_labels(Path(tmp) / "pred.nii.gz", pred, affine)
        for k in range(args.repeats):
            t, v_ours = timed(ours, pred, ref, spacing)
            times["gliocascade_arrays"].append(t)
            t, _ = timed(evaluate_case, Path(tmp) / "pred.nii.gz", Path(tmp) / "ref.nii.gz", "bench")
            times["gliocascade_evaluate_files"].append(t)
            t, v_sd = timed(surface_distance_pkg, pred, ref, spacing)
            times["surface_distance"].append(t)
            if k == 0:  # MedPy is slow: once is enough for its time and values
                t, v_medpy = timed(medpy_pkg, pred, ref, spacing)
                times["medpy"].append(t)
    best = {k: min(v) for k, v in times.items()}
    diff_medpy = {
        "dice": max(abs(v_ours[r][0] - v_medpy[r][0]) for r in REGIONS),
        "hd95": max(abs(v_ours[r][1] - v_medpy[r][1]) for r in REGIONS),
    }
    result = {
        "what": "Dice + HD95 for WT, TC, ET on one 240x240x155 phantom pair (1 mm); best of repeats",
        "shape": list(ref.shape),
        "seed": args.seed,
        "repeats": args.repeats,
        "seconds": {k: round(v, 4) for k, v in best.items()},
        "all_seconds": {k: [round(x, 4) for x in v] for k, v in times.items()},
        "speedup_vs_surface_distance": round(best["surface_distance"] / best["gliocascade_arrays"], 2),
        "speedup_vs_medpy": round(best["medpy"] / best["gliocascade_arrays"], 2),
        "evaluate_with_file_io_vs_surface_distance": round(best["surface_distance"] / best["gliocascade_evaluate_files"], 2),
        "max_abs_difference_to_medpy": diff_medpy,
        "values": {name: {r: {"dice": v[r][0], "hd95": v[r][1]} for r in REGIONS}
                   for name, v in (("gliocascade", v_ours), ("medpy", v_medpy), ("surface_distance", v_sd))},
        "machine": {"processor": platform.processor() or platform.machine(), "python": platform.python_version()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("seconds", "speedup_vs_surface_distance", "speedup_vs_medpy",
                                              "max_abs_difference_to_medpy")}, indent=2))


if __name__ == "__main__":
    main()
