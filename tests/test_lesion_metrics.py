"""Lesion-wise metrics: equal to brats-evaluation 0.0.10 (panoptica + its parsers) and sensitive to
missed small lesions where voxel-wise Dice is not."""
from __future__ import annotations

import json
import math

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from gliocascade.labels import convert_labels
from gliocascade.lesion_metrics import lesion_columns, lesion_wise_metrics
from gliocascade.metrics import evaluate_arrays


def _official(pred_path, ref_path, task: str, tmp_path) -> pd.Series:
    """The official chain: panoptica with the bundled config, then the task's parser."""
    be = pytest.importorskip("brats_evaluation")
    from panoptica import Panoptica_Evaluator

    evaluator = Panoptica_Evaluator.load_from_config(str(be.config_path({"goat": "GoAT"}.get(task, task))))
    result = be.evaluate_single_exam(str(pred_path), str(ref_path), "case", evaluator)
    js, csv = tmp_path / f"{task}.json", tmp_path / f"{task}.csv"
    js.write_text(json.dumps({"metrics": [result]}))
    if task == "mets":
        be.parse_mets_results(str(js), 20.0, 0.1, str(csv))
    else:
        be.parse_seg_results(str(js), str(csv))
    return pd.read_csv(csv).iloc[0]


def _assert_equal(mine: dict, official: pd.Series) -> None:
    assert mine, "no lesion-wise columns"
    for key, value in mine.items():
        expected = float(official[key])
        if math.isnan(expected):
            assert math.isnan(value), (key, value, expected)
        elif math.isinf(expected):
            assert value == expected, (key, value, expected)
        else:
            assert abs(value - expected) <= 1e-6, (key, value, expected)


def _box(arr, lo, hi, value):
    arr[tuple(slice(a, b) for a, b in zip(lo, hi))] = value


def _phantom_pair():
    """A 2019-convention reference with three lesions and a prediction that finds two, splits
    one, misses one and adds a false positive."""
    ref = np.zeros((48, 44, 36), np.uint8)
    _box(ref, (4, 4, 4), (16, 16, 14), 2)
    _box(ref, (7, 7, 7), (13, 13, 11), 1)
    _box(ref, (8, 8, 8), (12, 12, 10), 4)
    _box(ref, (24, 24, 20), (34, 32, 30), 4)
    _box(ref, (40, 6, 26), (43, 9, 29), 4)           # small lesion: 27 voxels
    pred = np.zeros_like(ref)
    _box(pred, (5, 4, 4), (16, 15, 14), 2)
    _box(pred, (7, 8, 7), (13, 13, 11), 1)
    _box(pred, (8, 8, 8), (12, 13, 10), 4)
    _box(pred, (24, 24, 20), (28, 32, 30), 4)
    _box(pred, (30, 24, 20), (34, 32, 30), 4)        # the large ET lesion found as two pieces
    _box(pred, (40, 36, 4), (44, 40, 8), 4)          # a false positive
    return pred, ref


CASES = {"several": lambda p, r: (p, r), "empty_pred": lambda p, r: (np.zeros_like(p), r),
         "empty_ref": lambda p, r: (p, np.zeros_like(r)), "both_empty": lambda p, r: (np.zeros_like(p),) * 2}


@pytest.mark.parametrize("task", ["gli", "mets", "goat"])
@pytest.mark.parametrize("case", list(CASES))
def test_phantoms_equal_official(task, case, tmp_path):
    pytest.importorskip("brats_evaluation")
    pred, ref = CASES[case](*_phantom_pair())
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    paths = []
    for name, arr in (("pred", pred), ("ref", ref)):
        path = tmp_path / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(convert_labels(arr, "2019", "2023"), affine), path)
        paths.append(path)
    mine = lesion_wise_metrics(pred, ref, (1.0, 1.0, 1.0), task, "2019")
    assert list(mine) == lesion_columns(task, "2019")
    _assert_equal(mine, _official(*paths, task, tmp_path))


def test_real_mets_pair_equals_official(data_dir, tmp_path):
    pytest.importorskip("brats_evaluation")
    folder = data_dir / "metrics" / "BraTS-MET-01352-000"
    if not folder.is_dir():
        pytest.skip(f"real metrics pair not found at {folder}")
    pred_img, ref_img = nib.load(folder / "prediction.nii.gz"), nib.load(folder / "reference.nii.gz")
    pred, ref = (np.asarray(i.dataobj).astype(np.uint8) for i in (pred_img, ref_img))
    spacing = tuple(float(z) for z in pred_img.header.get_zooms()[:3])
    assert len(set(spacing)) > 1, "the pair is anisotropic: it checks the official axis-spacing pairing"
    mine = lesion_wise_metrics(pred, ref, spacing, "mets", "2023")
    assert mine["all_instance_tp_wt"] > 0 and mine["all_instance_fn_wt"] > 0
    _assert_equal(mine, _official(folder / "prediction.nii.gz", folder / "reference.nii.gz", "mets", tmp_path))


def test_missing_small_lesion_lowers_lesion_dice_not_voxel_dice():
    ref = np.zeros((64, 64, 48), np.uint8)
    _box(ref, (10, 10, 10), (30, 30, 30), 4)         # 8000 voxels
    _box(ref, (45, 45, 35), (49, 49, 39), 4)         # 64 voxels, above the 20 mm^3 size threshold
    missed = ref.copy()
    missed[40:] = 0
    spacing = (1.0, 1.0, 1.0)
    full, partial = (lesion_wise_metrics(p, ref, spacing, "mets") for p in (ref, missed))
    voxel_full, voxel_partial = (evaluate_arrays(p, ref, spacing) for p in (ref, missed))
    for region in ("wt", "tc", "et"):
        assert full[f"lesionwise_dsc_mean_{region}"] - partial[f"lesionwise_dsc_mean_{region}"] >= 0.3
        assert partial[f"all_instance_fn_{region}"] == 1 and full[f"all_instance_fn_{region}"] == 0
        drop = voxel_full[f"dice_{region.upper()}"] - voxel_partial[f"dice_{region.upper()}"]
        assert 0 < drop < 0.02


def test_evaluate_cli_lesion_wise_columns(cli, tmp_path):
    pred, ref = _phantom_pair()
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    nib.save(nib.Nifti1Image(pred, affine), tmp_path / "p.nii.gz")
    nib.save(nib.Nifti1Image(ref, affine), tmp_path / "g.nii.gz")
    out = tmp_path / "m.csv"
    res = cli("evaluate", "--pred", str(tmp_path / "p.nii.gz"), "--gt", str(tmp_path / "g.nii.gz"),
              "--case-id", "P1", "--out", str(out), "--lesion-wise", "--lesion-task", "mets")
    assert res.exit_code == 0, res.output
    row = pd.read_csv(out).iloc[0]
    expected = lesion_wise_metrics(pred, ref, (1.0, 1.0, 1.0), "mets", "2019")
    assert list(row.index[-len(expected):]) == list(expected)
    for key, value in expected.items():
        assert (math.isnan(value) and math.isnan(row[key])) or abs(row[key] - value) <= 1e-9, key
    assert "dice_WT" in row.index and abs(row["dice_WT"] - evaluate_arrays(pred, ref, (1, 1, 1))["dice_WT"]) < 1e-9
    plain = tmp_path / "plain.csv"
    assert cli("evaluate", "--pred", str(tmp_path / "p.nii.gz"), "--gt", str(tmp_path / "g.nii.gz"),
               "--case-id", "P1", "--out", str(plain)).exit_code == 0
    assert not any(c.startswith("lesionwise_") for c in pd.read_csv(plain).columns)
    alone = cli("evaluate", "--pred", str(tmp_path / "p.nii.gz"), "--case-id", "P1", "--out",
                str(tmp_path / "alone.csv"), "--lesion-wise")
    assert alone.exit_code == 2 and "--lesion-wise needs a reference" in alone.stderr
    assert not (tmp_path / "alone.csv").exists()


def test_report_titles_lesion_columns():
    from gliocascade.report_html import column_title

    assert column_title("lesionwise_hd95_mean_wt") == "lesion-wise HD95 WT (mm)"
    assert column_title("all_instance_fn_netc") == "lesions FN NETC"
    assert column_title("dice_WT") == "Dice WT"


def test_2024_resection_cavity_is_a_region_equal_to_official(tmp_path):
    pytest.importorskip("brats_evaluation")
    pred, ref = (convert_labels(a, "2019", "2023") for a in _phantom_pair())
    _box(ref, (30, 4, 4), (38, 12, 12), 4)           # a resection cavity (RC = 4 in 2024)
    _box(pred, (31, 4, 4), (38, 12, 11), 4)
    paths = []
    for name, arr in (("pred", pred), ("ref", ref)):
        paths.append(tmp_path / f"{name}.nii.gz")
        nib.save(nib.Nifti1Image(arr, np.eye(4)), paths[-1])
    mine = lesion_wise_metrics(pred, ref, (1.0, 1.0, 1.0), "gli", "2024")
    assert "lesionwise_dsc_mean_rc" in mine and mine["all_instance_tp_rc"] == 1
    assert "lesionwise_dsc_mean_rc" not in lesion_wise_metrics(pred, ref, (1.0, 1.0, 1.0), "gli", "2023")
    _assert_equal(mine, _official(*paths, "gli", tmp_path))
