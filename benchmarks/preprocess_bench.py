"""CPU seconds per preprocessing stage on the real TCGA-FG-6692 exam, per registration backend.

The antspyx backend runs ``ants.registration(type_of_transform="Rigid")`` with its defaults (what
BrainLes uses); it is the reference measured in the same run, and every figure is also given as a
ratio to it. Each backend runs once per metric seed (default 20190101, 1, 2), the backends
interleaved, so that the CPU ratio is a median of runs made side by side on a shared machine and
the accuracy comes with its spread over seeds. Accuracy is checked as in the tests: Dice of the brain
mask against the BraTS Toolkit HD-BET mask and NCC of each modality with the BraTS Toolkit image
inside the brain where both have data, (a) in the default release's space against the BraTS Toolkit
images moved there, (b) registered to the release those images were made in (brainles-0.1.4,
fetched with pip unless --reference-atlas names a folder holding it), (c) as raw voxel comparison on
the default release, which compares two atlas spaces ~2 degrees apart.

    python benchmarks/preprocess_bench.py [--data ../shared/data] [--reference-atlas DIR] [--seeds 20190101 1 2]
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

import nibabel as nib
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

from gliocascade.atlas import fetch_atlas  # noqa: E402
from gliocascade.io import MODALITIES  # noqa: E402
from gliocascade.preprocess import preprocess_case  # noqa: E402
from gliocascade.provenance import package_versions  # noqa: E402
from gliocascade.registration import RegistrationParams, normalized_cross_correlation  # noqa: E402
from gliocascade.release_mapping import release_transform, to_release  # noqa: E402

CASE = "TCGA-FG-6692"
NATIVE = {"t1": "t1", "t1ce": "t1c", "t2": "t2", "flair": "flair"}


def _arr(p: Path) -> np.ndarray:
    return np.asanyarray(nib.load(str(p)).dataobj)


def references(data: Path) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The BraTS Toolkit images and HD-BET mask, as stored (the 0.1.4 release's space)."""
    images = {m: _arr(data / "brats_space" / CASE / f"{CASE}_{m}.nii.gz").astype(np.float32) for m in MODALITIES}
    mask = _arr(data / "native" / CASE / "reference" / "brats_space" / "OtherEXampleFromTCIA_hdbet_mask_brats.nii.gz") > 0
    return images, mask


def accuracy(out: Path, ref_images: dict[str, np.ndarray], ref_mask: np.ndarray) -> dict:
    mask = _arr(out / f"{CASE}_brainmask.nii.gz") > 0
    res = {"dice_brainmask_vs_hdbet": round(float(2 * (mask & ref_mask).sum() / (mask.sum() + ref_mask.sum())), 4)}
    for m in MODALITIES:
        ours, ref = _arr(out / f"{CASE}_{m}.nii.gz").astype(np.float64), ref_images[m].astype(np.float64)
        # where both images have data: the reference slab is zero-filled ~5 slices short of the mask
        res[f"ncc_{m}"] = round(normalized_cross_correlation(ours, ref, mask & ref_mask & (ref > 0)), 4)
    return res


def run_backend(backend: str, data: Path, atlas: Path, seed: int, checks: dict[str, tuple]) -> dict:
    """One preprocessing run; ``checks`` maps an accuracy name to (reference images, reference mask)."""
    images = {m: data / "native" / CASE / f"{CASE}_{NATIVE[m]}.nii.gz" for m in MODALITIES}
    params = RegistrationParams(seed=seed)
    with tempfile.TemporaryDirectory(prefix="prep_bench_") as tmp:
        c0, w0 = time.process_time(), time.perf_counter()
        written = preprocess_case(images, CASE, Path(tmp), atlas_dir=atlas, backend=backend, params=params)
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        prov = json.loads(written["provenance"].read_text())
        return {"seed": seed, "cpu_s_per_stage": prov["cpu_s"], "cpu_s_total": round(cpu, 2),
                "wall_s_total": round(wall, 2), "similarity_edge_corr": prov["similarity_edge_corr"],
                **{name: accuracy(Path(tmp), *ref) for name, ref in checks.items()}}


def summary(runs: list[dict], key: str) -> dict:
    """Median and range over seeds of every figure of ``key``."""
    return {k: {"median": round(float(np.median([r[key][k] for r in runs])), 4),
                "min": min(r[key][k] for r in runs), "max": max(r[key][k] for r in runs)} for k in runs[0][key]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("GLIOCASCADE_TEST_DATA", ROOT.parent / "shared" / "data")))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "preprocess.json")
    ap.add_argument("--backends", nargs="+", default=["ants", "simpleitk"])
    ap.add_argument("--reference-atlas", type=Path, help="Folder holding the brainles-0.1.4 atlas release.")
    ap.add_argument("--seeds", type=int, nargs="+", default=[20190101, 1, 2])
    args = ap.parse_args()
    default_atlas = args.data / "atlas"
    ref_images, ref_mask = references(args.data)
    with tempfile.TemporaryDirectory(prefix="prep_bench_atlas_") as tmp:
        reference_atlas = args.reference_atlas
        if reference_atlas is None:
            reference_atlas = Path(tmp) / "brainles-0.1.4"
            fetch_atlas(reference_atlas, release="brainles-0.1.4")
        to_default = release_transform(default_atlas, reference_atlas)
        moved = ({m: to_release(a, to_default) for m, a in ref_images.items()}, to_release(ref_mask, to_default, True))
        runs: dict[str, list[dict]] = {b: [] for b in args.backends}
        for seed in args.seeds:
            for backend in args.backends:
                print(f"running {backend}, seed {seed} ...", file=sys.stderr, flush=True)
                row = run_backend(backend, args.data, default_atlas, seed,
                                  {"accuracy_default_space": moved, "accuracy_cross_space": (ref_images, ref_mask)})
                on_reference = run_backend(backend, args.data, reference_atlas, seed, {"accuracy": (ref_images, ref_mask)})
                row["accuracy_on_reference_atlas_release"] = on_reference["accuracy"]
                runs[backend].append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    backends = {}
    for backend, rows in runs.items():
        backends[backend] = {
            "cpu_s_total_median": round(float(np.median([r["cpu_s_total"] for r in rows])), 2),
            **{key: summary(rows, key) for key in ("accuracy_default_space", "accuracy_on_reference_atlas_release",
                                                   "accuracy_cross_space")},
            "runs": rows,
        }
    if "ants" in runs:
        for backend, rows in runs.items():
            paired = [r["cpu_s_total"] / a["cpu_s_total"] for r, a in zip(rows, runs["ants"])]
            backends[backend]["cpu_ratio_to_ants_rigid"] = {"median": round(float(np.median(paired)), 3),
                                                            "runs": [round(v, 3) for v in paired]}
    result = {
        "exam": f"native/{CASE} (4 sequences, 0.9x0.9x5.5 mm, skull on)",
        "reference": "backend 'ants' = ants.registration(type_of_transform='Rigid') defaults, same run, "
                     "interleaved with the other backend seed by seed",
        "seeds": args.seeds,
        "accuracy": {
            "accuracy_default_space": "default release (brainles-0.3.5) against the BraTS Toolkit images moved into it",
            "accuracy_on_reference_atlas_release": "registered to brainles-0.1.4, the BraTS Toolkit images' own space",
            "accuracy_cross_space": "default release against the BraTS Toolkit images as stored (two spaces ~2 deg apart)",
        },
        "registration_threads": 1,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_average_at_end": [round(v, 2) for v in os.getloadavg()]},
        "versions": package_versions(),
        "backends": backends,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({b: {k: v for k, v in row.items() if k != "runs"} for b, row in backends.items()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
