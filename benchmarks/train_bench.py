"""Cost of one training step and one forward pass of the cascade (paper config, 128^3 by default).

Each measurement runs in its own subprocess so that peak memory is that measurement's alone. A
large matmul in fp32 and in bf16 is timed in the same run as the reference for what the machine
can do, so each pass is reported as a fraction of the peak of its own precision. On CPU both
precisions run (fp32, and bf16 autocast as `train --precision bf16` does); on CUDA bf16. FLOPs are counted with PyTorch's
FlopCounterMode (convolutions and matmuls; elementwise work is not counted).
On CPU freed memory is kept in the heap (``cpu_speed.reuse_freed_memory``), as ``train`` and
``predict`` do: without it every step's fresh activations page-fault in and a step takes about
twice as long.

    python benchmarks/train_bench.py                    # CPU, writes benchmarks/results/train.json
    python benchmarks/train_bench.py --device cuda      # GPU: bf16 autocast, checkpointing on/off
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def matmul_gflops(device: str, n: int = 4096, repeats: int = 3, dtype: str = "float32") -> float:
    """Best-of GEMM rate (GFLOP/s) in ``dtype``: the machine's reference for that precision."""
    import torch

    a = torch.randn(n, n, device=device).to(getattr(torch, dtype))
    b = torch.randn(n, n, device=device).to(getattr(torch, dtype))
    best = float("inf")
    for _ in range(repeats + 1):
        _sync(device)
        t0 = time.perf_counter()
        (a @ b).sum().item()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best / 1e9


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def count_flops(config: dict, size: int, train: bool) -> int:
    """FLOPs of a forward (eval) or forward+backward (train) pass for batch 1, counted on the meta device."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from gliocascade.losses import dice_loss
    from gliocascade.networks import build_cascade

    with torch.device("meta"):
        model = build_cascade(config)
        x = torch.empty(1, 4, size, size, size)
        y = torch.empty(1, 3, size, size, size)
    model.set_checkpointing(False)
    model.train(train)
    with FlopCounterMode(display=False) as fc:
        if train:
            sum(dice_loss(v, y) for v in model(x).values()).backward()
        else:
            with torch.no_grad():
                model(x)
    return int(fc.get_total_flops())


def measure(kind: str, device: str, size: int, checkpointing: bool, amp: bool, repeats: int) -> dict:
    """One measurement (run inside a fresh subprocess): seconds per pass and peak memory."""
    import torch

    from gliocascade.configs import load_config
    from gliocascade.cpu_speed import reuse_freed_memory
    from gliocascade.losses import cascade_loss
    from gliocascade.networks import build_cascade

    if device == "cpu":
        reuse_freed_memory()  # as train and predict do on CPU
    torch.manual_seed(0)
    cfg = load_config("paper")
    model = build_cascade(cfg)
    model.set_checkpointing(checkpointing)
    fmt = torch.channels_last_3d if device == "cpu" else torch.contiguous_format
    model = model.to(device, memory_format=fmt)
    x = torch.randn(1, 4, size, size, size, device=device).contiguous(memory_format=fmt)
    y = (torch.rand(1, 3, size, size, size, device=device) > 0.9).float()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=1e-5)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()

    def step() -> None:
        if kind == "train":
            model.train()
            with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=amp):
                out = model(x)
            loss, _ = cascade_loss(out, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        else:
            model.eval()
            with torch.no_grad(), torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=amp):
                model(x)
        _sync(device)

    warm = 1 if device == "cpu" else 3
    for _ in range(warm):
        step()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    if device.startswith("cuda"):
        peak = torch.cuda.max_memory_allocated() / 2 ** 30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # KiB -> GiB (process peak RSS)
    return {"kind": kind, "checkpointing": checkpointing, "amp": amp, "seconds": min(times),
            "seconds_all": times, "peak_memory_gib": round(peak, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--size", type=int, default=128, help="cubic crop size")
    ap.add_argument("--repeats", type=int, default=1, help="timed repeats (best is reported)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "train.json")
    ap.add_argument("--_one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._one:
        spec = json.loads(args._one)
        print(json.dumps(measure(**spec)))
        return

    import torch

    from gliocascade.configs import load_config
    from gliocascade.precision import isa_record

    cuda = args.device.startswith("cuda")
    amp_modes = [True] if cuda else [False, True]
    cfg = load_config("paper")
    flops = {"train": count_flops(cfg, args.size, True), "forward": count_flops(cfg, args.size, False)}
    result = {"device": args.device,
              "device_name": torch.cuda.get_device_name(0) if cuda else platform.processor() or platform.machine(),
              "threads": torch.get_num_threads(), "torch": torch.__version__, "size": args.size,
              "isa": isa_record(),
              "matmul_gflops_before": round(matmul_gflops(args.device), 1),
              "matmul_bf16_gflops_before": round(matmul_gflops(args.device, dtype="bfloat16"), 1),
              "flops_per_pass": flops, "runs": []}
    specs = [("forward", False, amp) for amp in amp_modes]
    specs += [("train", ckpt, amp) for ckpt in (False, True) for amp in amp_modes]
    for kind, ckpt, amp in specs:
        spec = {"kind": kind, "device": args.device, "size": args.size, "checkpointing": ckpt, "amp": amp,
                "repeats": args.repeats}
        proc = subprocess.run([sys.executable, __file__, "--_one", json.dumps(spec)], capture_output=True, text=True)
        if proc.returncode != 0:
            run = {"kind": kind, "checkpointing": ckpt, "amp": amp, "error": proc.stderr.strip().splitlines()[-1]}
        else:
            run = json.loads(proc.stdout.strip().splitlines()[-1])
            run["gflops"] = round(flops[kind] / run["seconds"] / 1e9, 1)
        print(json.dumps(run), flush=True)
        result["runs"].append(run)
    result["matmul_gflops_after"] = round(matmul_gflops(args.device), 1)
    result["matmul_bf16_gflops_after"] = round(matmul_gflops(args.device, dtype="bfloat16"), 1)
    ref = (result["matmul_gflops_before"] + result["matmul_gflops_after"]) / 2
    ref_bf16 = (result["matmul_bf16_gflops_before"] + result["matmul_bf16_gflops_after"]) / 2
    for run in result["runs"]:
        run["precision"] = "bf16" if run.get("amp") else "fp32"
        if "gflops" in run:
            run["fraction_of_matmul"] = round(run["gflops"] / (ref_bf16 if run.get("amp") else ref), 3)
    seconds = {(r["kind"], r["checkpointing"], r["precision"]): r.get("seconds") for r in result["runs"]}
    fp32_step, bf16_step = seconds.get(("train", False, "fp32")), seconds.get(("train", False, "bf16"))
    if fp32_step and bf16_step:
        result["train_step_bf16_speedup_vs_fp32"] = round(fp32_step / bf16_step, 3)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
