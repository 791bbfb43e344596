"""How well does the co-registration check tell a right result from a broken one? Measured on the corpus.

For every generated corpus exam (``gliocascade.native_corpus``; default seeds 0-23) with exact
co-registration truth (the two skull-stripped sources: their modalities share one grid), each
moving modality (T1, T2, FLAIR) is scored with the check preprocessing applies
(``preprocess.edge_correlation`` between the T1Gd and the modality, over the brain, on the
registration copies) at:

- the truth (the generated poses): what a correct registration gives;
- the truth deliberately broken: rotated by 4, 8, 15 degrees about the brain centre (random axis),
  shifted by 4, 8, 15 mm (random direction);
- input-level breaks, each registered as preprocessing would (``registration.register``): the
  modality's voxels mirrored left-right under an unchanged header, and the modality swapped for
  the other subject's;
- the mirror check (``preprocess.mirror_margin``: the edge correlation as given minus that of the
  image mirrored and registered again) for the correct modality and for the mirrored one;
- every edge correlation again over the deep brain only (``preprocess.deep_brain``: 10 mm or more
  inside its outline, ``<kind>_deep``), where another subject's stripped brain no longer matches.

The check is a pure function of the images and a transform, so every score is recomputed here;
thresholds chosen on seeds 0-11 are then tested on seeds 12-23. The raw source (with skull) has
co-registration truth only relative to its scanner alignment and is measured separately (to come).

    python benchmarks/registration_qc.py [--data ../shared/data] [--seeds 0 1 ...] [--coarsen 2]

Results: ``benchmarks/results/registration_qc.json`` (scores per exam, the distributions per kind,
the threshold that separates them best, which breaks it catches, the mirror check's margins, and
under ``deep_check`` the deep-brain check against another subject's modality). ``--swap-only``
measures that last part alone, in a quarter of the CPU time (``registration_qc_swap.json``).
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
BREAK_DEG = (4.0, 8.0, 15.0)
BREAK_MM = (4.0, 8.0, 15.0)
MOVING = ("t1", "t2", "flair")
CALIBRATION_SEEDS = range(0, 12)
BROKEN = ("rot4", "rot8", "rot15", "shift4", "shift8", "shift15")
REQUIRED = ("rot8", "rot15", "shift8", "shift15", "mirror", "swap")  # must be caught; 4 deg / 4 mm reported


def _unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal(3)
    return v / np.linalg.norm(v)


def broken(truth: sitk.Transform, centre: tuple[float, float, float], rng: np.random.Generator, kind: str,
           size: float) -> sitk.Transform:
    """``truth`` after a rigid error of ``size`` degrees (about ``centre``) or mm, applied in the fixed image."""
    error = sitk.VersorRigid3DTransform()
    error.SetCenter(centre)
    if kind == "rot":
        error.SetRotation(tuple(_unit(rng)), float(np.deg2rad(size)))
    else:
        error.SetTranslation(tuple(float(x) for x in _unit(rng) * size))
    return sitk.CompositeTransform([truth, error])


def score_exam(exam, other_paths: dict[str, Path], swap_only: bool = False) -> dict:
    """Every kind of score for one exam's moving modalities (``swap_only``: the truth and the swapped
    modality, over the brain and the deep brain; a quarter of the CPU time)."""
    from gliocascade import registration as reg
    from gliocascade.preprocess import (affine_parts, deep_brain, edge_correlation, edge_map, mirror_margin,
                                        mirrored, optimality_gain, region_centre, registration_copy,
                                        restart_off_optimum)

    read = {m: sitk.Cast(sitk.ReadImage(str(p)), sitk.sitkFloat32) for m, p in exam.paths.items()}
    small = {m: registration_copy(img) for m, img in read.items()}
    fixed = small["t1ce"]
    brain = sitk.GetArrayFromImage(fixed) > 0  # skull-stripped: the brain is the non-zero region
    with reg.fixed_threads():
        edges = edge_map(fixed)
    centre = region_centre(fixed, brain)
    deep = deep_brain(brain, fixed)  # >= 10 mm inside: the outline, which stripped brains share, left out
    rng = np.random.default_rng(exam.spec.seed + 7919)
    params = reg.RegistrationParams()
    # the head's left-right axis in the native T1Gd: the source's (BraTS space: x) carried by the pose
    head_lr_axis = affine_parts(exam.source_to_native("t1ce"))[0][:, 0]
    out = {}
    for m in MOVING:
        truth = exam.coreg_truth(m)
        s = {"truth": edge_correlation(fixed, small[m], truth, brain, edges),
             "truth_deep": edge_correlation(fixed, small[m], truth, deep, edges)}
        if swap_only:
            other = registration_copy(sitk.Cast(sitk.ReadImage(str(other_paths[m])), sitk.sitkFloat32))
            found = restart_off_optimum(fixed, other, reg.register(fixed, other, params=params), brain, params,
                                        edges)[0].transform
            s["swap"] = edge_correlation(fixed, other, found, brain, edges)
            s["swap_deep"] = edge_correlation(fixed, other, found, deep, edges)
            out[m] = {k: round(float(v), 4) for k, v in s.items()}
            continue
        s["truth_gain"] = optimality_gain(fixed, small[m], truth, brain, edges)
        for kind, sizes in (("rot", BREAK_DEG), ("shift", BREAK_MM)):
            for size in sizes:
                wrong = broken(truth, centre, rng, kind, size)
                s[f"{kind}{size:g}"] = edge_correlation(fixed, small[m], wrong, brain, edges)
                s[f"{kind}{size:g}_deep"] = edge_correlation(fixed, small[m], wrong, deep, edges)
                s[f"{kind}{size:g}_gain"] = optimality_gain(fixed, small[m], wrong, brain, edges)
        for kind, moving in (("registered", small[m]), ("mirror", mirrored(small[m])),
                             ("swap", registration_copy(sitk.Cast(sitk.ReadImage(str(other_paths[m])),
                                                                  sitk.sitkFloat32)))):
            # as preprocessing registers it: the robust start, then one restart when it ended off its optimum
            result, margin = restart_off_optimum(fixed, moving, reg.register(fixed, moving, params=params), brain,
                                                 params, edges)
            found = result.transform
            s[kind] = edge_correlation(fixed, moving, found, brain, edges)
            s[f"{kind}_deep"] = edge_correlation(fixed, moving, found, deep, edges)
            s[f"{kind}_restarted"] = int("restart" in result.extra)
            if kind == "registered":
                s["registered_gain"] = -margin
            if kind != "swap":
                s[f"{kind}_mirror_margin"] = mirror_margin(fixed, moving, found, s[kind], brain, head_lr_axis,
                                                           params, edges)
        out[m] = {k: round(float(v), 4) for k, v in s.items()}
    return out


def best_threshold(passing: list[float], failing: list[float]) -> dict:
    """The threshold midway in the widest gap that passes every ``passing`` score and refuses the most failing."""
    lowest_pass = min(passing)
    caught = [f for f in failing if f < lowest_pass]
    below = max(caught) if caught else lowest_pass - 0.05
    return {"threshold": round((lowest_pass + below) / 2, 4), "lowest_passing": round(lowest_pass, 4),
            "highest_caught": round(below, 4), "caught": len(caught), "of": len(failing)}


def summarise_swaps(exams: list[dict]) -> dict:
    """A ``--swap-only`` run: the deep threshold midway between the lowest correct deep score and the
    highest deep score of a swapped modality that passes the whole-brain check (the only swaps the
    deep check sees) on the calibration seeds, and what it decides on the held-out ones."""
    from gliocascade.preprocess import MIN_EDGE_CORR_COREG, MIN_EDGE_CORR_DEEP

    rows = lambda group: [e["scores"][m] for e in group for m in MOVING]  # noqa: E731
    calib = rows([e for e in exams if e["seed"] in CALIBRATION_SEEDS])
    held = rows([e for e in exams if e["seed"] not in CALIBRATION_SEEDS])
    seen = lambda rs: [r["swap_deep"] for r in rs if r["swap"] >= MIN_EDGE_CORR_COREG]  # noqa: E731
    doc = {"whole_brain_threshold": MIN_EDGE_CORR_COREG, "deep_threshold_in_use": MIN_EDGE_CORR_DEEP,
           "distributions": {k: {"min": round(min(r[k] for r in rows(exams)), 4),
                                 "max": round(max(r[k] for r in rows(exams)), 4), "n": len(rows(exams))}
                             for k in ("truth", "truth_deep", "swap", "swap_deep")}}
    for name, group in (("calibration", calib), ("held_out", held)):
        if group:
            doc[name] = {"lowest_correct_deep": round(min(r["truth_deep"] for r in group), 4),
                         "swaps_passing_whole_brain": len(seen(group)),
                         "highest_deep_of_those": round(max(seen(group), default=float("nan")), 4),
                         "correct_refused": sum(r["truth"] < MIN_EDGE_CORR_COREG or r["truth_deep"] < MIN_EDGE_CORR_DEEP
                                                for r in group),
                         "swaps_caught": f"{sum(r['swap'] < MIN_EDGE_CORR_COREG or r['swap_deep'] < MIN_EDGE_CORR_DEEP for r in group)}/{len(group)}"}
    if calib and seen(calib):
        low, high = doc["calibration"]["lowest_correct_deep"], doc["calibration"]["highest_deep_of_those"]
        doc["calibrated_deep_threshold"] = round((low + high) / 2, 4)
    return doc


def summarise(exams: list[dict]) -> dict:
    """Distributions per kind, thresholds from the calibration seeds, their catch rates on the held-out ones."""
    scored = [k for k in exams[0]["scores"]["t1"]
              if "margin" not in k and "gain" not in k and not k.endswith("_restarted")]
    kinds = [k for k in scored if not k.endswith("_deep")]
    dist = {k: [e["scores"][m][k] for e in exams for m in MOVING] for k in scored}
    calib = [e for e in exams if e["seed"] in CALIBRATION_SEEDS]
    held = [e for e in exams if e["seed"] not in CALIBRATION_SEEDS]
    pick = lambda group, k: [e["scores"][m][k] for e in group for m in MOVING]  # noqa: E731
    summary = {"distributions": {k: {"min": round(min(v), 4), "median": round(float(np.median(v)), 4),
                                     "max": round(max(v), 4), "n": len(v)} for k, v in dist.items()}}
    if calib:
        passing = pick(calib, "truth") + pick(calib, "registered")
        failing = [s for k in REQUIRED for s in pick(calib, k)]
        chosen = best_threshold(passing, failing)
        t = chosen["threshold"]
        summary["calibration"] = chosen
        test = held or calib
        summary["held_out"] = {
            "seeds": sorted({e["seed"] for e in test}),
            "refused_correct": sum(s < t for s in pick(test, "truth") + pick(test, "registered")),
            "caught": {k: f"{sum(s < t for s in pick(test, k))}/{len(pick(test, k))}"
                       for k in kinds if k not in ("truth", "registered")}}
        if "truth_deep" in scored:  # the deep-brain score against another subject's image
            deep = best_threshold(pick(calib, "truth_deep") + pick(calib, "registered_deep"), pick(calib, "swap_deep"))
            summary["deep_calibration"] = deep
            summary["deep_held_out"] = {
                "refused_correct": sum(s < deep["threshold"] for s in pick(test, "truth_deep") + pick(test, "registered_deep")),
                "swap_caught": f"{sum(s < deep['threshold'] for s in pick(test, 'swap_deep'))}/{len(pick(test, 'swap_deep'))}"}
    summary["preprocess_checks"] = {"calibration_seeds": as_preprocess_judges(calib),
                                    "held_out_seeds": as_preprocess_judges(held)} if calib and held \
        else as_preprocess_judges(exams)
    if calib and "truth_gain" in scored_all(exams):
        summary["optimum_calibration"] = optimum_calibration(calib)
    return summary


def scored_all(exams: list[dict]) -> list[str]:
    return list(exams[0]["scores"]["t1"])


def optimum_calibration(calib: list[dict]) -> dict:
    """The optimum check's threshold as the calibration seeds place it: correct results (truth and
    preprocessing's own) against results broken by 8 degrees or more or 8 mm that the similarity
    check lets through (the only broken results the optimum check sees). Its score is the result's
    edge correlation minus its best neighbour's, i.e. minus the gain."""
    from gliocascade.preprocess import MIN_EDGE_CORR_COREG

    rows = [e["scores"][m] for e in calib for m in MOVING]
    passing = [-r[f"{k}_gain"] for r in rows for k in ("truth", "registered")]
    failing = [-r[f"{k}_gain"] for r in rows for k in ("rot8", "rot15", "shift8", "shift15")
               if r[k] >= MIN_EDGE_CORR_COREG]
    return best_threshold(passing, failing)


def as_preprocess_judges(exams: list[dict]) -> dict:
    """What preprocessing's own checks decide, with the thresholds it uses: the similarity threshold,
    the deep-brain check (the corpus here is skull-stripped, so preprocessing runs it), then the
    optimum and mirror checks; a result is refused when any of them fails."""
    from gliocascade.preprocess import MIN_EDGE_CORR_COREG, MIN_EDGE_CORR_DEEP, MIN_MIRROR_MARGIN, MIN_OPTIMUM_MARGIN

    rows = [e["scores"][m] for e in exams for m in MOVING]
    refused = lambda r, kind: (r[kind] < MIN_EDGE_CORR_COREG  # noqa: E731
                               or r.get(f"{kind}_deep", 1.0) < MIN_EDGE_CORR_DEEP
                               or r.get(f"{kind}_mirror_margin", 1.0) < MIN_MIRROR_MARGIN
                               or -r.get(f"{kind}_gain", -1.0) < MIN_OPTIMUM_MARGIN)
    margins = [r["registered_mirror_margin"] for r in rows]
    return {"seeds": sorted({e["seed"] for e in exams}), "modality_results": len(rows),
            "similarity_threshold": MIN_EDGE_CORR_COREG, "deep_threshold": MIN_EDGE_CORR_DEEP,
            "mirror_threshold": MIN_MIRROR_MARGIN, "optimum_threshold": MIN_OPTIMUM_MARGIN,
            "correct_refused": f"{sum(refused(r, 'registered') or refused(r, 'truth') for r in rows)}/{len(rows)}",
            "correct_mirror_margin": {"min": round(min(margins), 4), "median": round(float(np.median(margins)), 4)},
            "mirrored_caught": f"{sum(refused(r, 'mirror') for r in rows)}/{len(rows)}",
            "mirrored_caught_by_the_mirror_check": sum(r["mirror"] >= MIN_EDGE_CORR_COREG
                                                       and r["mirror_mirror_margin"] < MIN_MIRROR_MARGIN for r in rows),
            "swap_caught": f"{sum(refused(r, 'swap') for r in rows)}/{len(rows)}",
            "restarted_off_optimum": {k: int(sum(r.get(f"{k}_restarted", 0) for r in rows)) for k in ("registered", "mirror")},
            "optimality_gain": {k: {"min": round(min(r[f"{k}_gain"] for r in rows), 4),
                                    "max": round(max(r[f"{k}_gain"] for r in rows), 4)}
                                for k in ("truth", "registered", "rot4", "rot8", "rot15", "shift4", "shift8",
                                          "shift15") if f"{k}_gain" in rows[0]},
            "broken_caught_by_similarity_alone": {k: f"{sum(r[k] < MIN_EDGE_CORR_COREG for r in rows)}/{len(rows)}"
                                                  for k in BROKEN},
            "broken_caught": {k: f"{sum(refused(r, k) for r in rows)}/{len(rows)}" for k in BROKEN}}


def main() -> None:
    from gliocascade import native_corpus as nc

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("GLIOCASCADE_TEST_DATA",
                                                                     ROOT.parent / "shared" / "data")))
    ap.add_argument("--seeds", type=int, nargs="*", default=list(range(24)))
    ap.add_argument("--coarsen", type=float, default=2.0, help="in-plane matrix shrink of the generated exams")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "registration_qc.json")
    ap.add_argument("--summarise-only", action="store_true", help="recompute the summary of an existing results file")
    ap.add_argument("--swap-only", action="store_true",
                    help="score only the truth and another subject's modality (whole and deep brain); default "
                         "results file registration_qc_swap.json")
    args = ap.parse_args()
    if args.swap_only and args.results == ap.get_default("results"):
        args.results = args.results.with_name("registration_qc_swap.json")
    if args.summarise_only:
        doc = json.loads(args.results.read_text())
        specs = nc.corpus_specs([e["seed"] for e in doc["exams"]],
                                [n for n in nc.SOURCE_NAMES if nc.SOURCE_SKULL_STRIPPED[n]])
        write_results(args.results, doc["coarsen"], specs, doc["exams"], doc.get("swap_only", False))
        return
    if not (args.data / "brats_space").is_dir():
        raise SystemExit(f"skipped: {args.data / 'brats_space'} not found (the corpus sources)")
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    stripped = [n for n in nc.SOURCE_NAMES if nc.SOURCE_SKULL_STRIPPED[n]]
    sources = {n: nc.load_source(args.data, n) for n in stripped}
    specs = nc.corpus_specs(args.seeds, stripped)
    exams, others = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for spec in specs:
            t0 = time.process_time()
            images, is_stripped = sources[spec.source]
            exam = nc.make_exam(spec, images, tmp / spec.exam_id, args.coarsen, skull_stripped=is_stripped)
            other_name = next(n for n in stripped if n != spec.source)
            if other_name not in others:  # the other subject, in a pose of its own
                others[other_name] = nc.make_exam(nc.exam_spec(1000 + stripped.index(other_name), other_name),
                                                  sources[other_name][0], tmp / f"other{len(others)}", args.coarsen,
                                                  skull_stripped=True)
            row = {"exam_id": spec.exam_id, "seed": spec.seed, "source": spec.source,
                   "scores": score_exam(exam, others[other_name].paths, args.swap_only), "cpu_s": 0.0}
            row["cpu_s"] = round(time.process_time() - t0, 1)
            exams.append(row)
            print(json.dumps(row), flush=True)
            # after each exam: a stopped run keeps its part
            write_results(args.results, args.coarsen, specs, exams, args.swap_only)


def write_results(path: Path, coarsen: float, specs: list, exams: list[dict], swap_only: bool = False) -> None:
    """The results file: poses, per-exam scores, distributions, the calibrated threshold and its catches."""
    from gliocascade import native_corpus as nc

    doc = {"what": "edge correlation of the co-registration check (T1Gd vs T1/T2/FLAIR over the brain) at the "
                   "truth, at broken truths and after input-level breaks; generated corpus exams from the two "
                   "skull-stripped sources (exact truth)",
           "coarsen": coarsen, "current_threshold": 0.40, "required_catches": list(REQUIRED),
           "calibration_seeds": list(CALIBRATION_SEEDS), "poses": nc.pose_table(specs[:len(exams)]),
           "exams": exams, **(summarise_swaps(exams) if swap_only else summarise(exams))}
    if not swap_only:  # a full run scores the swaps too: the deep check's own summary, from the same rows
        doc["deep_check"] = summarise_swaps(exams)
    if swap_only:
        doc["swap_only"] = True
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
