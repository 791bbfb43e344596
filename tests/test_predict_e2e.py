"""End to end on held-out phantoms: trained `tiny` model -> predict (8 flips) -> postprocess -> evaluate."""
from __future__ import annotations

import pandas as pd
import pytest

HELD_OUT_SEEDS = (1000, 1001, 1002)  # the tiny_model fixture trains on seeds 0-5


@pytest.mark.slow
def test_tiny_model_predict_postprocess_evaluate(cli, tiny_model, tmp_path):
    from conftest import TINY_SHAPE

    from gliocascade.phantom import write_phantoms

    cases = tmp_path / "cases"
    write_phantoms(cases, n=len(HELD_OUT_SEEDS), seed=HELD_OUT_SEEDS[0], shape=TINY_SHAPE, prefix="heldout")
    out = tmp_path / "out"
    res = cli("predict", "--cases", cases, "--model", tiny_model, "--out", out, "--tta", "8", "--device", "cpu")
    assert res.exit_code == 0, res.output
    rows = []
    for seed in HELD_OUT_SEEDS:
        cid = f"heldout{seed:03d}"
        pred, seg = out / cid / f"{cid}_pred.nii.gz", out / cid / f"{cid}_seg.nii.gz"
        res = cli("postprocess", "--pred", pred, "--out", seg, "--et-threshold", 20)
        assert res.exit_code == 0, res.output
        csv = out / cid / f"{cid}_metrics.csv"
        res = cli("evaluate", "--pred", seg, "--gt", cases / cid / f"{cid}_seg.nii.gz", "--case-id", cid, "--out", csv)
        assert res.exit_code == 0, res.output
        rows.append(pd.read_csv(csv).iloc[0])
    table = pd.DataFrame(rows)
    dice = table[["dice_WT", "dice_TC", "dice_ET"]]
    # Mean Dice over the held-out cases and the three regions (the learning check's criterion).
    assert dice.to_numpy().mean() >= 0.9, dice.to_string()
    assert (dice.mean(axis=0) >= 0.85).all(), dice.to_string()
