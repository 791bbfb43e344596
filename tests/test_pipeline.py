"""The orchestration of `run` on its own: worker pool, per-case isolation, staged steps, resume.

These tests start from cases whose prediction already exists (a resumed run), so the real
postprocess and evaluate steps run in real worker processes without needing a trained model.
"""
from __future__ import annotations

import csv
import gzip
import shutil
from pathlib import Path

import pytest

from gliocascade.io import SampleRow
from gliocascade.phantom import write_phantoms
from gliocascade.pipeline import run_cases, worker_threads
from gliocascade.steps import RunOptions, case_paths, process_case


def _row(case: Path, space: str = "brats") -> SampleRow:
    cid = case.name
    images = {m: case / f"{cid}_{m}.nii.gz" for m in ("t1", "t1ce", "t2", "flair")}
    return SampleRow(cid, images, None, case / f"{cid}_seg.nii.gz", space, "2019", [])


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """(inode, mtime_ns) of every file below ``folder``: equal snapshots = nothing rewritten."""
    return {str(p.relative_to(folder)): (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("cores,workers,expected", [(2, 1, 2), (2, 2, 1), (2, 4, 1), (16, 3, 5)])
def test_worker_threads_share_the_cores(cores, workers, expected):
    assert worker_threads(workers, cores, env={}) == expected


@pytest.mark.parametrize("omp,expected", [("1", 1), ("3", 3), ("64", 8), ("", 8), ("x", 8), ("0", 8)])
def test_worker_threads_never_exceed_omp_num_threads(omp, expected):
    assert worker_threads(2, 16, env={"OMP_NUM_THREADS": omp}) == expected


@pytest.fixture
def resumed_run(tmp_path):
    """Three phantoms whose `predict` step already ran (pred = ground truth); case 1's pred is corrupt."""
    cases = write_phantoms(tmp_path / "cases", n=3, seed=40, shape=(32, 32, 32))
    out = tmp_path / "out"
    for i, case in enumerate(cases):
        paths = case_paths(out, case.name)
        paths.root.mkdir(parents=True)
        shutil.copy(case / f"{case.name}_seg.nii.gz", paths.pred)
        if i == 1:
            data = paths.pred.read_bytes()
            paths.pred.write_bytes(data[: len(data) // 2])  # truncated gzip
    opts = RunOptions(models=[tmp_path / "unused_model"], out=out, tta=1, device="cpu", threads=1)
    return [_row(c) for c in cases], opts


def test_pool_isolates_a_failing_case_and_resumes(resumed_run):
    rows, opts = resumed_run
    results = run_cases(rows, opts, workers=2)
    good, bad = [results[0], results[2]], results[1]
    for res in good:
        assert res.ok, res.message
        assert res.skipped == ["predict"] and res.ran == ["postprocess", "evaluate"]
        with open(case_paths(opts.out, res.case_id).metrics, newline="") as fh:
            row = next(csv.DictReader(fh))
        assert row["case_id"] == res.case_id
        assert float(row["dice_WT"]) == 1.0 and float(row["dice_ET"]) == 1.0
    assert not bad.ok and bad.failed_step == "postprocess"
    bad_paths = case_paths(opts.out, bad.case_id)
    assert str(bad_paths.pred) in bad.message  # the message names the broken file
    # The failed step left nothing: no staging folder, no seg, no metrics; the earlier step's output stays.
    assert sorted(p.name for p in bad_paths.root.iterdir()) == [bad_paths.pred.name]

    before = _snapshot(opts.out)
    again = run_cases(rows, opts, workers=2)
    for res in (again[0], again[2]):
        assert res.ok and res.ran == [] and res.skipped == ["predict", "postprocess", "evaluate"]
    assert not again[1].ok and again[1].failed_step == "postprocess"
    assert _snapshot(opts.out) == before


def test_killed_step_leftovers_are_discarded(resumed_run):
    """A staging folder left by a killed run is not mistaken for output and is replaced."""
    rows, opts = resumed_run
    paths = case_paths(opts.out, rows[0].case_id)
    stale = paths.staging("postprocess")
    stale.mkdir()
    (stale / paths.seg.name).write_bytes(b"half-written")
    res = process_case(rows[0], opts)
    assert res.ok and "postprocess" in res.ran
    assert not stale.exists()
    with gzip.open(paths.seg) as fh:  # the published seg is a complete gzip stream
        fh.read()


def test_missing_input_fails_the_case_without_any_output(tmp_path):
    row = SampleRow("lost", {m: tmp_path / f"lost_{m}.nii.gz" for m in ("t1", "t1ce", "t2", "flair")},
                    None, None, "brats", "2019", [f"{tmp_path}/lost_t1.nii.gz: t1 file not found"])
    opts = RunOptions(models=[tmp_path / "m"], out=tmp_path / "out", tta=1, device="cpu")
    res = process_case(row, opts)
    assert not res.ok and res.failed_step == "inputs" and "t1 file not found" in res.message
    assert not (tmp_path / "out" / "lost").exists()


def test_failed_report_makes_the_run_fail_but_keeps_case_outputs(tmp_path, random_tiny_model, monkeypatch):
    """Cases whose predictions exist (resume) finish; a report that cannot be built gives exit 1."""
    import gliocascade.report
    from gliocascade.commands.run import run_command

    cases = write_phantoms(tmp_path / "cases", n=2, seed=60, shape=(32, 32, 32))
    out = tmp_path / "out"
    lines = ["case_id,t1,t1ce,t2,flair,seg,space"]
    for case in cases:
        cid = case.name
        paths = case_paths(out, cid)
        paths.root.mkdir(parents=True)
        shutil.copy(case / f"{cid}_seg.nii.gz", paths.pred)
        lines.append(",".join([cid, *[str(case / f"{cid}_{m}.nii.gz") for m in ("t1", "t1ce", "t2", "flair", "seg")],
                               "brats"]))
    sheet = tmp_path / "s.csv"
    sheet.write_text("\n".join(lines) + "\n")

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(gliocascade.report, "build_report", broken)
    code = run_command(sheet, (random_tiny_model,), out, workers=1, tta="1", device="cpu")
    assert code == 1
    for case in cases:
        assert case_paths(out, case.name).metrics.is_file()
    assert not (out / "report" / "report_inputs.json").exists()  # a later run rebuilds the report


def test_dicom_row_is_converted_into_the_case_folder(data_dir, tmp_path):
    """Modality columns naming DICOM series folders go through `convert` first (here one real series)."""
    from gliocascade.steps import needs_convert, step_convert

    series = data_dir / "dicom" / "dcm_qa_decubitus_HFS" / "In" / "HFS" / "3_t1_fl2d_sag"
    row = SampleRow("dcm1", {m: series for m in ("t1", "t1ce", "t2", "flair")}, None, None, "native", "2019", [])
    assert needs_convert(row)
    opts = RunOptions(models=[tmp_path / "m"], out=tmp_path / "out", tta=1, device="cpu")
    paths = case_paths(opts.out, "dcm1")
    paths.root.mkdir(parents=True)
    files = step_convert(row, paths, opts)
    assert sorted(files) == ["flair", "t1", "t1ce", "t2"]
    for mod, path in files.items():
        assert path == paths.converted / f"dcm1_{mod}.nii.gz" and path.is_file()
    assert not paths.staging("convert").exists()


def test_dicom_study_without_images_fails_its_case_at_convert(tmp_path):
    study = tmp_path / "study"
    study.mkdir()
    (study / "notes.txt").write_text("not DICOM")
    row = SampleRow("dcm2", {}, study, None, "native", "2019", [])
    opts = RunOptions(models=[tmp_path / "m"], out=tmp_path / "out", tta=1, device="cpu")
    res = process_case(row, opts)
    assert not res.ok and res.failed_step == "convert" and str(study) in res.message
    assert not (tmp_path / "out" / "dcm2").exists()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the message for machines without CUDA")
def test_cuda_without_cuda_stops_the_run_before_any_output(tmp_path, random_tiny_model, cli):
    """`run --device cuda` on a CPU machine is a usage error (exit 2), not one failure per case."""
    case = write_phantoms(tmp_path / "cases", n=1, seed=70, shape=(32, 32, 32))[0]
    cid = case.name
    sheet = tmp_path / "s.csv"
    sheet.write_text("case_id,t1,t1ce,t2,flair,space\n" + ",".join(
        [cid, *[str(case / f"{cid}_{m}.nii.gz") for m in ("t1", "t1ce", "t2", "flair")], "brats"]) + "\n")
    out = tmp_path / "out"
    result = cli("run", "--samplesheet", sheet, "--model", random_tiny_model, "--out", out, "--device", "cuda")
    assert result.exit_code == 2
    assert "no CUDA device" in result.output
    assert not out.exists() or not any(out.iterdir())
