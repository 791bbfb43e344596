"""The cohort report: its CSVs hold the right numbers, the page is self-contained, bad inputs are listed."""
from __future__ import annotations

import base64
import io
import re
import shutil

import numpy as np
import pandas as pd
import pytest

from gliocascade.io import read_labels, write_labels
from gliocascade.metrics import evaluate_case, metric_columns, write_metrics_csv
from gliocascade.report import build_report, collect_metrics, summarise


@pytest.fixture(scope="module")
def run_dir(small_phantoms, tmp_path_factory):
    """A run-shaped folder: OUT/<id>/<id>_seg.nii.gz, preprocessed/<id>_t1ce.nii.gz, <id>_metrics.csv."""
    out = tmp_path_factory.mktemp("run")
    for k, case in enumerate(sorted(p.name for p in small_phantoms.iterdir())):
        src = small_phantoms / case
        folder = out / case
        (folder / "preprocessed").mkdir(parents=True)
        shutil.copy(src / f"{case}_t1ce.nii.gz", folder / "preprocessed" / f"{case}_t1ce.nii.gz")
        labels, aff = read_labels(src / f"{case}_seg.nii.gz")
        write_labels(folder / f"{case}_seg.nii.gz", np.roll(labels, k, axis=0), aff)
        row = evaluate_case(folder / f"{case}_seg.nii.gz", src / f"{case}_seg.nii.gz", case)
        write_metrics_csv([row], folder / f"{case}_metrics.csv")
    (out / "report").mkdir()  # a previous report folder is not a case
    return out


def _images(page: str) -> list[bytes]:
    return [base64.b64decode(b) for b in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)]


def _ortho_axial(page: str, what: str = "T1Gd") -> bytes:
    """The axial image of a case page's orthogonal slices (through the largest component's centre)."""
    ortho = page.split(f"Orthogonal slices on {what}", 1)[1]
    m = re.search(r"data-view='axial'[^>]*src='data:image/png;base64,([A-Za-z0-9+/=]+)'", ortho)
    assert m, f"no orthogonal axial slice on {what}"
    return base64.b64decode(m.group(1))


def test_cohort_and_summary_hold_the_cases_numbers(run_dir, tmp_path):
    files = sorted(run_dir.glob("*/*_metrics.csv"))
    res = build_report(files, tmp_path / "rep")
    cohort = pd.read_csv(res.cohort_csv)
    assert list(cohort.columns) == metric_columns(True) + ["qc_flags"]
    assert cohort["case_id"].tolist() == sorted(p.parent.name for p in files)
    assert cohort["dice_WT"].iloc[0] == 1.0  # case 0 is not shifted
    summary = pd.read_csv(res.summary_csv)
    assert list(summary.columns) == ["metric", "region", "mean", "std", "median", "q1", "q3", "count"]
    assert len(summary[summary.region.isin(["WT", "TC", "ET"])]) == 3 * 6
    row = summary[(summary.metric == "hd95") & (summary.region == "TC")].iloc[0]
    v = cohort["hd95_TC"].to_numpy()
    assert row["mean"] == pytest.approx(v.mean())
    assert row["std"] == pytest.approx(v.std(ddof=1))
    assert row["median"] == pytest.approx(np.median(v))
    assert (row["q1"], row["q3"]) == pytest.approx(tuple(np.percentile(v, [25, 75])))
    assert row["count"] == 4


def test_run_dir_report_is_self_contained_with_plots_and_overlays(cli, run_dir, tmp_path):
    out = tmp_path / "rep"
    res = cli("report", "--run-dir", run_dir, "--out", out)
    assert res.exit_code == 0, res.output
    page = (out / "report.html").read_text()
    assert not re.search(r"src=['\"](?!data:)", page), "external image in the page"
    assert not re.search(r"href=['\"](?!cases/[\w.-]+\.html['\"])", page), "a link outside the report"
    assert "http" not in page
    assert page.count("box plots") == 3
    assert page.count("thumbnail' src=") == 4
    for case in ("phantom000", "phantom003"):
        assert f"id='{case}'" in page and f"href='cases/{case}.html'" in page
        case_page = (out / "cases" / f"{case}.html").read_text()
        assert not re.search(r"src=['\"](?!data:)", case_page), "external image in a case page"
        assert "Mosaic on T1Gd" in case_page and all(b.startswith(b"\x89PNG") for b in _images(case_page))
    assert all(b.startswith(b"\x89PNG") for b in _images(page))
    assert len(pd.read_csv(out / "cohort_metrics.csv")) == 4
    # failures.csv always: header only here, as `run` writes it (the Nextflow REPORT declares it)
    assert sorted(p.name for p in out.iterdir()) == ["cases", "cohort_metrics.csv", "failures.csv", "report.html",
                                                    "summary.csv"]
    assert (out / "failures.csv").read_text() == "case_id,step,message\n"


def test_overlays_only_for_the_cases_asked_for(run_dir, tmp_path):
    """A run's report names its cases: folders of earlier runs in the same OUT get no page."""
    files = sorted(run_dir.glob("*/*_metrics.csv"))[:2]
    keep = [f.parent.name for f in files]
    page = build_report(files, tmp_path / "rep", run_dir, case_ids=keep).html.read_text()
    assert page.count("thumbnail' src=") == 2
    assert all(f"id='{c}'" in page for c in keep)
    assert "id='phantom003'" not in page
    assert sorted(p.name for p in (tmp_path / "rep" / "cases").iterdir()) == [f"{c}.html" for c in keep]
    build_report(files[:1], tmp_path / "rep", run_dir, case_ids=keep[:1])  # a page of a dropped case goes
    assert sorted(p.name for p in (tmp_path / "rep" / "cases").iterdir()) == [f"{keep[0]}.html"]


def test_case_page_shows_every_label_colour_through_the_tumour(run_dir, tmp_path):
    from PIL import Image

    case = "phantom001"
    build_report([run_dir / case / f"{case}_metrics.csv"], tmp_path / "rep", run_dir, case_ids=[case])
    page = (tmp_path / "rep" / "cases" / f"{case}.html").read_text()
    img = np.asarray(Image.open(io.BytesIO(_ortho_axial(page))).convert("RGB"), dtype=float) / 255
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    yellowish = (r - b > 0.3) & (g - b > 0.3) & (np.abs(r - g) < 0.15)  # enhancing rim
    greenish = (g - r > 0.25) & (g - b > 0.25)                            # oedema
    reddish = (r - g > 0.25) & (r - b > 0.25)                             # necrotic core
    assert yellowish.sum() > 50 and greenish.sum() > 50 and reddish.sum() > 20
    grey = (np.abs(r - g) < 0.02) & (np.abs(g - b) < 0.02) & (r > 0.3)
    assert grey.sum() > 500  # the T1Gd background is drawn


def test_one_bad_metrics_file_is_listed_and_the_others_reported(cli, run_dir, tmp_path):
    files = sorted(run_dir.glob("*/*_metrics.csv"))
    bad = tmp_path / "broken_metrics.csv"
    bad.write_text("case_id,dice_WT\nx,not-a-number\n")
    out = tmp_path / "rep"
    args = [a for f in files for a in ("--metrics", f)]
    res = cli("report", *args, "--metrics", bad, "--out", out)
    assert res.exit_code == 0, res.output
    assert str(bad) in res.stderr and "warning" in res.stderr
    assert len(pd.read_csv(out / "cohort_metrics.csv")) == 4
    page = (out / "report.html").read_text()
    assert "Unusable metrics files" in page and str(bad) in page


def test_all_bad_metrics_files_exit_2_and_write_nothing(cli, tmp_path):
    bad = tmp_path / "a_metrics.csv"
    bad.write_text("")
    out = tmp_path / "rep"
    res = cli("report", "--metrics", bad, "--metrics", tmp_path / "missing.csv", "--out", out)
    assert res.exit_code == 2
    assert res.stderr.startswith("error: ") and len(res.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_duplicate_case_ids_keep_the_first_file(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("case_id,dice_WT\nc1,0.5\n")
    b.write_text("case_id,dice_WT\nc1,0.9\n")
    cohort, bad = collect_metrics([a, b])
    assert cohort["dice_WT"].tolist() == [0.5]
    assert bad and bad[0][0] == str(b) and "c1" in bad[0][1]


def test_failed_cases_are_listed(run_dir, tmp_path):
    files = sorted(run_dir.glob("*/*_metrics.csv"))[:2]
    res = build_report(files, tmp_path / "rep", failures=[("case<9>", "preprocess: no brain found")])
    page = res.html.read_text()
    assert "Failed cases" in page and "case&lt;9&gt;" in page and "preprocess: no brain found" in page
    assert "1 failed case(s)" in page


def test_report_with_no_metrics_still_lists_failures(tmp_path):
    """The pipeline builds a report even when every case failed."""
    res = build_report([], tmp_path / "rep", failures=[("c1", "predict: out of memory")])
    assert "c1" in res.html.read_text()
    assert res.n_cases == 0
    assert pd.read_csv(res.summary_csv).empty


def test_cohort_without_ground_truth_gets_volumes_and_overlays(small_phantoms, tmp_path):
    run = tmp_path / "run"
    for case in ("phantom000", "phantom002"):
        (run / case).mkdir(parents=True)
        shutil.copy(small_phantoms / case / f"{case}_seg.nii.gz", run / case / f"{case}_seg.nii.gz")
        shutil.copy(small_phantoms / case / f"{case}_t1ce.nii.gz", run / case / f"{case}_t1ce.nii.gz")
        write_metrics_csv([evaluate_case(run / case / f"{case}_seg.nii.gz", None, case)],
                          run / case / f"{case}_metrics.csv")
    res = build_report(sorted(run.glob("*/*_metrics.csv")), tmp_path / "rep", run_dir=run)
    summary = pd.read_csv(res.summary_csv)
    assert set(summary["metric"]) == {"volume_pred_ml"} and summary["count"].tolist() == [2, 2, 2]
    page = res.html.read_text()
    assert page.count("thumbnail' src=") == 2 and page.count("box plots") == 3


def test_summary_ignores_missing_cells():
    cohort = pd.DataFrame({"case_id": ["a", "b", "c"], "dice_ET": [0.5, np.nan, 1.0], "extra": [1.0, 2.0, 3.0]})
    s = summarise(cohort)
    et = s[s.metric == "dice"].iloc[0]
    assert (et["region"], et["count"], et["mean"]) == ("ET", 2, 0.75)
    assert s[s.metric == "extra"].iloc[0]["region"] == ""


def test_real_case_overlay_and_volumes(data_dir, tmp_path):
    """A BraTS-space glioma (TCGA-FG-6692) with the fusion of five BraTS 2020 algorithms as its labels."""
    src = data_dir / "brats_space" / "TCGA-FG-6692"
    if not src.is_dir():
        pytest.skip(f"{src} not present")
    case = "TCGA-FG-6692"
    run = tmp_path / "run"
    (run / case / "preprocessed").mkdir(parents=True)
    (run / case / f"{case}_seg.nii.gz").symlink_to(src / "fusion_simple.nii.gz")
    (run / case / "preprocessed" / f"{case}_t1ce.nii.gz").symlink_to(src / f"{case}_t1ce.nii.gz")
    write_metrics_csv([evaluate_case(run / case / f"{case}_seg.nii.gz", None, case)], run / case / f"{case}_metrics.csv")
    res = build_report(sorted(run.glob("*/*_metrics.csv")), tmp_path / "rep", run_dir=run)
    cohort = pd.read_csv(res.cohort_csv)
    labels, _ = read_labels(src / "fusion_simple.nii.gz")
    assert cohort["volume_pred_ml_WT"].iloc[0] == pytest.approx(np.count_nonzero(labels) / 1000)
    import matplotlib.image as mpimg

    page = (tmp_path / "rep" / "cases" / f"{case}.html").read_text()
    img = mpimg.imread(io.BytesIO(_ortho_axial(page)))[..., :3]
    coloured = (np.abs(img[..., 0] - img[..., 2]) > 0.3) | (np.abs(img[..., 1] - img[..., 2]) > 0.3)
    assert coloured.sum() > 200


def test_background_falls_back_to_the_t1ce_that_predict_read(small_phantoms, tmp_path):
    import json

    from gliocascade.report import find_background

    case = "phantom001"
    (tmp_path / case).mkdir()
    assert find_background(tmp_path, case) is None
    t1ce = small_phantoms / case / f"{case}_t1ce.nii.gz"
    (tmp_path / case / "provenance_predict.json").write_text(json.dumps({"inputs": {"t1ce": {"path": str(t1ce)}}}))
    assert find_background(tmp_path, case) == t1ce
    (tmp_path / case / "preprocessed").mkdir()
    shutil.copy(t1ce, tmp_path / case / "preprocessed" / f"{case}_t1ce.nii.gz")
    assert find_background(tmp_path, case) == tmp_path / case / "preprocessed" / f"{case}_t1ce.nii.gz"


def test_a_file_named_twice_is_reported_once(cli, run_dir, tmp_path):
    one = sorted(run_dir.glob("*/*_metrics.csv"))[0]
    res = cli("report", "--run-dir", run_dir, "--metrics", one, "--out", tmp_path / "rep")
    assert res.exit_code == 0 and "warning" not in res.stderr
    assert len(pd.read_csv(tmp_path / "rep" / "cohort_metrics.csv")) == 4
