"""CPU inference benchmark: the paper cascade's whole-brain forward on a real BraTS-space case.

Measured in one run, each in its own child process (so peak memory is per network, from the
child's rusage) with the same thread count (2 by default):
  * a large matmul in fp32 and in bf16: the machine's practical peak GFLOP/s per precision,
  * the paper cascade (stage 1 + stage-2 decoder 1, eval mode), default layout (the eager fp32
    reference), the channels-last path that `predict` uses on CPU (cpu_speed.prepare), and the
    same path under bf16 autocast (`--precision bf16`; what `auto` picks on CPUs with native bf16),
  * MONAI SegResNet (init_filters 16, 4 -> 3 channels) on the same input.
The input is the real case z-scored, cropped to the brain box and padded to a multiple of 8,
exactly as `predict` prepares it. Convolution FLOPs are counted with torch.utils.flop_counter on
the meta device (no arithmetic). Each network runs once to warm up, then `--runs` timed forwards.

    python benchmarks/predict_bench.py [--case DIR] [--threads 2] [--runs 1] [--out benchmarks/results/predict.json]

With ``--device cuda`` (default output benchmarks/results/predict_cuda.json) the same input runs on
the GPU: true fp32 (TF32 off) and the bf16 autocast path `predict` uses, each with and without
cuDNN autotuning, SegResNet under bf16, bf16 and fp32 matmul peaks, CUDA peak memory, and how far
bf16 probabilities and labels are from fp32 ones on the same weights.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CASE = ROOT.parent / "shared" / "data" / "brats_space" / "BraTS-GLI-00001-000"
NETWORKS = ("cascade_eager", "cascade_channels_last", "cascade_cpu_bf16", "segresnet")
CUDA_NETWORKS = ("cascade_fp32", "cascade_bf16", "cascade_bf16_autotune", "cascade_bf16_channels_last_autotune",
                 "segresnet_bf16")


def prepared_input(case_dir: Path) -> torch.Tensor:
    """(1, 4, D, H, W): z-scored, cropped to the brain box, padded to a multiple of 8 (as predict)."""
    from gliocascade.data import zscore
    from gliocascade.inference import crop_pad, make_window
    from gliocascade.io import discover_case
    from gliocascade.predict import read_case

    case = discover_case(case_dir)
    inp = read_case(case.images, case.case_id)
    window = make_window(np.all(inp.images != 0, axis=0), 8)
    return torch.from_numpy(np.ascontiguousarray(crop_pad(zscore(inp.images), window)))[None]


def build(name: str) -> torch.nn.Module:
    if name.startswith("cascade"):
        from gliocascade.configs import load_config
        from gliocascade.networks import build_cascade

        return build_cascade(load_config("paper")).eval()
    from monai.networks.nets import SegResNet

    return SegResNet(spatial_dims=3, init_filters=16, in_channels=4, out_channels=3).eval()


def conv_gflop(name: str, shape: tuple[int, ...]) -> float:
    """Convolution (and transposed convolution) GFLOP of one forward, counted on the meta device."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        net = build(name)
        x = torch.empty(shape)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        net(x)
    counts = counter.get_flop_counts()["Global"]
    return sum(v for op, v in counts.items() if "convolution" in str(op)) / 1e9


def child_matmul(threads: int, n: int = 4096, reps: int = 5) -> dict:
    """Best-of-``reps`` matmul GFLOP/s in fp32 (top level) and in bf16 (``bfloat16``)."""
    torch.set_num_threads(threads)
    out: dict = {}
    for dtype in (torch.float32, torch.bfloat16):
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        a @ b
        best = float("inf")
        for _ in range(reps):
            t = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - t)
        rec = {"n": n, "seconds": best, "gflops": 2 * n ** 3 / best / 1e9}
        if dtype == torch.float32:
            out.update(rec)
        else:
            out["bfloat16"] = rec
    return out


def child_network(name: str, case_dir: Path, threads: int, runs: int) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    x = prepared_input(case_dir)
    net = build(name)
    if name.startswith("cascade"):
        from gliocascade.cpu_speed import prepare

        runner = prepare([net], torch.device("cpu"), cpu_mode="eager" if name == "cascade_eager" else "channels_last",
                         precision="bf16" if name == "cascade_cpu_bf16" else "fp32")

        def forward():
            return runner(net, x)
    else:
        def forward():
            return net(x)

    times = []
    with torch.inference_mode():
        t = time.perf_counter()
        forward()
        warm = time.perf_counter() - t
        for _ in range(runs):
            t = time.perf_counter()
            forward()
            times.append(time.perf_counter() - t)
    return {"shape": list(x.shape), "warmup_seconds": warm, "seconds": times}


def _cuda_timed(forward, runs: int) -> tuple[float, list[float]]:
    times = []
    for i in range(runs + 1):
        torch.cuda.synchronize()
        t = time.perf_counter()
        forward()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return times[0], times[1:]


def child_cuda_matmul(n: int = 8192, reps: int = 10) -> dict:
    torch.backends.cuda.matmul.allow_tf32 = False
    out = {}
    for dtype in (torch.bfloat16, torch.float32):
        a = torch.randn(n, n, device="cuda", dtype=dtype)
        b = torch.randn(n, n, device="cuda", dtype=dtype)
        _, times = _cuda_timed(lambda: a @ b, reps)
        out[str(dtype).replace("torch.", "")] = {"n": n, "seconds": min(times), "gflops": 2 * n ** 3 / min(times) / 1e9}
    return out


def child_cuda_network(name: str, case_dir: Path, runs: int) -> dict:
    """One network on the GPU: warm-up seconds, timed seconds and CUDA peak memory."""
    from gliocascade.cpu_speed import prepare

    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.manual_seed(0)
    x = prepared_input(case_dir).cuda()
    net = build(name)
    if name.startswith("cascade"):
        runner = prepare([net], torch.device("cuda"), precision="bf16" if "bf16" in name else "fp32")
        if "channels_last" in name:
            net.to(memory_format=torch.channels_last_3d)
            x = x.contiguous(memory_format=torch.channels_last_3d)
        forward = lambda: runner(net, x)  # noqa: E731
    else:
        net.cuda()

        def forward():
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return net(x)
    torch.backends.cudnn.benchmark = name.endswith("autotune")  # after prepare, which may set its own
    torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode():
        warm, times = _cuda_timed(forward, runs)
    return {"shape": list(x.shape), "warmup_seconds": warm, "seconds": times,
            "cuda_peak_memory_gb": torch.cuda.max_memory_allocated() / 1e9}


def child_cuda_agreement(case_dir: Path) -> dict:
    """bf16 autocast against true fp32 on the same random weights: probabilities and labels."""
    from gliocascade.cpu_speed import prepare

    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    x = prepared_input(case_dir).cuda()
    net = build("cascade")
    with torch.inference_mode():
        ref = prepare([net], torch.device("cuda"), precision="fp32")(net, x)
        fast = prepare([net], torch.device("cuda"), precision="bf16")(net, x)
    diff = (fast - ref).abs()
    return {"max_abs_probability_difference": float(diff.max()),
            "mean_abs_probability_difference": float(diff.mean()),
            "equal_region_labels_fraction": float(((fast > 0.5) == (ref > 0.5)).float().mean())}


def run_child(args: list[str]) -> tuple[dict, float]:
    """Run this script as a child; (its JSON result, its peak resident memory in GB)."""
    proc = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark child {args} failed with exit code {proc.returncode}")
    return json.loads(out), usage.ru_maxrss * 1024 / 1e9  # ru_maxrss is in KiB on Linux


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", type=Path, default=DEFAULT_CASE)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--out", type=Path, help="default: benchmarks/results/predict.json (predict_cuda.json on cuda)")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--networks", default=",".join(NETWORKS), help="CPU: comma-separated subset of " + ", ".join(NETWORKS))
    ap.add_argument("--child", choices=("matmul", "cuda_matmul", "cuda_agreement", *NETWORKS, *CUDA_NETWORKS),
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.out is None:
        args.out = ROOT / "benchmarks" / "results" / ("predict_cuda.json" if args.device == "cuda" else "predict.json")
    if args.child == "cuda_matmul":
        print(json.dumps(child_cuda_matmul()))
        return
    if args.child == "cuda_agreement":
        print(json.dumps(child_cuda_agreement(args.case)))
        return
    if args.child in CUDA_NETWORKS:
        print(json.dumps(child_cuda_network(args.child, args.case, args.runs)))
        return
    if args.child == "matmul":
        print(json.dumps(child_matmul(args.threads)))
        return
    if args.child:
        print(json.dumps(child_network(args.child, args.case, args.threads, args.runs)))
        return

    common = ["--case", str(args.case), "--threads", str(args.threads), "--runs", str(args.runs)]
    if args.device == "cuda":
        cuda_main(args, common)
        return
    from gliocascade.precision import isa_record

    matmul, _ = run_child(["--child", "matmul", *common])
    results = {}
    for name in args.networks.split(","):
        res, mem = run_child(["--child", name, *common])
        gflop = conv_gflop(name, tuple(res["shape"]))
        best = min(res["seconds"])
        precision = "bf16" if name == "cascade_cpu_bf16" else "fp32"
        peak = matmul["bfloat16"]["gflops"] if precision == "bf16" else matmul["gflops"]
        results[name] = {**res, "precision": precision, "best_seconds": best, "conv_gflop": gflop,
                         "gflops": gflop / best, "fraction_of_matmul_peak": gflop / best / peak,
                         "peak_memory_gb": mem}
        print(f"{name}: {best:.1f} s, {gflop / best:.1f} GFLOP/s, {gflop / best / peak:.0%} of the {precision} "
              f"matmul peak, {mem:.2f} GB", file=sys.stderr)
    seconds = {name: r["best_seconds"] for name, r in results.items()}
    pairs = {"channels_last_speedup_vs_eager": ("cascade_eager", "cascade_channels_last"),
             "bf16_speedup_vs_fp32": ("cascade_channels_last", "cascade_cpu_bf16")}
    ratios = {key: seconds[a] / seconds[b] for key, (a, b) in pairs.items() if a in seconds and b in seconds}
    ratios["bf16_over_fp32_matmul_peak"] = matmul["bfloat16"]["gflops"] / matmul["gflops"]
    if "segresnet" in results and "cascade_channels_last" in results:
        ratios["cascade_over_segresnet_seconds"] = seconds["cascade_channels_last"] / seconds["segresnet"]
        ratios["cascade_over_segresnet_flops"] = (results["cascade_channels_last"]["conv_gflop"]
                                                  / results["segresnet"]["conv_gflop"])
    record = {
        "case": args.case.name, "threads": args.threads, "runs": args.runs,
        "input_shape": next(iter(results.values()))["shape"], "load_average_at_start": os.getloadavg()[0],
        "torch": torch.__version__, "machine": platform.machine(), "processor": platform.processor(),
        "isa": isa_record(), "matmul": matmul, "networks": results, "ratios": ratios,
    }
    write_record(args.out, record)
    print(json.dumps(record["ratios"], indent=2))


def write_record(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.part")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(path)


def cuda_main(args: argparse.Namespace, common: list[str]) -> None:
    """The GPU run: matmul peaks, each network in its own process, bf16-vs-fp32 agreement."""
    matmul, _ = run_child(["--child", "cuda_matmul", *common])
    results = {}
    for name in CUDA_NETWORKS:
        res, _ = run_child(["--child", name, *common])
        gflop = conv_gflop(name, tuple(res["shape"]))
        best = min(res["seconds"])
        peak = matmul["bfloat16" if "bf16" in name else "float32"]["gflops"]
        results[name] = {**res, "best_seconds": best, "conv_gflop": gflop, "gflops": gflop / best,
                         "fraction_of_matmul_peak": gflop / best / peak}
        print(f"{name}: {best:.3f} s, {gflop / best:.0f} GFLOP/s, {gflop / best / peak:.0%} of matmul peak, "
              f"{res['cuda_peak_memory_gb']:.2f} GB", file=sys.stderr)
    agreement, _ = run_child(["--child", "cuda_agreement", *common])
    record = {
        "case": args.case.name, "device": torch.cuda.get_device_name(0), "torch": torch.__version__,
        "runs": args.runs, "input_shape": results["cascade_fp32"]["shape"], "matmul": matmul,
        "networks": results, "bf16_vs_fp32": agreement,
        "ratios": {
            "bf16_speedup_vs_fp32": results["cascade_fp32"]["best_seconds"] / results["cascade_bf16"]["best_seconds"],
            "autotune_speedup": results["cascade_bf16"]["best_seconds"] / results["cascade_bf16_autotune"]["best_seconds"],
            "cascade_over_segresnet_seconds": results["cascade_bf16"]["best_seconds"] / results["segresnet_bf16"]["best_seconds"],
            "cascade_over_segresnet_flops": results["cascade_bf16"]["conv_gflop"] / results["segresnet_bf16"]["conv_gflop"],
        },
    }
    write_record(args.out, record)
    print(json.dumps({**record["ratios"], **agreement}, indent=2))


if __name__ == "__main__":
    main()
