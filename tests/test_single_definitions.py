"""Normalisation, geometry, hashing and the samplesheet rules are each stated in one module.

A second copy of one of them is how the two front doors came to disagree; these checks fail when
one comes back (by reading the package's source, so they cost well under a second).
"""
from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pandas as pd
import pytest

import gliocascade

PACKAGE = Path(gliocascade.__file__).parent
SOURCES = {p.name: p.read_text() for p in sorted(PACKAGE.glob("*.py"))}


def _modules_matching(pattern: str) -> set[str]:
    return {name for name, text in SOURCES.items() if re.search(pattern, text)}


def _modules_defining(function: str) -> set[str]:
    found = set()
    for name, text in SOURCES.items():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef) and node.name == function:
                found.add(name)
    return found


@pytest.mark.parametrize("pattern,owner", [
    (r"hashlib\.sha256\(", "hashing.py"),
    (r"\bGetImageFromArray\(", "sitk_arrays.py"),
    (r"\bGetArrayFromImage\(", "sitk_arrays.py"),
    (r"\bGetArrayViewFromImage\(", "sitk_arrays.py"),
    (r"\b239\.0\b|-239\b", "geometry.py"),  # the BraTS origin
    (r"\bBRATS_SHAPE\s*=", "geometry.py"),
    (r"\bBRATS_AFFINE\s*=", "geometry.py"),
    (r"\bBRATS_ORIGIN_LPS\s*=", "geometry.py"),
    (r"\"cuda\" if torch\.cuda\.is_available\(\)", "model_io.py"),
])
def test_one_module_states_it(pattern, owner):
    assert _modules_matching(pattern) == {owner}


def test_the_brats_shape_is_written_once_outside_the_entry_layer():
    """cli.py's --shape default is a help text of the entry layer; the library uses geometry's."""
    assert _modules_matching(r"240,\s*240,\s*155") - {"cli.py"} == {"geometry.py"}


@pytest.mark.parametrize("function,owner", [
    ("zscore", "data.py"),
    ("brain_of", "data.py"),
    ("bounding_box", "geometry.py"),
    ("brats_affine", "geometry.py"),
    ("sha256_file", "hashing.py"),
    ("to_array", "sitk_arrays.py"),
    ("from_array", "sitk_arrays.py"),
    ("resolve_device", "model_io.py"),
    ("read_samplesheet", "samplesheet.py"),
])
def test_one_definition(function, owner):
    assert _modules_defining(function) == {owner}


def test_no_other_box_helper():
    """Bounding boxes come from geometry.bounding_box (metrics, inference and resample had their own)."""
    boxes = {name for name, text in SOURCES.items()
             for node in ast.walk(ast.parse(text))
             if isinstance(node, ast.FunctionDef) and re.search(r"bounding|brain_box|mask_box", node.name)}
    assert boxes == {"geometry.py"}


def test_case_ids_follow_the_schema():
    """dicom's --case-id check uses io.CASE_ID_PATTERN: it must be the schema's case_id rule."""
    from gliocascade.io import CASE_ID_PATTERN, RESERVED_CASE_IDS
    from gliocascade.samplesheet_schema import load_schema

    rule = load_schema()["items"]["properties"]["case_id"]
    assert rule["pattern"] == CASE_ID_PATTERN.pattern
    assert rule["not"]["enum"] == list(RESERVED_CASE_IDS)


def test_a_case_carries_its_brain_mask_as_a_field():
    from gliocascade.io import Case, SampleRow

    assert "extra" not in {f.name for f in dataclasses.fields(Case)}
    row = SampleRow("c1", {}, None, None, "brats", "2019", [], Path("m.nii.gz"))
    assert row.to_case().brainmask == Path("m.nii.gz")


def test_run_reads_the_samplesheet_once(tmp_path, monkeypatch):
    """The rows `run` validates with the schema are the rows it runs: the CSV is parsed once."""
    from gliocascade.pipeline import load_samplesheet

    sheet = tmp_path / "samples.csv"
    sheet.write_text("case_id,t1,t1ce,t2,flair,space,brainmask\n"
                     "c1,a_t1.nii.gz,a_t1ce.nii.gz,a_t2.nii.gz,a_flair.nii.gz,brats,a_mask.nii.gz\n")
    reads = []
    real = pd.read_csv

    def counting(path, *args, **kwargs):
        reads.append(Path(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(pd, "read_csv", counting)
    (row,) = load_samplesheet(sheet)
    assert reads == [sheet]
    assert row.brainmask == tmp_path / "a_mask.nii.gz" and row.space == "brats"
    assert row.to_case().brainmask == row.brainmask
