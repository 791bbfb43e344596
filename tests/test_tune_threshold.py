"""ET threshold tuning on a synthetic validation set whose best threshold is known."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from gliocascade.io import brats_affine, write_labels
from gliocascade.threshold_tuning import THRESHOLD_GRID, best_threshold


def _case(shape, pred_et: int, gt_et: int) -> tuple[np.ndarray, np.ndarray]:
    """Oedema everywhere in a block; ``pred_et``/``gt_et`` ET voxels at the same places (prediction exact)."""
    gt = np.zeros(shape, dtype=np.uint8)
    gt[2:-2, 2:-2, 2:-2] = 2
    pred = gt.copy()
    idx = np.flatnonzero(gt == 2)
    gt.flat[idx[:gt_et]] = 4
    pred.flat[idx[:pred_et]] = 4
    return pred, gt


# (predicted ET voxels, reference ET voxels): false positives of 50 and 120 voxels in cases without
# ET, and true small ET of 300 and 400 voxels. Any threshold in (120, 300] is best; the grid's
# smallest such value is 130.
CASES = [(50, 0), (120, 0), (300, 300), (400, 400), (0, 0)]
KNOWN_BEST = 130


def test_best_threshold_known():
    summaries = [(p, 1.0 if p == g else 0.0, g == 0) for p, g in CASES]
    best, mean, means = best_threshold(summaries)
    assert best == KNOWN_BEST
    assert mean == 1.0
    assert means[0] == 0.6  # two false-positive cases score 0 without relabelling
    assert means[1000] == 0.6  # too high: the true ET is removed
    assert set(means) == set(THRESHOLD_GRID) and len(THRESHOLD_GRID) == 101


def _model_dir(root: Path, name: str) -> Path:
    d = root / name
    d.mkdir()
    (d / "model.json").write_text(json.dumps({"format": "gliocascade-model", "config": {"name": "tiny"}, "sha256": {"checkpoint.pt": "0" * 64},
                                              "et_threshold": 999}))
    return d


def test_cli_tune_writes_models(cli, tmp_path):
    pred_dir, gt_dir = tmp_path / "pred", tmp_path / "gt"
    for i, (p, g) in enumerate(CASES):
        pred, gt = _case((24, 24, 20), p, g)
        write_labels(pred_dir / f"v{i}_pred.nii.gz", pred, brats_affine())
        write_labels(gt_dir / f"v{i}" / f"v{i}_seg.nii.gz", gt, brats_affine())  # case-folder layout
    models = [_model_dir(tmp_path, "fold0"), _model_dir(tmp_path, "fold1")]
    before = [json.loads((m / "model.json").read_text()) for m in models]
    res = cli("tune-threshold", "--pred", pred_dir, "--gt", gt_dir, "--model", models[0], "--model", models[1])
    assert res.exit_code == 0, res.output
    for m, old in zip(models, before):
        card = json.loads((m / "model.json").read_text())
        assert card["et_threshold"] == KNOWN_BEST
        assert card["sha256"] == old["sha256"] and card["config"] == old["config"]
        assert card["et_threshold_tuning"]["cases"] == len(CASES)


def test_cli_tune_missing_gt(cli, tmp_path):
    pred, _ = _case((16, 16, 12), 10, 0)
    write_labels(tmp_path / "pred" / "x_pred.nii.gz", pred, brats_affine())
    (tmp_path / "gt").mkdir()
    m = _model_dir(tmp_path, "m")
    res = cli("tune-threshold", "--pred", tmp_path / "pred", "--gt", tmp_path / "gt", "--model", m)
    assert res.exit_code == 2 and "no ground truth for case x" in res.output
    assert json.loads((m / "model.json").read_text())["et_threshold"] == 999
