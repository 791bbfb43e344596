"""Preprocessing on the generated native corpus: registration error against known truth, CPU seconds.

Every exam of ``gliocascade.native_corpus`` (default seeds 0-23, sources round-robin) is written at
full size (or ``--coarsen``), preprocessed with the default backend, and measured: per modality the
mean and max target registration error over R0's brain of the BraTS -> native chain against the
truth (R0, what preprocessing finds for the unposed source, composed with the generated pose; for
the raw exam with skull the co-registration part is relative to its own scanner alignment), the
brain-mask Dice against R0's mask, the QC scores and the start each registration took. For the
stripped sources, whose modalities share one grid, the co-registrations alone are also measured
against their exact truth (the generated poses), free of the atlas step's and R0's errors. Results,
with the pose table and a summary (per input kind, per pose and slice-thickness bin), go to
``benchmarks/results/registration_corpus.json``; ``--summarise FILE`` recomputes only the summary.

    python benchmarks/preprocess_corpus_bench.py [--data ../shared/data] [--seeds 0 1 ...] [--coarsen 1]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

from gliocascade import native_corpus as nc  # noqa: E402
from gliocascade.errors import InputError  # noqa: E402
from gliocascade.io import MODALITIES  # noqa: E402
from gliocascade.preprocess import MOVING, preprocess_case  # noqa: E402
from gliocascade.provenance import package_versions  # noqa: E402
from gliocascade.registration import transform_points  # noqa: E402
from gliocascade.resample import compose  # noqa: E402


def chains(out: Path) -> dict[str, sitk.Transform]:
    """BraTS points -> native points of every modality, from what preprocess wrote."""
    to_t1ce = sitk.ReadTransform(str(out / "transforms" / "brats_to_native.tfm"))
    return {"t1ce": to_t1ce, **{m: compose(coreg, to_t1ce) for m, coreg in coregistrations(out).items()}}


def coregistrations(out: Path) -> dict[str, sitk.Euler3DTransform]:
    """Native T1Gd points -> native points of each moving modality, from the provenance preprocess wrote."""
    prov = json.loads((out / "provenance_preprocess.json").read_text())
    found = {}
    for m in MOVING:
        rec = prov["registration_results"][m]
        found[m] = sitk.Euler3DTransform()
        found[m].SetFixedParameters(rec["fixed_parameters"])
        found[m].SetParameters(rec["parameters"])
    return found


def write_source(images: dict[str, sitk.Image], folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {m: folder / f"{m}.nii.gz" for m in MODALITIES}
    for m, p in paths.items():
        sitk.WriteImage(images[m], str(p))
    return paths


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / max(a.sum() + b.sum(), 1))


def measure_exam(spec: nc.ExamSpec, source: tuple, r0_dir: Path, work: Path, atlas: Path, coarsen: float) -> dict:
    images, stripped = source
    exam = nc.make_exam(spec, images, work / spec.exam_id, coarsen, skull_stripped=stripped)
    out = work / f"{spec.exam_id}_out"
    c0 = time.process_time()
    try:
        preprocess_case(exam.paths, exam.exam_id, out, atlas_dir=atlas)
    except InputError as exc:
        return {"exam": exam.exam_id, "refused": str(exc), "cpu_s": round(time.process_time() - c0, 1)}
    cpu = time.process_time() - c0
    r0, found = chains(r0_dir), chains(out)
    r0_mask = sitk.ReadImage(str(r0_dir / "source_brainmask.nii.gz"))
    points = nc.physical_points(r0_mask)
    tre = {m: nc.target_registration_error(found[m], compose(exam.source_to_native(m), r0[m]), points)
           for m in MODALITIES}
    coreg_tre = None
    if exam.coreg_exact:  # the co-registrations alone, against their exact truth, over the native brain
        brain = points[:: max(1, len(points) // 4000)]
        native = transform_points(found["t1ce"], brain)
        coreg_tre = {m: round(nc.target_registration_error(coreg, exam.coreg_truth(m), native)[0], 3)
                     for m, coreg in coregistrations(out).items()}
    prov = json.loads((out / "provenance_preprocess.json").read_text())
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"{exam.exam_id}_brainmask.nii.gz"))) > 0
    return {"exam": exam.exam_id, "source": spec.source, "cpu_s": round(cpu, 1),
            "tre_mean_mm": {m: round(v[0], 3) for m, v in tre.items()},
            "tre_max_mm": {m: round(v[1], 3) for m, v in tre.items()},
            "coregistration_tre_mean_mm": coreg_tre,
            "brain_mask_dice": round(dice(mask, sitk.GetArrayFromImage(r0_mask) > 0), 4),
            "qc": prov["qc"]["checks"], "input_skull_stripped": prov["qc"]["input_skull_stripped"]["value"],
            "starts": {k: v.get("start") for k, v in prov["registration_results"].items()}}


ROTATION_BINS_DEG = ((0.0, 10.0), (10.0, 20.0), (20.0, 90.0))
SHIFT_BINS_MM = ((0.0, 15.0), (15.0, 30.0), (30.0, 100.0))
THICKNESS_BINS_MM = ((0.0, 3.0), (3.0, 10.0))


def _stats(values: list[float]) -> dict:
    return {"n": len(values), "median": round(float(np.median(values)), 3), "mean": round(float(np.mean(values)), 3),
            "max": round(float(max(values)), 3)} if values else {"n": 0}


def summarise(exams: list[dict], poses: list[dict]) -> dict:
    """Mean-TRE statistics per modality: over all exams, per input kind (skull-stripped or with
    skull), and per bin of that modality's own pose (rotation, shift) and slice thickness."""
    done = [e for e in exams if "refused" not in e]
    pose_of = {p["exam_id"]: p["modalities"] for p in poses}
    out: dict = {"all": {}, "skull_stripped": {}, "with_skull": {}, "rotation_deg": {}, "shift_mm": {},
                 "slice_thickness_mm": {}}
    for m in MODALITIES:
        tre = {e["exam"]: e["tre_mean_mm"][m] for e in done}
        out["all"][m] = _stats(list(tre.values()))
        out["skull_stripped"][m] = _stats([tre[e["exam"]] for e in done if e["input_skull_stripped"]])
        out["with_skull"][m] = _stats([tre[e["exam"]] for e in done if not e["input_skull_stripped"]])
        for key, field, bins in (("rotation_deg", "rotation_deg", ROTATION_BINS_DEG),
                                 ("shift_mm", "shift_norm_mm", SHIFT_BINS_MM),
                                 ("slice_thickness_mm", "slice_thickness_mm", THICKNESS_BINS_MM)):
            out[key][m] = {f"{lo:g}-{hi:g}": _stats([v for ex, v in tre.items() if lo <= pose_of[ex][m][field] < hi])
                           for lo, hi in bins}
    exact = [e for e in done if e.get("coregistration_tre_mean_mm")]
    out["coregistration_exact"] = {m: _stats([e["coregistration_tre_mean_mm"][m] for e in exact]) for m in MOVING}
    cpu = [e["cpu_s"] for e in exams]
    out["cpu_s"] = {"median": round(float(np.median(cpu)), 1), "max": round(float(max(cpu)), 1)} if cpu else {}
    out["refused"] = [e["exam"] for e in exams if "refused" in e]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("GLIOCASCADE_DATA", ROOT.parent / "shared" / "data")))
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(24)))
    ap.add_argument("--sources", nargs="+", default=list(nc.SOURCE_NAMES))
    ap.add_argument("--coarsen", type=float, default=1.0)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "registration_corpus.json")
    ap.add_argument("--summarise", type=Path, help="only recompute the summary of this results file (written to --out)")
    args = ap.parse_args()
    if args.summarise:
        result = json.loads(args.summarise.read_text())
        result["summary"] = summarise(result["exams"], result["poses"])
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result["summary"]["all"]))
        return
    specs = nc.corpus_specs(args.seeds, args.sources)
    sources = {name: nc.load_source(args.data, name) for name in {s.source for s in specs}}
    with tempfile.TemporaryDirectory(prefix="gliocascade_corpus_") as tmp:
        work = Path(tmp)
        r0_dirs = {}
        for name, (images, _) in sources.items():  # R0: the unposed source through preprocess
            r0_dirs[name] = work / ("r0_" + name.replace("/", "_"))
            preprocess_case(write_source(images, work / ("src_" + name.replace("/", "_"))), "source", r0_dirs[name],
                            atlas_dir=args.data / "atlas")
        exams = []
        for spec in specs:
            exams.append(measure_exam(spec, sources[spec.source], r0_dirs[spec.source], work, args.data / "atlas",
                                      args.coarsen))
            print(json.dumps(exams[-1]), flush=True)
    poses = nc.pose_table(specs)
    result = {"what": "preprocess on the native corpus (default backend)", "coarsen": args.coarsen,
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                          "load_average": os.getloadavg()},
              "versions": package_versions(), "summary": summarise(exams, poses), "exams": exams, "poses": poses}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
