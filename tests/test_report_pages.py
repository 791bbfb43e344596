"""Case pages and the cohort page: QC flags fire on each condition, slices come from the largest
component, the reference is outlined, preprocessing QC is shown, and the cohort page stays light."""
from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import ndimage

from gliocascade.io import brats_affine, read_labels, write_image, write_labels
from gliocascade.qc_flags import case_flags, cohort_flags, outliers, overridden_checks, tumour_facts
from gliocascade.report import build_report
from gliocascade.report_figures import REFERENCE_RGB

ATLAS_RGB = (255, 0, 255)


def _cubes(n: int, size: int = 3, gap: int = 2, shape=(64, 64, 16)) -> np.ndarray:
    """``n`` separate cubes of ``size``^3 voxels (label 2), ``gap`` voxels apart."""
    labels = np.zeros(shape, dtype=np.int16)
    step = size + gap
    per_row = shape[0] // step
    for k in range(n):
        x, y = (k % per_row) * step, (k // per_row) * step
        labels[x:x + size, y:y + size, 4:4 + size] = 2
    return labels


# --------------------------------------------------------------------------- flags

def test_each_flag_condition_raises_its_flag_and_a_clean_case_none():
    voxel_ml = 0.001
    clean = np.zeros((40, 40, 40), dtype=np.int16)
    clean[10:20, 10:20, 10:20] = 2
    clean[13:17, 13:17, 13:17] = 4
    assert case_flags(tumour_facts(clean, voxel_ml)) == []

    assert case_flags(tumour_facts(np.zeros_like(clean), voxel_ml)) == ["empty prediction"]
    big = np.zeros((70, 70, 70), dtype=np.int16)
    big[:, :, :62] = 2  # 303.8 mL at 1 mm
    assert [f for f in case_flags(tumour_facts(big, voxel_ml)) if "mL > 300" in f]
    nearly = np.zeros((70, 70, 70), dtype=np.int16)
    nearly[:, :, :61] = 2  # 298.9 mL
    assert case_flags(tumour_facts(nearly, voxel_ml)) == []

    assert [f for f in case_flags(tumour_facts(_cubes(21), voxel_ml)) if "21 components" in f]
    assert case_flags(tumour_facts(_cubes(20), voxel_ml)) == []
    assert case_flags(tumour_facts(_cubes(30, size=2), voxel_ml)) == []  # 8-voxel specks are not counted

    # Diagonal neighbours are one 26-connected component: 21 cubes joined corner to corner are one.
    chain = np.zeros((80, 80, 80), dtype=np.int16)
    for k in range(21):
        chain[3 * k:3 * k + 3, 3 * k:3 * k + 3, 3 * k:3 * k + 3] = 2
    facts = tumour_facts(chain, voxel_ml)
    assert (facts.n_components, facts.n_large_components) == (1, 1)

    assert case_flags(None, ["preprocess (t2): registration looked wrong"]) == [
        "QC overridden: preprocess (t2): registration looked wrong"]
    assert case_flags(None, failure="predict: out of memory") == ["failed: predict: out of memory"]
    assert case_flags(None, reference_ok=False) == ["reference failed QC (qc_reference 0)"]
    assert case_flags(None, reference_ok=True) == []


def test_overridden_qc_blocks_are_found_and_passing_ones_are_not():
    provenance = {
        "preprocess": {"qc": {"checks": {"t2": {"score": 0.1, "threshold": 0.3, "passed": False},
                                         "atlas": {"score": 0.5, "threshold": 0.2, "passed": True}},
                              "decision": "overridden", "reasons": ["--force"]}},
        "predict": {"qc": {"checks": {}, "decision": "pass", "reasons": []}},
        "evaluate": {"qc": {"decision": "fail"}},
    }
    assert overridden_checks(provenance) == ["preprocess (t2): --force"]
    assert overridden_checks({"preprocess": {}}) == []


def test_outliers_beyond_one_and_a_half_iqr_only_in_cohorts_of_eight():
    dice = {f"c{k}": 0.85 + 0.01 * k for k in range(7)}
    dice["low"] = 0.10
    flagged = outliers(dice, "WT Dice")
    assert list(flagged) == ["low"] and "WT Dice outlier" in flagged["low"]
    dice.pop("c0")
    assert outliers(dice, "WT Dice") == {}  # 7 cases: no outlier flags
    merged = cohort_flags({k: [] for k in dice} | {"c0": []}, {**dice, "c0": 0.85},
                          {**{k: 20.0 + k.__len__() for k in dice}, "c0": 900.0})
    assert "WT Dice outlier" in " ".join(merged["low"])
    assert "WT volume (mL) outlier" in " ".join(merged["c0"])
    assert all(merged[k] == [] for k in merged if k not in ("low", "c0"))


# --------------------------------------------------------------------------- run folders

def _run_case(run: Path, case_id: str, labels: np.ndarray, t1ce: np.ndarray, reference: np.ndarray | None = None,
              provenance: dict | None = None) -> Path:
    """A case folder as `run` leaves it for a BraTS-space row: seg, T1Gd and FLAIR beside it, metrics, provenance."""
    from gliocascade.metrics import evaluate_case, write_metrics_csv

    folder = run / case_id
    folder.mkdir(parents=True)
    aff = brats_affine()
    write_labels(folder / f"{case_id}_seg.nii.gz", labels, aff)
    write_image(folder / f"{case_id}_t1ce.nii.gz", t1ce, aff)
    write_image(folder / f"{case_id}_flair.nii.gz", t1ce[::-1].copy(), aff)
    gt = None
    if reference is not None:
        gt = run.parent / f"{case_id}_gt.nii.gz"
        write_labels(gt, reference, aff)
        (folder / "provenance_evaluate.json").write_text(json.dumps(
            {"inputs": {"gt": {"path": str(gt)}}, "parameters": {"pred_labels": "2019", "gt_labels": "2019"},
             "timings_s": {"total": 0.5}, "command": "gliocascade evaluate"}))
    write_metrics_csv([evaluate_case(folder / f"{case_id}_seg.nii.gz", gt, case_id)], folder / f"{case_id}_metrics.csv")
    (folder / "provenance_predict.json").write_text(json.dumps(provenance or {
        "command": "gliocascade run --samplesheet s.csv", "timings_s": {"total": 3.25, "inference": 3.0},
        "models": [{"folder": str(run / "no-such-model"), "et_threshold": None}],
        "warnings": ["model m was trained on synthetic phantoms only"]}))
    return folder


def _two_tumours(shape=(48, 48, 40)) -> np.ndarray:
    """A large tumour at z 18-29 and a small separate one at z 3-6 (which must not steer the slices)."""
    labels = np.zeros(shape, dtype=np.int16)
    labels[10:30, 10:30, 18:30] = 2
    labels[15:25, 15:25, 21:27] = 1
    labels[14:26, 14:26, 20] = 4
    labels[35:40, 35:40, 3:7] = 2
    return labels


def _background(shape) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (100 + 20 * rng.standard_normal(shape)).astype(np.float32)


def _rgb(b64: str) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"))


def _slices(page: str, section: str) -> list[tuple[str, int, str]]:
    """(view, index, base64 png) of the images in the page's div of class ``section``."""
    blocks = re.findall(rf"<div class='row {section}'>(.*?)</div>", page, flags=re.S)
    return [(v, int(i), png) for block in blocks for v, i, png in re.findall(
        r"data-view='(\w+)' data-slice='(\d+)'[^>]*src='data:image/png;base64,([A-Za-z0-9+/=]+)'", block)]


def _has(rgb: np.ndarray, colour: tuple[int, int, int]) -> int:
    return int(np.all(rgb == np.asarray(colour, dtype=np.uint8), axis=-1).sum())


def test_mosaic_slices_lie_in_the_largest_components_z_range(tmp_path):
    labels = _two_tumours()
    run = tmp_path / "run"
    _run_case(run, "two", labels, _background(labels.shape))
    build_report(sorted(run.glob("*/*_metrics.csv")), tmp_path / "rep", run)
    page = (tmp_path / "rep" / "cases" / "two.html").read_text()

    ras = np.asarray(nib.as_closest_canonical(nib.load(run / "two" / "two_seg.nii.gz")).dataobj) > 0
    comp, n = ndimage.label(ras, structure=np.ones((3, 3, 3)))
    assert n == 2
    largest = comp == np.bincount(comp.ravel())[1:].argmax() + 1
    z = np.nonzero(largest.any(axis=(0, 1)))[0]
    mosaic = _slices(page, "mosaic")
    assert len(mosaic) == 12  # 6 slices on T1Gd and 6 on FLAIR
    assert all(view == "axial" and z.min() <= i <= z.max() for view, i, _ in mosaic)
    assert {i for _, i, _ in mosaic} >= {int(z.min()), int(z.max())}
    centre = np.round(np.argwhere(largest).mean(axis=0)).astype(int)
    ortho = _slices(page, "ortho")
    assert [(v, i) for v, i, _ in ortho[:3]] == [("axial", centre[2]), ("coronal", centre[1]), ("sagittal", centre[0])]
    # the one-voxel-thick enhancing slab stays visible in the axial image through it (opaque outline colour)
    at_rim = [png for v, i, png in mosaic if i == 20]
    assert not at_rim or _has(_rgb(at_rim[0]), (255, 217, 0)) > 20
    assert "Prediction vs reference" not in page
    assert _has(_rgb(ortho[0][2]), REFERENCE_RGB) == 0


def test_reference_outline_and_disagreement_panels_with_a_reference(tmp_path):
    labels = _two_tumours()
    reference = np.roll(labels, 3, axis=0)
    run = tmp_path / "run"
    _run_case(run, "ref", labels, _background(labels.shape), reference=reference)
    build_report(sorted(run.glob("*/*_metrics.csv")), tmp_path / "rep", run)
    page = (tmp_path / "rep" / "cases" / "ref.html").read_text()
    ortho = _slices(page, "ortho")
    assert _has(_rgb(ortho[0][2]), REFERENCE_RGB) > 30
    panels = _slices(page, "disagreement")
    assert len(panels) == 3
    for _, _, png in panels:
        rgb = _rgb(png)
        assert _has(rgb, REFERENCE_RGB) > 10
    assert "HD95 WT (mm)" in page and "Dice ET" in page  # the metrics table, units in headers


def test_case_page_facts_name_volumes_components_model_and_command(tmp_path):
    labels = _two_tumours()
    run = tmp_path / "run"
    _run_case(run, "facts", labels, _background(labels.shape))
    build_report(sorted(run.glob("*/*_metrics.csv")), tmp_path / "rep", run)
    page = (tmp_path / "rep" / "cases" / "facts.html").read_text()
    wt = np.count_nonzero(labels) / 1000
    assert f"<td>{wt:.2f}</td>" in page and "WT (mL)" in page
    assert re.search(r"components of &ge; 10 voxels</th></tr><tr>(<td>[^<]*</td>){3}<td>2</td><td>2</td>", page)
    assert "not tuned" in page and "gliocascade run --samplesheet s.csv" in page
    assert "synthetic phantoms only" in page and "3.25" in page
    from gliocascade import __version__

    assert f"gliocascade {__version__}" in page


def test_preprocessing_section_shows_atlas_outline_brain_mask_and_scores(tmp_path, monkeypatch):
    labels = _two_tumours()
    shape = labels.shape
    run = tmp_path / "run"
    folder = _run_case(run, "nat", labels, _background(shape))
    pre = folder / "preprocessed"
    pre.mkdir()
    aff = brats_affine()
    brain = np.zeros(shape, dtype=np.uint8)
    brain[4:44, 4:44, 2:38] = 1
    for m in ("t1", "t1ce", "t2", "flair"):
        write_image(pre / f"nat_{m}.nii.gz", _background(shape) * brain, aff)
    write_labels(pre / "nat_brainmask.nii.gz", brain, aff)
    atlas = tmp_path / "atlas"
    atlas.mkdir()
    atlas_brain = np.zeros(shape, dtype=np.float32)
    atlas_brain[6:42, 6:42, 2:38] = 50
    write_image(atlas / "t1_skullstripped_brats_space.nii.gz", atlas_brain, aff)
    native_aff = np.diag([0.9, 0.9, 1.2, 1.0])  # another grid: the native T1Gd's
    write_image(tmp_path / "native_t1ce.nii.gz", _background(shape), native_aff)
    write_labels(folder / "nat_seg_native.nii.gz", labels, native_aff)
    (pre / "provenance_preprocess.json").write_text(json.dumps({
        "inputs": {"t1ce": {"path": str(tmp_path / "native_t1ce.nii.gz")}},
        "atlas": {"t1_skullstripped": {"path": str(atlas / "t1_skullstripped_brats_space.nii.gz")}},
        "parameters": {"min_edge_corr_coregistration": 0.3, "min_edge_corr_atlas": 0.2},
        "similarity_edge_corr": {"atlas": 0.41, "t1": 0.77, "t2": 0.12, "flair": 0.55},
        "timings_s": {"total": 12.5}, "command": "gliocascade run --samplesheet s.csv"}))
    build_report(sorted(run.glob("*/*_metrics.csv")), tmp_path / "rep", run)
    page = (tmp_path / "rep" / "cases" / "nat.html").read_text()
    table = page.split("<table class='similarity'>", 1)[1].split("</table>", 1)[0]
    rows = re.findall(r"<tr><td>(\w+)</td><td>([\d.]+)</td><td>([\d.]+)</td><td>(.*?)</td></tr>", table)
    assert [(n, s, t) for n, s, t, _ in rows] == [("atlas", "0.410", "0.2"), ("t1", "0.770", "0.3"),
                                                 ("t2", "0.120", "0.3"), ("flair", "0.550", "0.3")]
    assert ["no" in p for *_, p in rows] == [False, False, True, False]
    panels = _slices(page, "registration")
    assert len(panels) == 5
    assert all(_has(_rgb(png), ATLAS_RGB) > 50 and _has(_rgb(png), (255, 255, 0)) > 50 for *_, png in panels[:4])
    assert "data-what='native T1Gd'" in page and _has(_rgb(panels[4][2]), (26, 204, 51)) > 20  # oedema outline


def test_cohort_page_flags_overridden_qc_and_empty_cases_and_links_pages(tmp_path):
    run = tmp_path / "run"
    labels = _two_tumours()
    bg = _background(labels.shape)
    _run_case(run, "ok", labels, bg)
    _run_case(run, "empty", np.zeros_like(labels), bg)
    folder = _run_case(run, "forced", labels, bg)
    (folder / "preprocessed").mkdir()
    (folder / "preprocessed" / "provenance_preprocess.json").write_text(json.dumps(
        {"qc": {"checks": {"t2": {"score": 0.1, "threshold": 0.3, "passed": False}}, "decision": "overridden",
                "reasons": ["accepted by hand"]}}))
    res = build_report(sorted(run.glob("*/*_metrics.csv")), tmp_path / "rep", run,
                       failures=[("lost", "predict: out of memory")])
    cohort = pd.read_csv(res.cohort_csv, keep_default_na=False).set_index("case_id")
    assert cohort.loc["ok", "qc_flags"] == ""
    assert cohort.loc["empty", "qc_flags"] == "empty prediction"
    assert cohort.loc["forced", "qc_flags"] == "QC overridden: preprocess (t2): accepted by hand"
    page = res.html.read_text()
    row = {cid: re.search(rf"<tr id='{cid}'.*?</tr>", page).group(0) for cid in ("ok", "empty", "forced", "lost")}
    assert "href='cases/ok.html'" in row["ok"] and "data-flags='0'" in row["ok"]
    assert "empty prediction" in row["empty"] and "accepted by hand" in row["forced"]
    assert "failed: predict: out of memory" in row["lost"] and "href" not in row["lost"]
    assert "synthetic phantoms only" in row["ok"]
    assert "volume pred WT (mL)" in page and "HD95" not in page  # no reference, no distances
    assert "<th class=\"l\">unit</th>" in page


def test_twenty_case_report_stays_under_ten_kilobytes_per_case(tmp_path):
    from gliocascade.phantom import write_phantoms

    cases = write_phantoms(tmp_path / "ph", n=20, seed=100, shape=(32, 32, 32))
    run = tmp_path / "run"
    for k, case in enumerate(cases):
        cid = case.name
        labels, _ = read_labels(case / f"{cid}_seg.nii.gz")
        t1ce = np.asarray(nib.load(case / f"{cid}_t1ce.nii.gz").dataobj, dtype=np.float32)
        _run_case(run, cid, np.roll(labels, k % 3, axis=0), t1ce, reference=labels)
    res = build_report(sorted(run.glob("*/*_metrics.csv")), tmp_path / "rep", run)
    size = res.html.stat().st_size
    assert size <= 20 * 10 * 1024, size
    page = res.html.read_text()
    assert page.count("thumbnail' src=") == 20 and len(list((tmp_path / "rep" / "cases").glob("*.html"))) == 20
    assert "<script>" in page and "aria-sort" in page  # the sorting code is inline
    assert not re.search(r"src=['\"](?!data:)", page)
