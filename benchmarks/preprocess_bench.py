"""CPU seconds per preprocessing stage on the real TCGA-FG-6692 exam, per registration backend.

The antspyx backend runs ``ants.registration(type_of_transform="Rigid")`` with its defaults (what
BrainLes uses); it is the reference measured in the same run, and every figure is also given as a
ratio to it. Accuracy is checked the same way as the tests (Dice of the brain mask against the
BraTS Toolkit HD-BET mask, NCC of each modality with the BraTS Toolkit image inside the brain where both have data),
once with the default atlas release and once with the release the BraTS Toolkit images were made in
(brainles-0.1.4, fetched with pip unless --reference-atlas names a folder holding it).

    python benchmarks/preprocess_bench.py [--data ../shared/data] [--reference-atlas DIR] [--out benchmarks/results/preprocess.json]
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

from gliocascade.atlas import fetch_atlas_command  # noqa: E402
from gliocascade.io import MODALITIES  # noqa: E402
from gliocascade.preprocess import preprocess_case  # noqa: E402
from gliocascade.provenance import package_versions  # noqa: E402
from gliocascade.registration import normalized_cross_correlation  # noqa: E402

CASE = "TCGA-FG-6692"
NATIVE = {"t1": "t1", "t1ce": "t1c", "t2": "t2", "flair": "flair"}


def _arr(p: Path) -> np.ndarray:
    return np.asanyarray(nib.load(str(p)).dataobj)


def accuracy(out: Path, data: Path) -> dict:
    ref_mask = _arr(data / "native" / CASE / "reference" / "brats_space" / "OtherEXampleFromTCIA_hdbet_mask_brats.nii.gz") > 0
    mask = _arr(out / f"{CASE}_brainmask.nii.gz") > 0
    res = {"dice_brainmask_vs_hdbet": round(float(2 * (mask & ref_mask).sum() / (mask.sum() + ref_mask.sum())), 4)}
    for m in MODALITIES:
        ours = _arr(out / f"{CASE}_{m}.nii.gz").astype(np.float64)
        ref = _arr(data / "brats_space" / CASE / f"{CASE}_{m}.nii.gz").astype(np.float64)
        # where both images have data: the reference slab is zero-filled ~5 slices short of the mask
        res[f"ncc_{m}"] = round(normalized_cross_correlation(ours, ref, mask & ref_mask & (ref > 0)), 4)
    return res


def run_backend(backend: str, data: Path, atlas: Path) -> dict:
    images = {m: data / "native" / CASE / f"{CASE}_{NATIVE[m]}.nii.gz" for m in MODALITIES}
    with tempfile.TemporaryDirectory(prefix="prep_bench_") as tmp:
        c0, w0 = time.process_time(), time.perf_counter()
        written = preprocess_case(images, CASE, Path(tmp), atlas_dir=atlas, backend=backend)
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        prov = json.loads(written["provenance"].read_text())
        return {"cpu_s_per_stage": prov["cpu_s"], "cpu_s_total": round(cpu, 2), "wall_s_total": round(wall, 2),
                "accuracy": accuracy(Path(tmp), data), "similarity_edge_corr": prov["similarity_edge_corr"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("GLIOCASCADE_TEST_DATA", ROOT.parent / "shared" / "data")))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "preprocess.json")
    ap.add_argument("--backends", nargs="+", default=["ants", "simpleitk"])
    ap.add_argument("--reference-atlas", type=Path, help="Folder holding the brainles-0.1.4 atlas release.")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="prep_bench_atlas_") as tmp:
        reference_atlas = args.reference_atlas
        if reference_atlas is None:
            reference_atlas = Path(tmp) / "brainles-0.1.4"
            fetch_atlas_command(reference_atlas, release="brainles-0.1.4")
        rows = {}
        for backend in args.backends:
            print(f"running {backend} ...", file=sys.stderr, flush=True)
            rows[backend] = run_backend(backend, args.data, args.data / "atlas")
            on_reference = run_backend(backend, args.data, reference_atlas)
            rows[backend]["accuracy_on_reference_atlas_release"] = on_reference["accuracy"]
            print(json.dumps(rows[backend]), file=sys.stderr, flush=True)
    if "ants" in rows:
        ref = rows["ants"]["cpu_s_total"]
        for row in rows.values():
            row["cpu_ratio_to_ants_rigid"] = round(row["cpu_s_total"] / ref, 3)
    result = {
        "exam": f"native/{CASE} (4 sequences, 0.9x0.9x5.5 mm, skull on)",
        "reference": "backend 'ants' = ants.registration(type_of_transform='Rigid') defaults, same run",
        "atlas_releases": {"accuracy": "brainles-0.3.5 (default)",
                           "accuracy_on_reference_atlas_release": "brainles-0.1.4 (the BraTS Toolkit images' space)"},
        "registration_threads": 1,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_average_at_end": [round(v, 2) for v in os.getloadavg()]},
        "versions": package_versions(),
        "backends": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
