"""Does the recipe learn real tumours? Leave-one-out on the four expert-labelled BRATS 2013 cases.

Data: ``<data>/expert_flair_t1c/brats_2013_pat000{3..6}_1`` (FLAIR and T1Gd, already z-scored, a brain
mask and the expert ``OTMultiClass`` map in the BraTS 2015 convention); T1 and T2 are absent. Each
fold trains the ``tiny`` configuration (``--config``; ``small`` learned less in the same budget:
WT 0.82 against 0.88 on fold 0) on three cases and evaluates the fourth against its expert labels,
with a budget of process CPU time (``--cpu-seconds``, default 1200) at 2 threads, as ``predict``
segments (``--tta 8``, the snapshot ensemble).

To fit 2 cores the cases are trained and predicted at 2 mm (block-averaged copies of the 1 mm
images; labels where each region fills at least half of a block); the stage-2 probabilities are brought back to the 1 mm grid
(trilinear) and scored there against the untouched expert labels (WT/TC/ET Dice and HD95).

Beside the model, on the same folds, an intensity baseline tuned leave-one-out: the z-scored FLAIR
inside the brain above a threshold, largest component, is WT; T1Gd above a threshold inside that WT
is ET (and, largest component, TC); each threshold maximises the mean Dice of the three training
cases. A cascade that does not beat a threshold has not learned.

    python benchmarks/real_learning.py [--data ../shared/data] [--cpu-seconds 1200] [--folds 0 1 2 3]
    python benchmarks/real_learning.py --device cuda --config paper   # on a GPU (skipped without one)

Results: ``benchmarks/results/real_learning.json`` (expert labels, four cases: no cohort claim).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from gliocascade.expert_cases import EXPERT_CASES, REGIONS, coarsen, load_case, samplesheet, scores, to_fine_grid
from gliocascade.precision import isa_record, resolve_precision

ROOT = Path(__file__).resolve().parents[1]
CASES = list(EXPERT_CASES)
GRID = np.round(np.arange(0.25, 5.01, 0.25), 2)


def cpu_seconds() -> float:
    """Process CPU time (user + system) of this process so far."""
    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime


# --------------------------------------------------------------------------- data
# load_case, coarsen, samplesheet, to_fine_grid and scores: gliocascade.expert_cases (shared with the learning test)

# --------------------------------------------------------------------------- baseline

def largest_component(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    lab, n = ndimage.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == sizes.argmax()


def baseline_regions(case: dict, t_wt: float, t_tc: float, t_et: float) -> np.ndarray:
    wt = largest_component((case["flair"] > t_wt) & case["mask"])
    return np.stack([wt, largest_component((case["t1ce"] > t_tc) & wt), (case["t1ce"] > t_et) & wt])


def tune_baseline(train: list[dict]) -> tuple[float, float, float]:
    """Thresholds maximising the mean Dice of the training cases (WT first, then TC and ET inside it)."""
    from gliocascade.metrics import dice

    t_wt = max(GRID, key=lambda t: (np.mean([dice(largest_component((c["flair"] > t) & c["mask"]), c["regions"][0])
                                            for c in train]), -t))
    wts = [largest_component((c["flair"] > t_wt) & c["mask"]) for c in train]
    t_tc = max(GRID, key=lambda t: (np.mean([dice(largest_component((c["t1ce"] > t) & w), c["regions"][1])
                                            for c, w in zip(train, wts)]), -t))
    t_et = max(GRID, key=lambda t: (np.mean([dice((c["t1ce"] > t) & w, c["regions"][2])
                                            for c, w in zip(train, wts)]), -t))
    return float(t_wt), float(t_tc), float(t_et)


# --------------------------------------------------------------------------- model

def train_fold(sheet: Path, out: Path, config: str, cpu_budget: float, steps: int, device: str,
               precision: str) -> dict:
    """Train on ``sheet`` within ``cpu_budget`` CPU-seconds: timed runs of one and three epochs (after a
    warm-up) give the CPU time of an epoch and of a run's fixed part, which fix the epoch count."""
    from gliocascade.configs import load_config
    from gliocascade.data import cases_from_samplesheet
    from gliocascade.train import train

    cases = cases_from_samplesheet(sheet)
    cfg = load_config(config)
    spent = {}
    for name, epochs in (("warm-up", 1), ("one", 1), ("three", 3)):  # the warm-up pays one-off kernel set-up
        c0 = cpu_seconds()
        train(cases, out / f"calibration_{name}", cfg, epochs=epochs, steps_per_epoch=steps, device=device,
              precision=precision, progress=False, seed=0)
        spent[name] = cpu_seconds() - c0
    per_epoch = (spent["three"] - spent["one"]) / 2  # without the run's fixed cost (reading cases, set-up)
    fixed = max(0.0, spent["one"] - per_epoch)
    # 10 % slack: an epoch's CPU time on a shared machine varies by up to 17 % between runs
    epochs = max(1, int((0.90 * cpu_budget - fixed) // per_epoch))
    c1, t1 = cpu_seconds(), time.time()
    model = train(cases, out / "model", cfg, epochs=epochs, steps_per_epoch=steps, device=device,
                  precision=precision, progress=False, seed=0)
    used = cpu_seconds() - c1
    return {"model": model, "epochs": epochs, "steps_per_epoch": steps, "calibration_cpu_s": round(per_epoch, 1),
            "fixed_cpu_s": round(fixed, 1),
            "train_cpu_s": round(used, 1), "within_budget": bool(used <= cpu_budget),
            "train_wall_s": round(time.time() - t1, 1)}


def predict_fold(model: Path, files: dict[str, Path], case: dict, device: str, tta: int) -> np.ndarray:
    """Stage-2 regions at 1 mm: the model applied to the 2 mm copy as ``predict --tta`` applies it
    (``tta`` flipped passes spread over the snapshots, on the brain box), probabilities brought back."""
    from gliocascade.configs import finish_config
    from gliocascade.data import load_volume
    from gliocascade.io import Case
    from gliocascade.model_io import load_model
    from gliocascade.train import predict_regions

    loaded = load_model(model, device)
    vol = load_volume(Case(case_id="test", images={"flair": files["flair"], "t1ce": files["t1ce"]},
                           brainmask=files["brainmask"]))
    cfg = finish_config(dict(loaded.config), None)
    return to_fine_grid(predict_regions(list(loaded.networks), vol.images, cfg["divisor"], device, tta), case)


def save_prediction(regions: np.ndarray, case: dict, path: Path) -> None:
    """The 1 mm regions as a label map on the case's grid (4 ET, 1 TC without ET, 2 the rest of WT)."""
    import nibabel as nib

    from gliocascade.labels import regions_to_labels

    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(regions_to_labels(regions, "2019"), case["affine"]), path)


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("GLIOCASCADE_TEST_DATA", ROOT.parent / "shared" / "data")))
    ap.add_argument("--config", default="tiny")
    ap.add_argument("--cpu-seconds", type=float, default=1200.0, help="process CPU time per fold for training")
    ap.add_argument("--steps", type=int, default=20, help="steps per epoch")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                    help="training arithmetic, as train --precision (auto: bf16 where the CPU has it)")
    ap.add_argument("--tta", type=int, default=8, choices=(1, 2, 4, 8),
                    help="flipped passes at prediction, as predict --tta (default 8, predict's)")
    ap.add_argument("--folds", type=int, nargs="*", default=[0, 1, 2, 3])
    ap.add_argument("--save-predictions", type=Path, metavar="DIR",
                    help="also write each held-out case's 1 mm segmentation there (2019 labels), to look at")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "real_learning.json")
    args = ap.parse_args()
    root = args.data / "expert_flair_t1c"
    if not root.is_dir():
        raise SystemExit(f"skipped: {root} not found (the expert-labelled cases)")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("skipped: --device cuda but no CUDA device is available")
    torch.set_num_threads(args.threads)
    chosen = resolve_precision(args.precision, torch.device(args.device))
    cases = {cid: load_case(root / cid) for cid in CASES}
    folds = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files = {cid: coarsen(c, tmp / "2mm" / cid, cid) for cid, c in cases.items()}
        for k in args.folds:
            test = CASES[k]
            train_ids = [c for c in CASES if c != test]
            thresholds = tune_baseline([cases[c] for c in train_ids])
            base = scores(baseline_regions(cases[test], *thresholds), cases[test])
            sheet = samplesheet(tmp / f"fold{k}.csv", {c: files[c] for c in train_ids})
            run = train_fold(sheet, tmp / f"fold{k}", args.config, args.cpu_seconds, args.steps, args.device,
                             chosen.name)
            regions = predict_fold(run.pop("model"), files[test], cases[test], args.device, args.tta)
            model = scores(regions, cases[test])
            if args.save_predictions:
                save_prediction(regions, cases[test], args.save_predictions / f"fold{k}_{test}_pred.nii.gz")
            folds.append({"fold": k, "test": test, "train": train_ids, "model": model, "baseline": base,
                          "baseline_thresholds": dict(zip(REGIONS, thresholds)), **run})
            print(json.dumps(folds[-1]), flush=True)
    mean = {who: {key: float(np.mean([f[who][key] for f in folds])) for key in folds[0][who]}
            for who in ("model", "baseline")}
    beats = {r: all(f["model"][f"dice_{r}"] > f["baseline"][f"dice_{r}"] for f in folds) for r in ("WT", "ET")}
    doc = {"data": "four BRATS 2013 cases with expert labels (FLAIR + T1Gd; T1, T2 absent), leave-one-out",
           "config": args.config, "device": args.device, "threads": args.threads, **chosen.record(),
           "isa": isa_record(),
           "cpu_seconds_per_fold": args.cpu_seconds, "tta": args.tta, "resolution_mm": 2.0, "scored_at_mm": 1.0,
           "folds": folds, "mean": mean, "model_beats_baseline_in_every_fold": beats,
           "targets": {"mean_dice_WT": 0.80, "mean_dice_ET": 0.50},
           "meets_targets": bool(all(beats.values()) and mean["model"]["dice_WT"] >= 0.80
                                 and mean["model"]["dice_ET"] >= 0.50)}
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps({"mean": mean, "beats": beats, "meets_targets": doc["meets_targets"]}, indent=2))


if __name__ == "__main__":
    main()
