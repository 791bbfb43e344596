"""Missing modalities on phantoms: what a model trained with modality dropout loses per missing sequence.

Three `tiny` models are trained in-process on the same eight 64x64x48 phantoms (seeds 0-7, the demo's
budget unless ``--epochs`` says otherwise): one with ``--modality-dropout 0.25``, the same with the
config key ``presence_flags`` (one input map per modality saying whether it is present), and one
without dropout. Each
predicts the held-out phantoms (seeds 1000-1003, ``--tta 1``) with all four modalities and with each
single modality left out; the model without dropout must refuse the incomplete cases. Mean Dice per
region and per setting go to ``benchmarks/results/missing_modalities.json`` (synthetic phantoms only:
no real-data claim follows from these figures).

    python benchmarks/missing_modalities.py [--epochs 50] [--steps 3] [--results FILE]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

MODALITIES = ("t1", "t1ce", "t2", "flair")
HELD_OUT = 1000
VARIANTS = (("dropout_0.25", 0.25, False), ("dropout_0.25_presence_flags", 0.25, True), ("no_dropout", 0.0, False))
TARGET_LOSS = 0.05


def _train(sheet: Path, out: Path, dropout: float, presence_flags: bool, epochs: int, steps: int) -> Path:
    from gliocascade.configs import load_config
    from gliocascade.data import cases_from_samplesheet
    from gliocascade.train import train

    cfg = {**load_config("tiny"), "presence_flags": presence_flags}
    return train(cases_from_samplesheet(sheet), out, cfg, epochs=epochs, steps_per_epoch=steps,
                 device="cpu", precision="fp32", progress=False, modality_dropout=dropout, seed=0)


def _sheet(path: Path, root: Path, ids: list[str]) -> Path:
    lines = ["case_id,t1,t1ce,t2,flair,seg,space"]
    lines += [",".join([c, *(str(root / c / f"{c}_{m}.nii.gz") for m in MODALITIES), str(root / c / f"{c}_seg.nii.gz"),
                        "brats"]) for c in ids]
    path.write_text("\n".join(lines) + "\n")
    return path


def _dice(model: Path, root: Path, ids: list[str], absent: str | None, work: Path) -> dict[str, float] | str:
    """Mean Dice per region over ``ids`` with ``absent`` left out, or the refusal message."""
    from gliocascade.errors import InputError
    from gliocascade.io import read_labels
    from gliocascade.metrics import evaluate_arrays
    from gliocascade.predict import load_models, predict_case

    models = load_models([model], "cpu")
    scores = []
    for cid in ids:
        images = {m: root / cid / f"{cid}_{m}.nii.gz" for m in MODALITIES if m != absent}
        out = work / f"{model.name}_{absent or 'none'}_{cid}"
        try:
            pred = predict_case(images, cid, models, out, tta=1, device="cpu")
        except InputError as exc:
            return str(exc)
        p, aff = read_labels(pred)
        g, _ = read_labels(root / cid / f"{cid}_seg.nii.gz")
        scores.append(evaluate_arrays(p, g, (1.0, 1.0, 1.0)))
    return {r: float(np.mean([s[f"dice_{r}"] for s in scores])) for r in ("WT", "TC", "ET")}


def _losses(by_absent: dict) -> dict[str, float]:
    """Mean Dice (over regions) with all four minus with each single modality missing."""
    full = float(np.mean(list(by_absent["none"].values())))
    return {m: full - float(np.mean(list(by_absent[m].values()))) for m in MODALITIES}


def main() -> None:
    import torch

    from gliocascade.phantom import write_phantoms

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--results", type=Path, default=Path(__file__).parent / "results" / "missing_modalities.json")
    args = ap.parse_args()
    torch.set_num_threads(2)
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_phantoms(tmp / "train", n=8, seed=0, shape=(64, 64, 48))
        write_phantoms(tmp / "test", n=4, seed=HELD_OUT, shape=(64, 64, 48))
        sheet = _sheet(tmp / "train.csv", tmp / "train", [f"phantom{s:03d}" for s in range(8)])
        test_ids = [f"phantom{s}" for s in range(HELD_OUT, HELD_OUT + 4)]
        results = {}
        for name, dropout, flags in VARIANTS:
            model = _train(sheet, tmp / name, dropout, flags, args.epochs, args.steps)
            results[name] = {absent or "none": _dice(model, tmp / "test", test_ids, absent, tmp / "pred")
                             for absent in (None, *MODALITIES)}
    losses = {name: _losses(results[name]) for name in ("dropout_0.25", "dropout_0.25_presence_flags")}
    refused = all(isinstance(results["no_dropout"][m], str) for m in MODALITIES)
    doc = {"data": "synthetic phantoms (train seeds 0-7, held-out seeds 1000-1003, 64x64x48), tiny config",
           "epochs": args.epochs, "steps_per_epoch": args.steps, "tta": 1, "results": results,
           "mean_dice_loss_per_missing_modality": losses["dropout_0.25"],
           "mean_dice_loss_per_missing_modality_with_presence_flags": losses["dropout_0.25_presence_flags"],
           "target_loss": TARGET_LOSS,
           "meets_target": bool(max(losses["dropout_0.25"].values()) <= TARGET_LOSS),
           "meets_target_with_presence_flags": bool(max(losses["dropout_0.25_presence_flags"].values()) <= TARGET_LOSS),
           "no_dropout_model_refuses_every_incomplete_case": refused,
           "seconds": round(time.time() - started, 1)}
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps({k: doc[k] for k in ("mean_dice_loss_per_missing_modality", "meets_target",
                                          "mean_dice_loss_per_missing_modality_with_presence_flags",
                                          "meets_target_with_presence_flags",
                                          "no_dropout_model_refuses_every_incomplete_case", "seconds")}, indent=2))


if __name__ == "__main__":
    main()
