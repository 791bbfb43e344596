"""Time the full `gliocascade demo` and record its mean Dice (targets: < 10 min on 2 cores, Dice >= 0.8).

The demo runs as a subprocess exactly as a user runs it (`gliocascade demo --out DIR`). A fixed
fp32 matmul workload is timed in the same run as a reference for the machine's speed, so figures
from busy or different machines can be compared as ratios.

    python benchmarks/demo_bench.py [--out DIR] [--workers 2] [--results benchmarks/results/demo.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_SECONDS = 600.0
TARGET_DICE = 0.8


def reference_seconds(repeats: int = 3) -> float:
    """Best of ``repeats`` timings of 16 fp32 1024x1024 matmuls (torch, the demo's thread count)."""
    import torch

    a = torch.randn(1024, 1024)
    b = torch.randn(1024, 1024)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(16):
            a @ b
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="Demo folder (default: a temporary one, removed after).")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--results", type=Path, default=Path(__file__).parent / "results" / "demo.json")
    args = parser.parse_args(argv)

    out = args.out or Path(tempfile.mkdtemp(prefix="gliocascade_demo_"))
    if (out / "demo_summary.json").exists():
        sys.exit(f"error: {out}: holds a finished demo (it would be resumed, not timed); use an empty folder")
    load_before = os.getloadavg()[0]
    ref_before = reference_seconds()
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "gliocascade.cli", "demo", "--out", str(out),
                           "--workers", str(args.workers)])
    seconds = time.perf_counter() - t0
    ref_after = reference_seconds()
    summary = json.loads((out / "demo_summary.json").read_text()) if (out / "demo_summary.json").exists() else {}
    dice = summary.get("dice", {})
    ref = min(ref_before, ref_after)
    record = {
        "command": f"gliocascade demo --out DIR --workers {args.workers}",
        "exit_code": proc.returncode,
        "seconds_total": round(seconds, 1),
        "seconds_by_stage": summary.get("seconds"),
        "settings": summary.get("settings"),
        "mean_dice": dice.get("mean"),
        "dice_by_region": {r: dice.get(r) for r in ("WT", "TC", "ET")},
        "heldout_cases": dice.get("cases"),
        "targets": {"seconds_below": TARGET_SECONDS, "mean_dice_at_least": TARGET_DICE},
        "meets_targets": bool(proc.returncode == 0 and seconds < TARGET_SECONDS
                              and (dice.get("mean") or 0) >= TARGET_DICE),
        "reference_matmul_seconds": round(ref, 4),
        "demo_over_reference": round(seconds / ref, 1),
        "machine": {"cores": os.cpu_count(), "load_average_before": round(load_before, 2),
                    "python": platform.python_version(), "system": platform.platform()},
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.results.with_suffix(".json.part")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, args.results)
    print(json.dumps(record, indent=2))
    if args.out is None:
        shutil.rmtree(out, ignore_errors=True)
    return 0 if record["meets_targets"] else 1


if __name__ == "__main__":
    sys.exit(main())
