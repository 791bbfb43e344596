"""Whole-case inference time as a user meets it: one cold `gliocascade predict` and a cohort run.

A model folder of the `paper` cascade with 8 random snapshots (the paper's ensemble; the cost does
not depend on the weights) is written once. Then, on the real BraTS-space case:
  * cold: a fresh `gliocascade predict --case` process per precision (``--precisions``, default
    fp32 and bf16), wall time from launch to exit (Python and torch import, model loading and hash
    checks, 8 flip passes, writing), and the inference seconds from its provenance;
  * cohort: `gliocascade predict --cases` over ``--copies`` copies of the case (models loaded once)
    with ``--precision auto``, per-case inference seconds read from each case's provenance.
The same-run fp32 and bf16 matmul rates and the CPU's instruction set are recorded so that figures compare across machines.

    python benchmarks/predict_case_bench.py [--device cpu|cuda] [--threads 2] [--copies 2] [--tta 8]
                                            [--precisions fp32,bf16]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from gliocascade.precision import isa_record
from train_bench import matmul_gflops  # the benchmarks' one same-run GEMM reference

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CASE = ROOT.parent / "shared" / "data" / "brats_space" / "BraTS-GLI-00001-000"


def write_random_paper_model(folder: Path, snapshots: int) -> Path:
    from gliocascade.configs import load_config
    from gliocascade.model_io import write_model_folder
    from gliocascade.networks import build_cascade

    cfg = load_config("paper")
    states = []
    for i in range(snapshots):
        torch.manual_seed(i)
        states.append({"model": build_cascade(cfg).state_dict()})
    return write_model_folder(folder, cfg, states[-1], states, {"label_convention": "2019"})


def gliocascade(args: list[str], env: dict[str, str]) -> float:
    """Run the CLI in a fresh process; its wall seconds."""
    exe = shutil.which("gliocascade") or str(Path(sys.executable).with_name("gliocascade"))
    t = time.perf_counter()
    subprocess.run([exe, *args], check=True, env=env)
    return time.perf_counter() - t


def copy_case(case_dir: Path, cohort: Path, copies: int) -> None:
    """``copies`` copies of the case's four images, each under its own case id (outputs must not collide)."""
    from gliocascade.io import discover_case

    case = discover_case(case_dir)
    for i in range(copies):
        new_id = f"{case.case_id}c{i}"
        folder = cohort / new_id
        folder.mkdir(parents=True)
        for path in case.images.values():
            shutil.copy(path, folder / Path(path).name.replace(case.case_id, new_id))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", type=Path, default=DEFAULT_CASE)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads (OMP_NUM_THREADS of the runs)")
    ap.add_argument("--copies", type=int, default=2, help="cases in the cohort run")
    ap.add_argument("--tta", type=int, default=8)
    ap.add_argument("--precisions", default="fp32,bf16", help="comma-separated precisions of the cold runs")
    ap.add_argument("--out", type=Path, help="default: benchmarks/results/predict_case[_cuda].json")
    args = ap.parse_args()
    out = args.out or ROOT / "benchmarks" / "results" / f"predict_case{'_cuda' if args.device == 'cuda' else ''}.json"
    torch.set_num_threads(args.threads)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    with tempfile.TemporaryDirectory(prefix="gc-case-bench-") as tmp:
        tmp = Path(tmp)
        model = write_random_paper_model(tmp / "model", args.tta)
        common = ["--model", str(model), "--tta", str(args.tta), "--device", args.device]
        peak_before = matmul_gflops(args.device)
        bf16_peak = matmul_gflops(args.device, dtype="bfloat16")
        colds = {}
        for precision in args.precisions.split(","):
            dest = tmp / f"cold_{precision}"
            seconds = gliocascade(["predict", "--case", str(args.case), "--out", str(dest), "--precision", precision,
                                   *common], env)
            cold_prov = json.loads((dest / "provenance_predict.json").read_text())
            colds[precision] = {"cold_case_seconds": seconds,
                                "cold_inference_seconds": cold_prov["timings_s"]["inference_s"],
                                "precision_reason": cold_prov["parameters"].get("precision_reason")}
        cohort = tmp / "cohort"
        copy_case(args.case, cohort, args.copies)
        total = gliocascade(["predict", "--cases", str(cohort), "--out", str(tmp / "cohort_out"), "--precision", "auto",
                             *common], env)
        provs = [json.loads(p.read_text()) for p in sorted((tmp / "cohort_out").glob("*/provenance_predict.json"))]
        per_case = [p["timings_s"]["inference_s"] for p in provs]
        peak_after = matmul_gflops(args.device)
    record = {
        "case": args.case.name, "device": args.device, "threads": args.threads, "tta": args.tta,
        "torch": torch.__version__,
        "device_name": torch.cuda.get_device_name(0) if args.device == "cuda" else None,
        "isa": isa_record() if args.device == "cpu" else None,
        "matmul_gflops": {"before": peak_before, "after": peak_after}, "matmul_bf16_gflops": bf16_peak,
        "padded_shape": cold_prov.get("window", {}).get("padded_shape"),
        "cold": colds, "cohort_precision": provs[0]["parameters"].get("precision"),
        "cohort_cases": args.copies, "cohort_total_seconds": total,
        "cohort_inference_seconds_per_case": per_case,
        "cohort_seconds_per_case": total / args.copies,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
