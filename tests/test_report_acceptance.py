"""The report's acceptance run: two real rows and three phantoms (one broken) through `gliocascade run`.

Rows: ``TCGA-brats`` (the BraTS-space TCGA-FG-6692 images, ``seg`` = their ``fusion_simple``),
``TCGA-raw`` (the raw exam of the same patient, space=native, no seg) and three held-out 64x64x48
phantoms, the last with a truncated T2. The model is the tiny cascade trained on eight phantoms
(``synthetic: true`` in its card), so both real rows must carry the phantom-model warning.

The run happens once (module fixture), as a person starts it, with its output going to a log
file. The tests then check what a reader of the report relies on, against facts they compute
themselves from the written files: the mosaic lies on the largest 26-connected component of each
prediction and shows its labels, the reference is outlined where it exists and nowhere else, the
registration scores are those of provenance, the failed case is flagged with its one-line error,
and the table sorts by WT Dice in a browser. The log holds no progress-bar residue and no
staging folder, nor does any provenance file.
"""
from __future__ import annotations

import base64
import csv
import io
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from conftest import TINY_SHAPE
from gliocascade.phantom import write_phantoms

MODALITIES = ("t1", "t1ce", "t2", "flair")
REAL = ("TCGA-brats", "TCGA-raw")
PHANTOM_SEED = 610  # held out: the tiny model was trained on seeds 0-7
BROKEN = f"phantom{PHANTOM_SEED + 2}"
LABEL_RGB = {(220, 26, 26), (26, 204, 51), (255, 217, 0)}  # the page's label colours
CYAN = (0, 220, 255)  # the reference outline
SYNTHETIC_WARNING = "was trained on synthetic phantoms only"


@dataclass(frozen=True)
class Run:
    """What the acceptance run left: its folder, exit code, the log it wrote, the phantom ids, the reference."""

    out: Path
    code: int
    log: str
    phantoms: list[str]
    reference: Path  # TCGA-brats's seg


@pytest.fixture(scope="module")
def run(data_dir, tiny_model, tmp_path_factory) -> Run:
    root = tmp_path_factory.mktemp("acceptance")
    brats = data_dir / "brats_space" / "TCGA-FG-6692"
    raw = data_dir / "native" / "TCGA-FG-6692"
    reference = brats / "fusion_simple.nii.gz"
    lines = ["case_id,t1,t1ce,t2,flair,seg,space",
             ",".join(["TCGA-brats", *(str(brats / f"TCGA-FG-6692_{m}.nii.gz") for m in MODALITIES),
                       str(reference), "brats"]),
             ",".join(["TCGA-raw", *(str(raw / f"TCGA-FG-6692_{m}.nii.gz") for m in ("t1", "t1c", "t2", "flair")),
                       "", "native"])]
    cases = write_phantoms(root / "phantoms", n=3, seed=PHANTOM_SEED, shape=TINY_SHAPE)
    for case in cases:
        lines.append(",".join([case.name, *(str(case / f"{case.name}_{m}.nii.gz") for m in (*MODALITIES, "seg")),
                               "brats"]))
    t2 = cases[2] / f"{BROKEN}_t2.nii.gz"
    data = t2.read_bytes()
    t2.write_bytes(data[: len(data) // 3])  # truncated: this case must fail alone
    sheet = root / "samples.csv"
    sheet.write_text("\n".join(lines) + "\n")
    out = root / "out"
    log = root / "run.log"
    argv = [sys.executable, "-m", "gliocascade.cli", "run", "--samplesheet", str(sheet), "--model", str(tiny_model),
            "--out", str(out), "--tta", "1", "--device", "cpu", "--workers", "2",
            "--atlas", str(data_dir / "atlas"), "--atlas-via", "t1"]
    with open(log, "w") as fh:
        code = subprocess.run(argv, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              timeout=900).returncode
    return Run(out, code, log.read_text(), [c.name for c in cases], reference)


# --------------------------------------------------------------------------- reading the pages

@dataclass(frozen=True)
class Slice:
    section: str  # the row's class: mosaic, ortho, disagreement, registration
    view: str
    index: int
    what: str
    rgb: np.ndarray


def page_slices(page: str) -> list[Slice]:
    """Every slice image of a case page, by the view and index it records."""
    from PIL import Image

    found = []
    for section, block in re.findall(r"<div class='row (\w+)'>(.*?)</div>", page, flags=re.S):
        for view, index, what, png in re.findall(r"data-view='(\w+)' data-slice='(\d+)' data-what='([^']*)'"
                                                 r"[^>]*src='data:image/png;base64,([A-Za-z0-9+/=]+)'", block):
            rgb = np.asarray(Image.open(io.BytesIO(base64.b64decode(png))).convert("RGB"))
            found.append(Slice(section, view, int(index), what, rgb))
    return found


def ras(path: Path) -> np.ndarray:
    """An image in RAS order, as the pages draw it."""
    return np.asarray(nib.as_closest_canonical(nib.load(str(path))).dataobj)


def shown(volume: np.ndarray, view: str, index: int) -> np.ndarray:
    """A RAS volume's slice as the page displays it: anterior (axial) or superior (others) at the top."""
    sl = {"axial": lambda: volume[:, :, index], "coronal": lambda: volume[:, index, :],
          "sagittal": lambda: volume[index]}[view]()
    return np.flipud(sl.T)


def largest_component(labels: np.ndarray) -> np.ndarray:
    components, n = ndimage.label(labels > 0, structure=np.ones((3, 3, 3)))
    assert n > 0, "empty prediction"
    return components == np.bincount(components.ravel())[1:].argmax() + 1


def colour_mask(rgb: np.ndarray, colours) -> np.ndarray:
    return np.any([np.all(rgb == np.asarray(c, dtype=np.uint8), axis=-1) for c in colours], axis=0)


def not_grey(rgb: np.ndarray) -> np.ndarray:
    return (rgb[..., 0] != rgb[..., 1]) | (rgb[..., 1] != rgb[..., 2])


def case_page(run: Run, case_id: str) -> str:
    return (run.out / "report" / "cases" / f"{case_id}.html").read_text()


def cohort_row(run: Run, case_id: str) -> str:
    page = (run.out / "report" / "report.html").read_text()
    return re.search(rf"<tr id='{re.escape(case_id)}'.*?</tr>", page).group(0)


# --------------------------------------------------------------------------- the checks

def test_the_run_fails_the_broken_phantom_alone_and_logs_no_bars_nor_staging_folders(run):
    assert run.code == 1, run.log[-3000:]
    ok = [*REAL, *run.phantoms[:2]]
    with open(run.out / "report" / "cohort_metrics.csv", newline="") as fh:
        assert sorted(r["case_id"] for r in csv.DictReader(fh)) == sorted(ok)
    assert "\r" not in run.log and "%|" not in run.log  # no tqdm bar, neither the cohort's nor predict's
    assert "TCGA-raw: preprocess" in run.log and f"{run.phantoms[0]}: predict" in run.log
    assert ".partial" not in run.log
    wrote = set(re.findall(r"wrote (\S+)", run.log))
    assert all(Path(p).is_file() for p in wrote), wrote  # files a person can open
    assert wrote >= {str(run.out / c / f"{c}_{kind}") for c in ok for kind in ("pred.nii.gz", "metrics.csv")}
    records = sorted(run.out.rglob("provenance_*.json"))
    assert len(records) == 3 * len(ok) + 1  # predict, postprocess, evaluate per case; preprocess for TCGA-raw
    assert [p.name for p in records if ".partial" in p.read_text()] == []


@pytest.mark.parametrize("case_id", [*REAL, f"phantom{PHANTOM_SEED}", f"phantom{PHANTOM_SEED + 1}"])
def test_every_mosaic_slice_lies_on_the_largest_component_and_shows_its_labels(run, case_id):
    folder = run.out / case_id
    pred = ras(folder / f"{case_id}_pred.nii.gz")
    np.testing.assert_array_equal(ras(folder / f"{case_id}_seg.nii.gz") > 0, pred > 0)  # the page draws _seg
    largest = largest_component(pred)
    z = np.nonzero(largest.any(axis=(0, 1)))[0]
    slices = page_slices(case_page(run, case_id))
    mosaic = [s for s in slices if s.section == "mosaic"]
    assert len(mosaic) == 12 and {s.what for s in mosaic} == {"T1Gd", "FLAIR"}  # 6 slices on each
    assert {s.index for s in mosaic} >= {int(z.min()), int(z.max())}  # spanning the whole component
    for s in mosaic + [s for s in slices if s.section == "ortho" and s.view == "axial"]:
        assert s.view == "axial" and z.min() <= s.index <= z.max(), (s.what, s.index, z.min(), z.max())
        on_slice = shown(largest, "axial", s.index)
        assert s.rgb.shape[:2] == on_slice.shape and on_slice.any()
        coloured = not_grey(s.rgb)
        assert coloured[on_slice].all(), (s.what, s.index)  # every voxel of the component is drawn in colour
        assert colour_mask(s.rgb, LABEL_RGB).sum() > 0  # with opaque label outlines
        labelled = shown(pred > 0, "axial", s.index)
        assert not (coloured & ~labelled & ~colour_mask(s.rgb, [CYAN])).any()  # and colour nowhere else


def test_the_reference_is_outlined_for_tcga_brats_where_it_lies(run):
    page = case_page(run, "TCGA-brats")
    assert "cyan: reference outline" in page and "<h2>Prediction vs reference</h2>" in page
    assert str(run.reference) in page
    ref = ras(run.reference)
    regions = {"WT": ref > 0, "TC": np.isin(ref, (1, 4)), "ET": ref == 4}
    slices = [s for s in page_slices(page) if s.section in ("mosaic", "ortho", "disagreement")]
    assert len(slices) == 12 + 6 + 3
    drawn = 0
    for s in slices:
        region = s.what.split()[0] if s.section == "disagreement" else "WT"
        expected = shown(regions[region], s.view, s.index).any()
        cyan = colour_mask(s.rgb, [CYAN])
        assert bool(cyan.any()) == bool(expected), (s.section, s.what, s.view, s.index)
        drawn += int(expected)
    assert drawn >= 3  # at least the three disagreement panels show the reference
    unreferenced = case_page(run, "TCGA-raw")  # the control: a row without seg has no outline anywhere
    assert "Prediction vs reference" not in unreferenced
    assert not any(colour_mask(s.rgb, [CYAN]).any() for s in page_slices(unreferenced))


def test_the_registration_panel_of_tcga_raw_lists_every_score_and_threshold(run):
    record = json.loads((run.out / "TCGA-raw" / "preprocessed" / "provenance_preprocess.json").read_text())
    checks = record["qc"]["checks"]
    # the four similarity checks, and the mirror and optimum checks of the three co-registered modalities
    assert len(checks) == 10 and {f"{m}_not_mirrored" for m in ("t1", "t2", "flair")} <= set(checks)
    page = case_page(run, "TCGA-raw")
    table = page.split("<table class='similarity'>", 1)[1].split("</table>", 1)[0]
    rows = re.findall(r"<tr><td>(\w+)</td><td>(-?[\d.]+)</td><td>(-?[\d.]+)</td><td>(.*?)</td></tr>", table)
    assert [(n, float(s), float(t)) for n, s, t, _ in rows] == [
        (n, round(c["score"], 3), float(c["threshold"])) for n, c in checks.items()]
    assert [p == "yes" for *_, p in rows] == [c["passed"] for c in checks.values()]
    panels = [s for s in page_slices(page) if s.section == "registration"]
    assert [s.what for s in panels] == [f"registered {m}" for m in MODALITIES] + ["native T1Gd"]
    atlas = np.squeeze(ras(Path(record["atlas"]["t1_skullstripped"]["path"]))) > 0
    for s in panels[:4]:
        # the atlas brain's outline is drawn (magenta; yellow where the brain-mask contour, drawn over it,
        # coincides: run skull-strips with the atlas mask), and so is the brain-mask contour
        brain = shown(atlas, "axial", s.index)
        edge = brain & ~ndimage.binary_erosion(brain, border_value=0)
        assert edge.sum() > 100 and colour_mask(s.rgb, [(255, 0, 255), (255, 255, 0)])[edge].all(), s.what
        assert colour_mask(s.rgb, [(255, 255, 0)]).sum() > 100
    assert colour_mask(panels[4].rgb, LABEL_RGB).sum() > 0  # the native-grid labels over the native T1Gd
    assert "registration" not in [s.section for s in page_slices(case_page(run, "TCGA-brats"))]  # brats: none


def test_the_cohort_page_flags_the_failed_case_and_warns_of_the_phantom_model_on_real_rows(run):
    with open(run.out / "report" / "failures.csv", newline="") as fh:
        failures = list(csv.DictReader(fh))
    assert [f["case_id"] for f in failures] == [BROKEN]
    message = failures[0]["message"]
    assert f"{BROKEN}_t2.nii.gz" in message and "\n" not in message
    row = cohort_row(run, BROKEN)
    assert "class='flagged'" in row and f"failed: {failures[0]['step']}: {message}" in row and "href" not in row
    page = (run.out / "report" / "report.html").read_text()
    assert "<h2 class='bad'>Failed cases</h2>" in page
    for case_id in REAL:
        assert SYNTHETIC_WARNING in cohort_row(run, case_id), case_id
        assert SYNTHETIC_WARNING in case_page(run, case_id)
    for case_id in run.phantoms[:2]:  # phantoms: only the untuned threshold is worth a warning
        assert SYNTHETIC_WARNING not in cohort_row(run, case_id), case_id
        assert "ET threshold not tuned" in cohort_row(run, case_id)
        assert SYNTHETIC_WARNING not in case_page(run, case_id)
    assert SYNTHETIC_WARNING not in cohort_row(run, BROKEN)


def test_the_cohort_table_sorts_by_wt_dice_in_a_browser(run, tmp_path):
    from test_report_browser import DevTools, _chromium

    _chromium()  # skips without Chromium unless CI is set
    with open(run.out / "report" / "cohort_metrics.csv", newline="") as fh:
        dice = {r["case_id"]: float(r["dice_WT"]) for r in csv.DictReader(fh) if r["dice_WT"]}
    assert set(dice) == {"TCGA-brats", *run.phantoms[:2]}
    browser = DevTools(tmp_path)
    try:
        browser.open((run.out / "report" / "report.html").as_uri())
        rows = "Array.from(document.querySelectorAll('#cases tbody tr')).map(r => r.id)"
        header = "Array.from(document.querySelectorAll('#cases th')).find(h => h.dataset.col === 'dice_WT')"
        assert browser.eval(f"{header}.textContent") == "Dice WT"
        browser.eval(f"{header}.click()")
        order = browser.eval(rows)
        assert order[:3] == sorted(dice, key=dice.get), order
        assert set(order[3:]) == {"TCGA-raw", BROKEN}  # no WT Dice: last
        browser.eval(f"{header}.click()")
        order = browser.eval(rows)
        assert order[:3] == sorted(dice, key=dice.get, reverse=True), order
        assert browser.eval(f"{header}.getAttribute('aria-sort')") == "descending"
    finally:
        browser.close()
